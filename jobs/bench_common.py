"""What the benchmark jobs share: a throwaway Neo4j of their own, and a generated network
ingested into it."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from core.config import Config
from graph.bulk_load import bulk_ingest
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


class PeakMemory:
    """Peak summed RSS of a process (by default this one) and all its descendants (Ray's workers,
    an ingest's validation workers and importer), sampled."""

    def __init__(self, root: psutil.Process | None = None, interval_s: float = 0.5) -> None:
        self.peak = 0
        self._root = root or psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)

    def _run(self, interval_s: float) -> None:
        while not self._stop.is_set():
            total, tree = 0, [self._root]
            with contextlib.suppress(psutil.Error):  # the root just exited
                tree += self._root.children(recursive=True)
            for proc in tree:
                with contextlib.suppress(psutil.Error):  # a worker that just exited
                    total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(interval_s)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class BenchGraph:
    config: Config  # points at the throwaway Neo4j
    store: GraphStore
    data: Path  # the generated network (ingest/ and ground_truth/)
    generation: GenerationReport
    ingest: IngestSummary


@contextmanager
def generated_graph(
    config: Config, generator: GeneratorConfig, pseudo: Pseudonymizer, *, initial: bool = False
) -> Iterator[BenchGraph]:
    """Generate a network, start a throwaway Neo4j, ingest the network (through transactions, or
    with `initial` in bulk, as `relgraph ingest --initial`); cleaned up on exit."""
    with tempfile.TemporaryDirectory(prefix="relgraph-bench-") as tmp:
        data = Path(tmp) / "data"
        generation = generate(generator, data, progress=True)
        bench_config, server = throwaway_neo4j(config, Path(tmp) / "home")
        try:
            bulk = bulk_ingest(bench_config, [data / "ingest"], pseudo) if initial else None
            with connect(bench_config) as store:
                migrate(store)
                summary = bulk or ingest(store, [data / "ingest"], pseudo, batch_size=config.ingest.batch_size)
                yield BenchGraph(bench_config, store, data, generation, summary)
        finally:
            server.stop()
