"""Warm-path search over the serving snapshot (who may see what of its people: server/visibility.py).

The search expands from the targets (usually few) toward the tenant's people, one hop at a time,
as NumPy array operations over the CSR: every partial path is a row, so a level costs a handful
of vector operations instead of a Python loop per neighbor. Semantics are those of the Cypher twin
in graph/cypher_oracle.py (tests hold them equal)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from core.errors import DeadlineExceededError, QueryTooCostlyError
from server.snapshot import Snapshot, ranges

MAX_HOPS = 3
DEFAULT_MAX_WORK = 5_000_000  # relationship slots one search may examine (the server's max_search_work)


@dataclass(frozen=True)
class PathSearch:
    """A resolved warm-path query: node indices, not emails."""

    tenant: int
    targets: np.ndarray  # people to reach
    sources: np.ndarray | None  # allowed path starts; None = every member of the tenant
    k: int
    max_hops: int
    allow_cross_tenant: bool
    as_of: int  # scoring time (epoch seconds) for recency


@dataclass(frozen=True)
class FoundPath:
    nodes: tuple[int, ...]  # source first, target last
    edges: tuple[int, ...]  # relationship ids, hop by hop
    strength: float


def usable_tenants(snap: Snapshot, tenant: int, allow_cross_tenant: bool) -> np.ndarray:
    """Bool per tenant: whose relationships this query may traverse."""
    usable = np.zeros(len(snap.tenants.ids), dtype=bool)
    if allow_cross_tenant:
        usable |= ~snap.tenants.network_opt_out
    usable[tenant] = True
    return usable


# Partial paths are extended in chunks of about this many relationship slots, so the deadline is
# checked (and memory bounded) inside a hop, not only between hops.
_CHUNK_SLOTS = 1 << 17


@dataclass
class _Budget:
    """What one search may still spend: relationship slots examined, and time."""

    work_left: int
    deadline: float | None

    def spend(self, slots: int) -> None:
        self.work_left -= slots
        if self.work_left < 0:
            raise QueryTooCostlyError(
                "this warm-path query would examine more relationships than one request may "
                "(narrow it: fewer hops, a role filter, one rep or team)"
            )
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DeadlineExceededError("the warm-path search ran out of time")


def find_paths(
    snap: Snapshot, query: PathSearch, deadline: float | None = None, max_work: int = DEFAULT_MAX_WORK
) -> list[FoundPath]:
    """The k strongest distinct simple paths of 1..max_hops hops from a source to a target.

    Strengths are at most 1, so extending a partial path never raises its score: once k distinct
    paths are found, a partial path that cannot beat the k-th is dropped before it is extended (it
    would have more hops than all of them, so even a tie ranks below), and before the last hop, one
    whose score times the strongest relationship of its last person cannot beat it either. The
    search stops with DeadlineExceededError past `deadline` (checked between chunks of work) and
    with QueryTooCostlyError after examining `max_work` relationship slots."""
    usable = usable_tenants(snap, query.tenant, query.allow_cross_tenant)
    is_source = snap.member_mask(query.tenant)
    if query.sources is not None:
        restricted = np.zeros(snap.people, dtype=bool)
        restricted[query.sources] = True
        is_source = is_source & restricted
    budget = _Budget(max_work, deadline)
    budget.spend(0)

    # Partial paths, target first: nodes (rows x hops+1), edges (rows x hops), score (rows).
    nodes = np.unique(query.targets).astype(np.int32)[:, None]
    edges = np.zeros((nodes.shape[0], 0), dtype=np.int32)
    score = np.ones(nodes.shape[0])
    found = _Found(query.k)
    for hop in range(1, query.max_hops + 1):
        ends = is_source if hop == query.max_hops else None  # the last hop only matters where it reaches a source
        if ends is not None and found.threshold >= 0:
            # A partial path whose best completion cannot beat the k-th path found is not extended.
            promising = score * snap.strength_bound()[nodes[:, -1]] > found.threshold
            nodes, edges, score = nodes[promising], edges[promising], score[promising]
        nodes, edges, score = _extend(snap, nodes, edges, score, usable, ends, found.threshold, query.as_of, budget)
        done = is_source[nodes[:, -1]]
        found.add(nodes[done], edges[done], score[done])
        going_on = score > found.threshold
        nodes, edges, score = nodes[going_on], edges[going_on], score[going_on]
        if nodes.shape[0] == 0:
            break
    return found.ranked()


def _extend(
    snap: Snapshot,
    nodes: np.ndarray,
    edges: np.ndarray,
    score: np.ndarray,
    usable: np.ndarray,
    ends: np.ndarray | None,
    threshold: float,
    as_of: int,
    budget: _Budget,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every partial path extended by one relationship: usable, to a person not on it yet (and in
    `ends` when given), scoring above `threshold`."""
    last = nodes[:, -1]
    degree = (snap.indptr[last + 1] - snap.indptr[last]).astype(np.int64)
    bounds = np.searchsorted(np.cumsum(degree), np.arange(_CHUNK_SLOTS, int(degree.sum()), _CHUNK_SLOTS), side="right")
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for lo, hi in zip([0, *bounds.tolist()], [*bounds.tolist(), last.shape[0]]):
        budget.spend(int(degree[lo:hi].sum()))
        row = lo + np.repeat(np.arange(hi - lo), degree[lo:hi])
        slot = ranges(snap.indptr[last[lo:hi]], degree[lo:hi])
        neighbor, edge = snap.neighbor[slot], snap.edge[slot]
        keep = usable[snap.edge_tenant[edge]]
        for column in range(nodes.shape[1]):  # simple paths: no person twice
            keep &= neighbor != nodes[row, column]
        if ends is not None:
            keep &= ends[neighbor]
        row, neighbor, edge = row[keep], neighbor[keep], edge[keep]
        extended = score[row] * snap.strength(edge, as_of)
        strong = extended > threshold
        row, neighbor, edge, extended = row[strong], neighbor[strong], edge[strong], extended[strong]
        parts.append((np.column_stack([nodes[row], neighbor]), np.column_stack([edges[row], edge]), extended))
    if not parts:
        return (
            np.zeros((0, nodes.shape[1] + 1), dtype=np.int32),
            np.zeros((0, edges.shape[1] + 1), dtype=np.int32),
            np.zeros(0),
        )
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


