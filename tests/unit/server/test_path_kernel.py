"""The compiled warm-path search equals a brute-force enumeration of every simple path on random
graphs: with the heuristic's strengths, with a model's strengths that tie often (parallel
relationships, equal scores decided by hops and then by the people), restricted sources, every k
and hop count; and it stops at its work budget and its deadline."""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from core.errors import DeadlineExceededError, QueryTooCostlyError
from server import snapshot as snapshots
from server.snapshot import Snapshot
from server.warm_paths import PathSearch, find_paths, usable_tenants
from tests.support.serving import AS_OF, random_snapshot


def brute_force(snap: Snapshot, query: PathSearch) -> list[tuple[tuple[int, ...], float]]:
    """Every simple path from a target back to a source, scored from the target's end as the
    search does; the strongest copy of each people sequence, ranked, the first k."""
    usable = usable_tenants(snap, query.tenant, query.allow_cross_tenant)
    sources = set(np.flatnonzero(snap.member_mask(query.tenant)).tolist())
    if query.sources is not None:
        sources &= set(query.sources.tolist())
    best: dict[tuple[int, ...], float] = {}

    def walk(path: list[int], score: float) -> None:
        if len(path) > 1 and path[-1] in sources:
            people = tuple(reversed(path))
            best[people] = max(best.get(people, -1.0), score)
        if len(path) > query.max_hops:
            return
        neighbors, edges = snap.edges_of(path[-1])
        for v, e in zip(neighbors.tolist(), edges.tolist()):
            if usable[snap.edge_tenant[e]] and v not in path:
                walk([*path, v], score * float(snap.strength(np.array([e]), query.as_of)[0]))

    for t in set(query.targets.tolist()):
        walk([t], 1.0)
    ranked = sorted(best.items(), key=lambda item: (-item[1], len(item[0]), item[0]))
    return ranked[: query.k]


def search(snap: Snapshot, rng: np.random.Generator, **overrides: Any) -> PathSearch:
    query = PathSearch(
        tenant=int(rng.integers(3)),
        targets=rng.choice(snap.people, int(rng.integers(1, 4))),
        sources=None,
        k=int(rng.integers(1, 12)),
        max_hops=int(rng.integers(1, 4)),
        allow_cross_tenant=bool(rng.integers(2)),
        as_of=AS_OF,
    )
    return replace(query, **overrides)


def found(snap: Snapshot, query: PathSearch) -> list[tuple[tuple[int, ...], float]]:
    paths = find_paths(snap, query)
    for path in paths:  # the evidence names real relationships along the path
        lo, hi = snapshots.edge_endpoints(snap)
        for (a, b), e in zip(itertools.pairwise(path.nodes), path.edges):
            assert {a, b} == {int(lo[e]), int(hi[e])}
    return [(p.nodes, p.strength) for p in paths]


@pytest.mark.parametrize("seed", range(6))
def test_the_heuristics_paths_are_the_brute_force_ones(seed: int) -> None:
    snap = random_snapshot(seed)
    rng = np.random.default_rng(100 + seed)
    for _ in range(25):
        query = search(snap, rng)
        ours, truth = found(snap, query), brute_force(snap, query)
        assert [p for p, _ in ours] == [p for p, _ in truth], query
        assert np.allclose([s for _, s in ours], [s for _, s in truth], rtol=1e-12, atol=0), query


@pytest.mark.parametrize("seed", range(6))
def test_tied_model_strengths_rank_by_hops_then_people(seed: int) -> None:
    snap = random_snapshot(seed, interactions=220)
    rng = np.random.default_rng(200 + seed)
    # Four distinct strengths, all powers of two: products are exact, so ties are real ties.
    tied = replace(snap, edge_strength=rng.choice([1.0, 0.5, 0.25, 0.125], snap.relationships).astype(np.float32))
    ties = 0
    for _ in range(25):
        members = np.flatnonzero(tied.member_mask(0))
        restrict = rng.choice(members, max(1, members.size // 2), replace=False) if rng.integers(2) else None
        query = search(tied, rng, tenant=0, sources=restrict)
        ours, truth = found(tied, query), brute_force(tied, query)
        assert ours == truth, query
        ties += len(truth) - len({s for _, s in truth})
    assert ties >= 10  # the tie-breaks were exercised


def test_a_search_stops_at_its_work_budget_and_its_deadline() -> None:
    snap = random_snapshot(0, people=60, interactions=900)
    query = PathSearch(
        tenant=0, targets=np.arange(10), sources=None, k=100, max_hops=3, allow_cross_tenant=True, as_of=AS_OF
    )
    find_paths(snap, query)  # within the default budget
    with pytest.raises(QueryTooCostlyError):
        find_paths(snap, query, max_work=1000)
    with pytest.raises(DeadlineExceededError):
        find_paths(snap, query, deadline=time.monotonic() - 1)
