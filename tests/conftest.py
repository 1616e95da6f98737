"""Shared fixtures. Integration tests run against a real Neo4j: the one NEO4J_URI names, or else a
managed server this session starts in a temporary home on a free port (never skipped)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import Config, load_config
from graph.neo4j_server import ManagedNeo4j
from graph.pseudonymize import Pseudonymizer
from graph.schema import migrate
from graph.store import GraphStore, Query, connect
from jobs.bench_common import free_port
from jobs.generate import GeneratorConfig, generate

TEST_KEY = "test-network-key-0123456789"
_CLEAR = Query("test.clear", "MATCH (n) WHERE NOT n:SchemaMigration DETACH DELETE n")


@pytest.fixture(scope="session")
def neo4j_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    base = load_config()
    if base.neo4j.uri is not None:
        yield dataclasses.replace(base, network_key=TEST_KEY)
        return
    home = tmp_path_factory.mktemp("neo4j-home")
    config = dataclasses.replace(
        base, home=home, network_key=TEST_KEY, managed_neo4j=dataclasses.replace(base.managed_neo4j, port=free_port())
    )
    server = ManagedNeo4j(config)
    server.start()
    try:
        yield config
    finally:
        server.stop()


@pytest.fixture
def store(neo4j_config: Config) -> Iterator[GraphStore]:
    """A store on an empty graph (schema applied)."""
    with connect(neo4j_config) as s:
        migrate(s)
        s.write(_CLEAR)
        yield s


@pytest.fixture
def cli_env(neo4j_config: Config) -> dict[str, str]:
    """Environment that points the `relgraph` command at the test Neo4j."""
    from graph.neo4j_server import ManagedNeo4j

    server = ManagedNeo4j(neo4j_config)
    uri = neo4j_config.neo4j.uri or server.uri
    password = neo4j_config.neo4j.password or server.password()
    assert password is not None
    return {
        **os.environ,
        "NEO4J_URI": uri,
        "NEO4J_USER": neo4j_config.neo4j.user,
        "NEO4J_PASSWORD": password,
        "RELGRAPH_NETWORK_KEY": TEST_KEY,
        "RELGRAPH_HOME": str(neo4j_config.home),
    }


@pytest.fixture(scope="session")
def pseudo() -> Pseudonymizer:
    return Pseudonymizer(TEST_KEY)


@pytest.fixture(scope="session")
def small_network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated 3-tenant network of 600 people (its ingest files under ./ingest)."""
    out = tmp_path_factory.mktemp("network")
    generate(GeneratorConfig(people=600, tenants=3, seed=3), out)
    return out