class _Found:
    """Complete paths found so far, and the score a new one must beat to enter the top k."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.threshold = -1.0
        self._nodes: list[np.ndarray] = []
        self._edges: list[np.ndarray] = []
        self._score: list[np.ndarray] = []
        self._ranked: list[FoundPath] | None = []  # None: paths were added since the last ranking

    def add(self, nodes: np.ndarray, edges: np.ndarray, score: np.ndarray) -> None:
        if not score.shape[0]:
            return
        self._nodes.append(_pad(nodes))
        self._edges.append(_pad(edges))
        self._score.append(score)
        self._ranked = None
        if sum(s.shape[0] for s in self._score) < self.k:
            return  # fewer than k paths in all: nothing to beat yet
        best = self.ranked()
        if len(best) == self.k:
            self.threshold = best[-1].strength

    def ranked(self) -> list[FoundPath]:
        if self._ranked is None:
            nodes, edges, score = (np.concatenate(parts) for parts in (self._nodes, self._edges, self._score))
            self._ranked = _rank(nodes, edges, score, self.k)
        return self._ranked


def _pad(a: np.ndarray, width: int = MAX_HOPS + 1) -> np.ndarray:
    out = np.full((a.shape[0], width), -1, dtype=np.int32)
    out[:, : a.shape[1]] = a
    return out


def _rank(nodes: np.ndarray, edges: np.ndarray, score: np.ndarray, k: int) -> list[FoundPath]:
    """Distinct by people (the strongest parallel relationship wins), then strength desc, fewer
    hops, and the people's pids in path order (node order is pid order)."""
    if nodes.shape[0] == 0:
        return []
    # Only the strongest candidates can rank: keep everything scoring at least the m-th best score
    # (ties included), doubling m until it holds k distinct paths or everything.
    m = 4 * k
    while True:
        if m >= score.shape[0]:
            return _rank_all(nodes, edges, score, k)
        threshold = np.partition(score, score.shape[0] - m)[score.shape[0] - m]
        top = score >= threshold
        ranked = _rank_all(nodes[top], edges[top], score[top], k)
        if len(ranked) == k:
            return ranked
        m *= 4


def _rank_all(nodes: np.ndarray, edges: np.ndarray, score: np.ndarray, k: int) -> list[FoundPath]:
    hops = (nodes >= 0).sum(axis=1) - 1
    # Source-first node sequence: reverse each row's used prefix.
    seq = np.full_like(nodes, -1)
    for h in np.unique(hops):
        rows = hops == h
        seq[rows, : h + 1] = nodes[rows, h::-1]
    order = np.lexsort([*(seq[:, c] for c in range(seq.shape[1] - 1, -1, -1)), hops, -score])
    paths: list[FoundPath] = []
    seen: set[tuple[int, ...]] = set()
    for i in order.tolist():  # the best-scored copy of each node sequence, until k
        h = int(hops[i])
        people = tuple(seq[i, : h + 1].tolist())
        if people in seen:
            continue
        seen.add(people)
        paths.append(FoundPath(nodes=people, edges=tuple(edges[i, :h][::-1].tolist()), strength=float(score[i])))
        if len(paths) == k:
            break
    return paths
