"""Serving benchmarks, on a generated network in a throwaway Neo4j:

- `relgraph bench warm-paths`: the same random warm-path queries answered from the serving
  snapshot and by the Cypher twin on Neo4j, with latency percentiles, the speedup, whether the
  paths are identical, snapshot build time and bytes per relationship.
- `relgraph bench grpc`: sustained FindWarmPaths load through the real server from client
  processes, with throughput, latency percentiles, errors and the server's memory before/after."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import random
import time
from typing import Any

import numpy as np
import psutil
from tqdm import tqdm

from core.config import Config, RateLimit
from graph.cypher_oracle import ScoredPath, same_ranking, warm_paths_cypher
from graph.neo4j_reader import Neo4jReader
from graph.pseudonymize import Pseudonymizer
from jobs.bench_common import generated_graph
from jobs.generate import AS_OF, GeneratorConfig
from server import snapshot as snapshots
from server.warm_paths import PathSearch, find_paths, usable_tenants


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
    }


def run_warm_paths_benchmark(
    config: Config, *, people: int, queries: int, cypher_queries: int, network_key: str, seed: int = 7, tenants: int = 5
) -> dict[str, Any]:
    pseudo = Pseudonymizer(network_key)
    with generated_graph(config, GeneratorConfig(people=people, tenants=tenants, seed=seed), pseudo) as graph:
        started = time.perf_counter()
        snap = snapshots.build(Neo4jReader(graph.store))
        build_seconds = time.perf_counter() - started
        rng = np.random.default_rng(seed)
        connected = np.flatnonzero(np.diff(snap.indptr) > 0)
        searches = [
            PathSearch(
                tenant=int(rng.integers(len(snap.tenants.ids))),
                targets=np.array([t]),
                sources=None,
                k=10,
                max_hops=3,
                allow_cross_tenant=True,
                as_of=AS_OF,
            )
            for t in rng.choice(connected, queries)
        ]
        for search in searches[:20]:  # warm caches (member masks) as a running server has them
            find_paths(snap, search)
        snapshot_seconds, answers = [], []
        for search in tqdm(searches, desc="snapshot", unit=" query"):
            t0 = time.perf_counter()
            answers.append(find_paths(snap, search))
            snapshot_seconds.append(time.perf_counter() - t0)
        cypher_seconds, identical, nonempty = [], 0, 0
        for search, ours in tqdm(list(zip(searches, answers))[:cypher_queries], desc="cypher", unit=" query"):
            t0 = time.perf_counter()
            theirs = warm_paths_cypher(
                graph.store,
                tenant=snap.tenants.ids[search.tenant],
                targets=[snap.pid(int(search.targets[0]))],
                tenants=[snap.tenants.ids[i] for i in np.flatnonzero(usable_tenants(snap, search.tenant, True))],
                k=search.k,
                max_hops=search.max_hops,
                as_of=search.as_of,
            )
            cypher_seconds.append(time.perf_counter() - t0)
            identical += same_ranking(
                [ScoredPath(tuple(snap.pid(n) for n in p.nodes), p.strength) for p in ours], theirs
            )
            nonempty += bool(ours)
    snap_stats, cypher_stats = _percentiles(snapshot_seconds), _percentiles(cypher_seconds)
    return {
        "people": people,
        "tenants": tenants,
        "seed": seed,
        "relationships": snap.relationships,
        "snapshot_build_seconds": round(build_seconds, 2),
        "snapshot_bytes_per_relationship": round(snap.adjacency_bytes / max(1, snap.relationships), 2),
        "queries": queries,
        "snapshot": snap_stats,
        "cypher_queries": len(cypher_seconds),
        "cypher": cypher_stats,
        "speedup_p50": round(cypher_stats["p50_ms"] / snap_stats["p50_ms"], 1),
        "identical_paths": identical == len(cypher_seconds),
        "identical_count": identical,
        "queries_with_paths": nonempty,
        "k": 10,
        "max_hops": 3,
        "cross_tenant": True,
    }


def _load_worker(
    address: str, key: str, targets: list[str], start_at: float, deadline: float, seed: int
) -> tuple[list[float], int]:
    """One client process: FindWarmPaths in a loop from `start_at` until `deadline` (wall clock)."""
    import grpc

    from relgraph.v1 import warm_paths_pb2, warm_paths_pb2_grpc

    rng = random.Random(seed)
    latencies: list[float] = []
    errors = 0
    auth = (("authorization", f"Bearer {key}"),)
    with grpc.insecure_channel(address) as channel:
        find = warm_paths_pb2_grpc.WarmPathsServiceStub(channel).FindWarmPaths
        time.sleep(max(0.0, start_at - time.time()))
        while time.time() < deadline:
            request = warm_paths_pb2.FindWarmPathsRequest(target_email=rng.choice(targets), allow_cross_tenant=True)
            t0 = time.perf_counter()
            try:
                find(request, metadata=auth, timeout=10)
                latencies.append(time.perf_counter() - t0)
            except grpc.RpcError:
                errors += 1
    return latencies, errors


def run_grpc_benchmark(
    config: Config, *, people: int, seconds: float, concurrency: int, network_key: str, seed: int = 7, tenants: int = 5
) -> dict[str, Any]:
    import json

    from server.app import create_server
    from server.auth import create_api_key

    pseudo = Pseudonymizer(network_key)
    with generated_graph(config, GeneratorConfig(people=people, tenants=tenants, seed=seed), pseudo) as graph:
        members = [json.loads(line) for line in (graph.data / "ingest" / "members.jsonl").read_text().splitlines()]
        tenant = members[0]["tenant"]
        pepper = "bench-pepper-0123456789"
        key, _ = create_api_key(graph.store, pepper, tenant=tenant, role="member", scopes=[])
        unlimited = RateLimit(per_second=1e9, burst=10**9)
        server_config = dataclasses.replace(
            graph.config,
            network_key=network_key,
            api_key_pepper=pepper,
            server=dataclasses.replace(config.server, port=0, metrics_port=0, member_rate=unlimited),
        )
        server, port = create_server(server_config)
        server.start()
        process = psutil.Process()
        rng = random.Random(seed)
        emails = sorted(
            {
                json.loads(line)["email"]
                for line in (graph.data / "ingest" / "employment.jsonl").read_text().splitlines()
            }
        )
        targets = rng.sample(emails, min(2000, len(emails)))
        try:
            _load(f"127.0.0.1:{port}", key, targets, 2.0, concurrency)  # warm-up
            rss_before = process.memory_info().rss
            latencies, errors = _load(f"127.0.0.1:{port}", key, targets, seconds, concurrency)
            rss_after = process.memory_info().rss
        finally:
            server.stop()
    cpus = len(os.sched_getaffinity(0))
    rps = len(latencies) / seconds
    return {
        "people": people,
        "seconds": seconds,
        "concurrency": concurrency,
        "client_processes": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "requests_per_s": round(rps, 1),
        "requests_per_s_per_core": round(rps / cpus, 1),
        "cores": cpus,
        **_percentiles(latencies),
        "server_rss_mb_before": round(rss_before / 2**20, 1),
        "server_rss_mb_after": round(rss_after / 2**20, 1),
        "note": "client processes share the machine's cores with the server",
    }


_SPAWN_ALLOWANCE_S = 8.0  # client processes start and import before the timed window opens


def _load(address: str, key: str, targets: list[str], seconds: float, concurrency: int) -> tuple[list[float], int]:
    start_at = time.time() + _SPAWN_ALLOWANCE_S
    with multiprocessing.get_context("spawn").Pool(concurrency) as pool:
        results = pool.starmap(
            _load_worker, [(address, key, targets, start_at, start_at + seconds, i) for i in range(concurrency)]
        )
    return [s for lat, _ in results for s in lat], sum(e for _, e in results)
