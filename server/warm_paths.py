"""Warm-path search over the serving snapshot (who may see what of its people: server/visibility.py).

The search walks from the targets (usually few) toward the tenant's people in compiled code that
releases the GIL (server/path_kernel.py); this module resolves a query into its arrays, spends the
work budget and checks the deadline between slices of the walk. Semantics are those of the Cypher
twin in graph/cypher_oracle.py (tests hold them equal)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from core.errors import DeadlineExceededError, QueryTooCostlyError
from server import path_kernel as kernel
from server.snapshot import Snapshot

MAX_HOPS = kernel.MAX_HOPS
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


# The kernel runs in slices of about this many relationship slots, so the deadline is checked
# inside a hop, not only between hops (a slice takes well under a millisecond).
_SLICE_SLOTS = 1 << 16
_NO_FILTER = np.zeros(0, dtype=np.int32)
_NO_MODEL = np.zeros(0, dtype=np.float32)


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
    """The k strongest distinct simple paths of 1..max_hops hops from a source to a target, ranked
    by strength, then fewer hops, then the people's pids source first (server/path_kernel.py).

    The search stops with DeadlineExceededError past `deadline` (checked between slices of work)
    and with QueryTooCostlyError after examining `max_work` relationship slots."""
    budget = _Budget(max_work, deadline)
    budget.spend(0)
    usable = usable_tenants(snap, query.tenant, query.allow_cross_tenant)
    source_filter = _NO_FILTER if query.sources is None else np.unique(query.sources).astype(np.int32)
    targets = np.unique(query.targets).astype(np.int32)
    work = kernel.SearchWork.start(query.k)
    while not kernel.search_slice(
        snap.indptr,
        snap.neighbor,
        snap.edge,
        snap.edge_tenant,
        usable,
        snap.member_mask(query.tenant),
        source_filter,
        _NO_MODEL if snap.edge_strength is None else snap.edge_strength,
        snap.edge_count,
        snap.edge_last_ts,
        query.as_of,
        snap.strength_bound(),
        targets,
        query.max_hops,
        _SLICE_SLOTS,
        *work,
    ):
        budget.spend(int(work.state[kernel.SPENT]))
    budget.spend(int(work.state[kernel.SPENT]))
    paths = []
    for row in range(int(work.state[kernel.COUNT])):
        hops = int(work.top_hops[row])
        paths.append(
            FoundPath(
                nodes=tuple(work.top_nodes[row, : hops + 1].tolist()),
                edges=tuple(work.top_edges[row, :hops].tolist()),
                strength=float(work.top_score[row]),
            )
        )
    return paths


def compile_search(snap: Snapshot) -> None:
    """Compile the search kernel (and the snapshot's held mask) for `snap`'s array types now rather
    than in the first request (seconds, where numba's on-disk cache does not hold them yet)."""
    if snap.tenants.ids:
        nothing = np.zeros(0, dtype=np.int32)
        find_paths(snap, PathSearch(0, nothing, None, k=1, max_hops=1, allow_cross_tenant=False, as_of=0))
        snap.held_mask(0)
