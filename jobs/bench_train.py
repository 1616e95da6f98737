"""`relgraph bench train`: training throughput of the link model for several Ray worker counts on
one generated network (exported once), with wall time, samples/s, peak memory of the driver and
its worker processes, and the evaluation metrics each run reached."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import psutil

from core.config import Config
from graph.interaction_log import ExportScope
from graph.neo4j_reader import Neo4jReader
from graph.pseudonymize import Pseudonymizer
from graph.reader import ALL_TENANTS
from jobs.bench_common import generated_graph
from jobs.generate import GeneratorConfig
from jobs.runner import RunSettings
from jobs.train_link import LinkSettings, train_link_model


class _PeakMemory:
    """Peak summed RSS of this process and all its descendants (Ray's workers), sampled."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)

    def _run(self, interval_s: float) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a worker that just exited
                    total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(interval_s)

    def __enter__(self) -> _PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def run_train_benchmark(
    config: Config, *, people: int, workers: list[int], epochs: int, network_key: str, seed: int = 7
) -> dict[str, Any]:
    import ray

    pseudo = Pseudonymizer(network_key)
    with generated_graph(config, GeneratorConfig(people=people, tenants=5, seed=seed), pseudo) as graph:
        began = time.perf_counter()
        log = Neo4jReader(graph.store, progress=True).interaction_log(ExportScope(tenants=ALL_TENANTS))
        export_seconds = time.perf_counter() - began
    runs = []
    for count in workers:
        with _PeakMemory() as memory:
            settings = LinkSettings(run=RunSettings(workers=count, epochs=epochs, seed=seed))
            report = train_link_model(
                log, settings, runs_dir=config.runs_dir / "bench", registry=None, scope={"bench": people}, progress=True
            )
        ray.shutdown()  # a fresh local Ray per configuration, sized for its worker count
        runs.append(
            {
                "workers": count,
                "wall_s": round(report.seconds, 1),
                "fit_s": round(report.train_seconds, 1),
                "samples_per_s": round(report.samples_per_second, 1),
                "peak_rss_mb": round(memory.peak / 2**20),
                "headline": report.manifest["headline"],
                "metrics": report.manifest["metrics"],
                "sizes": report.manifest["sizes"],
            }
        )
    return {
        "people": people,
        "interactions": log.interactions,
        "export_s": round(export_seconds, 1),
        "epochs": epochs,
        "runs": runs,
    }
