"""`relgraph bench train`: training throughput of the link model for several Ray worker counts on
one generated network (exported once), with wall time, samples/s, peak memory of the driver and
its worker processes, and the evaluation metrics each run reached."""

from __future__ import annotations

import time
from typing import Any

from core.config import Config
from graph.interaction_log import ExportScope
from graph.neo4j_reader import Neo4jReader
from graph.pseudonymize import Pseudonymizer
from graph.reader import ALL_TENANTS
from jobs.bench_common import PeakMemory, generated_graph
from jobs.generate import GeneratorConfig
from jobs.runner import RunSettings
from jobs.train_link import LinkSettings, train_link_model


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
        with PeakMemory() as memory:
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
