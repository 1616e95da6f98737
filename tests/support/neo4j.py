"""Real Neo4j servers for tests: a managed one of a test's own, and an emptied graph."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.config import Config
from graph.neo4j_server import ManagedNeo4j
from graph.schema import migrate
from graph.store import GraphStore, Query, connect
from jobs.bench_common import free_port

_CLEAR = Query("test.clear", "MATCH (n) WHERE NOT n:SchemaMigration DETACH DELETE n")


@contextmanager
def managed_neo4j(base: Config, home: Path) -> Iterator[Config]:
    """A managed Neo4j of its own, in `home` on a free port, for as long as the context."""
    config = dataclasses.replace(
        base,
        home=home,
        neo4j=dataclasses.replace(base.neo4j, uri=None, password=None),
        managed_neo4j=dataclasses.replace(base.managed_neo4j, port=free_port()),
    )
    server = ManagedNeo4j(config)
    server.start()
    try:
        yield config
    finally:
        server.stop()


@contextmanager
def empty_store(config: Config) -> Iterator[GraphStore]:
    """A store on the emptied graph of `config`'s Neo4j (schema applied)."""
    with connect(config) as s:
        migrate(s)
        s.write(_CLEAR)
        yield s
