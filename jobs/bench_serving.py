"""`relgraph bench warm-paths`, on a generated network in a throwaway Neo4j: the same random
warm-path queries answered from the serving snapshot and by the Cypher twin on Neo4j, with latency
percentiles, the speedup, whether the paths are identical, snapshot build time and bytes per
relationship. (`relgraph bench grpc`, the whole server under load: jobs/bench_grpc.py.)"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from tqdm import tqdm

from core.config import Config
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
    config: Config,
    *,
    people: int,
    queries: int,
    cypher_queries: int,
    network_key: str,
    relationships_per_person: float | None = None,
    initial: bool = False,
    seed: int = 7,
    tenants: int = 5,
) -> dict[str, Any]:
    pseudo = Pseudonymizer(network_key)
    generator = GeneratorConfig(
        people=people, tenants=tenants, seed=seed, relationships_per_person=relationships_per_person
    )
    with generated_graph(config, generator, pseudo, initial=initial) as graph:
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
        "loaded": "in bulk (ingest --initial)" if initial else "through transactions",
        "relationships": snap.relationships,
        "relationships_per_person": round(2 * snap.relationships / max(1, snap.people), 1),
        "snapshot_build_seconds": round(build_seconds, 2),
        "snapshot_bytes_per_relationship": round(snap.adjacency_bytes / max(1, snap.relationships), 2),
        "snapshot_total_bytes_per_relationship": round(snap.total_bytes / max(1, snap.relationships), 2),
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
