"""What the benchmark jobs share: a throwaway Neo4j of their own, and a generated network
ingested into it."""

from __future__ import annotations

import dataclasses
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.config import Config
from graph.ingest import IngestSummary, ingest
from graph.neo4j_server import ManagedNeo4j
from graph.pseudonymize import Pseudonymizer
from graph.schema import migrate
from graph.store import GraphStore, connect
from jobs.generate import GenerationReport, GeneratorConfig, generate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def throwaway_neo4j(config: Config, home: Path) -> tuple[Config, ManagedNeo4j]:
    """A managed Neo4j of its own (own home, free port, larger memory) so benchmarks start empty
    and never touch the user's graph."""
    bench_config = dataclasses.replace(
        config,
        home=home,
        neo4j=dataclasses.replace(config.neo4j, uri=None, password=None),
        managed_neo4j=dataclasses.replace(config.managed_neo4j, port=free_port(), heap="2g", pagecache="2g"),
    )
    server = ManagedNeo4j(bench_config)
    server.start()
    return bench_config, server


@dataclass
class BenchGraph:
    config: Config  # points at the throwaway Neo4j
    store: GraphStore
    data: Path  # the generated network (ingest/ and ground_truth/)
    generation: GenerationReport
    ingest: IngestSummary


@contextmanager
def generated_graph(config: Config, generator: GeneratorConfig, pseudo: Pseudonymizer) -> Iterator[BenchGraph]:
    """Generate a network, start a throwaway Neo4j, ingest the network; cleaned up on exit."""
    with tempfile.TemporaryDirectory(prefix="relgraph-bench-") as tmp:
        data = Path(tmp) / "data"
        generation = generate(generator, data, progress=True)
        bench_config, server = throwaway_neo4j(config, Path(tmp) / "home")
        try:
            with connect(bench_config) as store:
                migrate(store)
                summary = ingest(store, [data / "ingest"], pseudo, batch_size=config.ingest.batch_size)
                yield BenchGraph(bench_config, store, data, generation, summary)
        finally:
            server.stop()
