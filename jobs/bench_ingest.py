"""`relgraph bench ingest`: generate N people, ingest them into a fresh, throwaway Neo4j, and in the
same run ingest a sample of the same interactions the naive way (one transaction per event, same
Cypher) as the baseline. With `initial`, the same files are also bulk-loaded (`relgraph ingest
--initial`, run as its own process so that its peak memory is its own) into a second throwaway
Neo4j, after the transactional ingest so that the two never share the cores. Results are measured,
never assumed."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from core.config import Config
from graph.ingest import ingest, read_records
from graph.neo4j_server import NEO4J_VERSION, ManagedNeo4j
from graph.pseudonymize import Pseudonymizer
from graph.records import parse_record
from graph.writes import WriteCounts, write_interactions
from jobs.bench_common import PeakMemory, generated_graph, throwaway_neo4j
from jobs.generate import GeneratorConfig


def _naive_sample(path: Path, pseudo: Pseudonymizer, n: int) -> list[dict[str, Any]]:
    """The first n interactions, moved to a `-naive` tenant so they are new writes, not no-ops."""
    rows = []
    for _, record, _ in read_records(path):
        assert isinstance(record, dict)
        record["tenant"] = f"{record['tenant']}-naive"
        _, tenant, row = parse_record(record, pseudo)
        row["tenant"] = tenant
        rows.append(row)
        if len(rows) == n:
            break
    return rows


def _initial_load(config: Config, data: Path, network_key: str) -> dict[str, Any]:
    """`relgraph ingest DATA --initial --json` into a throwaway Neo4j, started beforehand (as the
    transactional path's is); its summary, with the command's wall time."""
    with tempfile.TemporaryDirectory(prefix="relgraph-bench-initial-") as home:
        bulk_config, server = throwaway_neo4j(config, Path(home))
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEO4J_")}
        env |= {
            "RELGRAPH_HOME": str(bulk_config.home),
            "RELGRAPH_CACHE": str(bulk_config.cache),
            "RELGRAPH_NEO4J_PORT": str(server.port),
            "RELGRAPH_NETWORK_KEY": network_key,
        }
        command = [sys.executable, "-m", "relgraph.cli", "ingest", str(data), "--initial", "--json"]
        try:
            started = time.perf_counter()
            proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            with PeakMemory(psutil.Process(proc.pid), interval_s=0.2) as memory:
                stdout, stderr = proc.communicate()
            wall = time.perf_counter() - started
        finally:
            server.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"the initial load failed (exit {proc.returncode}):\n{stderr[-3000:]}")
    return {**json.loads(stdout), "command_seconds": round(wall, 3), "peak_rss_mb": round(memory.peak / 2**20, 1)}


def run_ingest_benchmark(
    config: Config,
    *,
    people: int,
    baseline_events: int,
    network_key: str,
    initial: bool = False,
    seed: int = 7,
    tenants: int = 5,
) -> dict[str, Any]:
    pseudo = Pseudonymizer(network_key)
    with generated_graph(config, GeneratorConfig(people=people, tenants=tenants, seed=seed), pseudo) as graph:
        gen, summary, store, data = graph.generation, graph.ingest, graph.store, graph.data
        again = ingest(store, [data / "ingest"], pseudo, batch_size=config.ingest.batch_size, progress=False)
        sample = _naive_sample(data / "ingest" / "interactions.jsonl", pseudo, baseline_events)
        counts = WriteCounts()
        started = time.perf_counter()
        for row in sample:
            write_interactions(store, [row], counts)
        naive_seconds = time.perf_counter() - started
        bulk = None
        if initial:
            # The transactional path's server keeps checkpointing long after its last write: stopped
            # first, so that the bulk load has the cores to itself.
            ManagedNeo4j(graph.config).stop()
            bulk = _initial_load(config, data, network_key)
    events = summary.accepted_by_kind.get("interaction", 0) + summary.accepted_by_kind.get("signal", 0)
    write_rate = events / summary.write_seconds if summary.write_seconds else 0.0
    baseline = len(sample) / naive_seconds
    result = {
        "people": people,
        "tenants": tenants,
        "seed": seed,
        "generate_seconds": gen.seconds,
        "records": summary.accepted,
        "events": events,
        "batch_size": config.ingest.batch_size,
        "validate_seconds": summary.validate_seconds,
        "write_seconds": summary.write_seconds,
        "seconds": summary.seconds,
        "events_per_s": summary.events_per_s,
        "write_events_per_s": round(write_rate, 1),
        "nodes_created": summary.nodes_created,
        "relationships_created": summary.relationships_created,
        "reingest_seconds": again.seconds,
        "reingest_nodes_created": again.nodes_created,
        "reingest_relationships_created": again.relationships_created,
        "reingest_events_added": again.events_added,
        "baseline_events": len(sample),
        "baseline_seconds": round(naive_seconds, 3),
        "baseline_events_per_s": round(baseline, 1),
        "speedup": round(summary.events_per_s / baseline, 1),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cpu",
        "neo4j": NEO4J_VERSION,
    }
    if bulk is not None:
        result |= {
            "transactional_events_per_s": summary.events_per_s,
            "initial_events_per_s": bulk["events_per_s"],
            "initial_speedup": round(bulk["events_per_s"] / summary.events_per_s, 1),
            "initial_seconds": bulk["seconds"],
            "initial_command_seconds": bulk["command_seconds"],
            "initial_phase_seconds": bulk["phase_seconds"],
            "initial_peak_rss_mb": bulk["peak_rss_mb"],
            "initial_nodes": bulk["nodes_created"],
            "initial_relationships": bulk["relationships_created"],
        }
    return result
