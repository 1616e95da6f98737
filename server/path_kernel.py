"""The warm-path search kernel, compiled by numba and run without the GIL, so the server's request
threads search on every core at once (server/warm_paths.py drives it; README, "Benchmarks", has the
measured comparison with the NumPy search it replaced).

The search is a depth-first walk from the targets toward the sources, deepened one hop per pass
(1 hop, then 2, then 3): the short paths, usually the strongest, are found first, so the k-th best
score rises early and prunes the long walks. Strengths are at most 1, so extending a partial path
never raises its score: a partial path scoring below the k-th best is not extended, nor one whose
score times its last person's strongest relationship is below it before the last hop. Pruning is
strict (a tie is still explored), so the answer is exact under the ranking: strength, then fewer
hops, then the people's node indices (pid order) source first; of parallel relationships between
the same people, the strongest.

The walk is resumable: `search_slice` examines at most `slots` relationship slots, stores where it
stopped in the state arrays and returns, so its caller can check the deadline and the work budget
between slices."""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from graph import strength_heuristic as heuristic

MAX_HOPS = 3

# Indices into the int64 `state` array.
PASS, TARGET, DEPTH, COUNT, SPENT = range(5)
STATE_SIZE = 5


class SearchWork(NamedTuple):
    """The arrays one search works in, passed to `search_slice` in this order: where the walk
    stands, and the best k paths so far, best first, with one spare row (index k) for the path
    being offered."""

    state: np.ndarray  # int64 (STATE_SIZE,)
    path_node: np.ndarray  # int32 (MAX_HOPS + 1,): the walk, target first
    path_edge: np.ndarray  # int32 (MAX_HOPS,)
    path_score: np.ndarray  # float64 (MAX_HOPS + 1,): the walk's score at each depth
    cursor: np.ndarray  # int64 (MAX_HOPS + 1,): next adjacency slot per depth
    cursor_end: np.ndarray  # int64 (MAX_HOPS + 1,)
    top_nodes: np.ndarray  # int32 (k + 1, MAX_HOPS + 1): source first, padded with -1
    top_edges: np.ndarray  # int32 (k + 1, MAX_HOPS)
    top_score: np.ndarray  # float64 (k + 1,)
    top_hops: np.ndarray  # int32 (k + 1,)

    @classmethod
    def start(cls, k: int) -> SearchWork:
        state = np.zeros(STATE_SIZE, dtype=np.int64)
        state[PASS], state[DEPTH] = 1, -1
        return cls(
            state,
            np.zeros(MAX_HOPS + 1, dtype=np.int32),
            np.zeros(MAX_HOPS, dtype=np.int32),
            np.zeros(MAX_HOPS + 1, dtype=np.float64),
            np.zeros(MAX_HOPS + 1, dtype=np.int64),
            np.zeros(MAX_HOPS + 1, dtype=np.int64),
            np.full((k + 1, MAX_HOPS + 1), -1, dtype=np.int32),
            np.full((k + 1, MAX_HOPS), -1, dtype=np.int32),
            np.zeros(k + 1, dtype=np.float64),
            np.zeros(k + 1, dtype=np.int32),
        )


@numba.njit(nogil=True, cache=True)
def _strength(e, edge_strength, edge_count, edge_last_ts, as_of):  # type: ignore[no-untyped-def]
    if edge_strength.shape[0] > 0:
        return np.float64(edge_strength[e])
    return heuristic.strength_of_one(edge_count[e], edge_last_ts[e], as_of)


@numba.njit(nogil=True, cache=True)
def _is_source(v, is_member, source_filter):  # type: ignore[no-untyped-def]
    if not is_member[v]:
        return False
    if source_filter.shape[0] == 0:
        return True
    i = np.searchsorted(source_filter, v)
    return i < source_filter.shape[0] and source_filter[i] == v


@numba.njit(nogil=True, cache=True)
def _before(a, b, top_nodes, top_score, top_hops):  # type: ignore[no-untyped-def]
    """Whether path row `a` ranks before row `b`."""
    if top_score[a] != top_score[b]:
        return top_score[a] > top_score[b]
    if top_hops[a] != top_hops[b]:
        return top_hops[a] < top_hops[b]
    for c in range(top_nodes.shape[1]):
        if top_nodes[a, c] != top_nodes[b, c]:
            return top_nodes[a, c] < top_nodes[b, c]
    return False


@numba.njit(nogil=True, cache=True)
def _move(src, dst, top_nodes, top_edges, top_score, top_hops):  # type: ignore[no-untyped-def]
    top_nodes[dst, :] = top_nodes[src, :]
    top_edges[dst, :] = top_edges[src, :]
    top_score[dst] = top_score[src]
    top_hops[dst] = top_hops[src]


@numba.njit(nogil=True, cache=True)
def _offer(count, top_nodes, top_edges, top_score, top_hops):  # type: ignore[no-untyped-def]
    """Offer the path in the spare row (index k) to the best k; returns the new count."""
    k = top_score.shape[0] - 1
    at = -1
    for i in range(count):  # the same people already ranked: keep the stronger copy
        if top_hops[i] == top_hops[k] and np.all(top_nodes[i, :] == top_nodes[k, :]):
            if top_score[k] <= top_score[i]:
                return count
            at = i
            break
    if at < 0:
        if count == k and not _before(k, k - 1, top_nodes, top_score, top_hops):
            return count
        at = min(count, k - 1)
        count = min(count + 1, k)
    _move(k, at, top_nodes, top_edges, top_score, top_hops)
    while at > 0 and _before(at, at - 1, top_nodes, top_score, top_hops):  # bubble up into rank
        _move(at, k, top_nodes, top_edges, top_score, top_hops)
        _move(at - 1, at, top_nodes, top_edges, top_score, top_hops)
        _move(k, at - 1, top_nodes, top_edges, top_score, top_hops)
        at -= 1
    return count


@numba.njit(nogil=True, cache=True)
def search_slice(  # type: ignore[no-untyped-def]
    indptr,
    neighbor,
    edge,
    edge_tenant,
    usable,
    is_member,
    source_filter,
    edge_strength,
    edge_count,
    edge_last_ts,
    as_of,
    bound,
    targets,
    max_hops,
    slots,
    state,
    path_node,
    path_edge,
    path_score,
    cursor,
    cursor_end,
    top_nodes,
    top_edges,
    top_score,
    top_hops,
):
    """Continue the search for at most `slots` relationship slots; True when it is complete.
    `edge_strength` is empty while the heuristic ranks. The slots examined are left in
    state[SPENT]."""
    k = top_score.shape[0] - 1
    hops, ti, d, count = state[PASS], state[TARGET], state[DEPTH], state[COUNT]
    threshold = top_score[k - 1] if count == k else -1.0
    spent = 0
    while hops <= max_hops:
        if d < 0:  # start the walk from the next target, or the next pass
            if ti >= targets.shape[0]:
                hops += 1
                ti = 0
                continue
            t = targets[ti]
            path_node[0], path_score[0] = t, 1.0
            cursor[0], cursor_end[0] = indptr[t], indptr[t + 1]
            d = 0
            continue
        j = cursor[d]
        if j >= cursor_end[d]:  # this person's relationships are all seen: back up one hop
            d -= 1
            if d < 0:
                ti += 1
            continue
        if spent >= slots:
            break
        cursor[d] = j + 1
        spent += 1
        e = edge[j]
        if not usable[edge_tenant[e]]:
            continue
        v = neighbor[j]
        on_path = False
        for i in range(d + 1):  # simple paths: no person twice
            if path_node[i] == v:
                on_path = True
                break
        if on_path:
            continue
        last_hop = d + 1 == hops
        if last_hop and not _is_source(v, is_member, source_filter):
            continue
        score = path_score[d] * _strength(e, edge_strength, edge_count, edge_last_ts, as_of)
        if count == k and score < threshold:
            continue
        if last_hop:  # a complete path: source v first, then back along the walk to its target
            top_nodes[k, :] = -1
            top_edges[k, :] = -1
            top_nodes[k, 0], top_edges[k, 0] = v, e
            for i in range(d + 1):
                top_nodes[k, i + 1] = path_node[d - i]
                if i < d:
                    top_edges[k, i + 1] = path_edge[d - 1 - i]
            top_score[k], top_hops[k] = score, hops
            count = _offer(count, top_nodes, top_edges, top_score, top_hops)
            if count == k:
                threshold = top_score[k - 1]
            continue
        # Before the last hop, v's strongest relationship bounds every completion (a hair above,
        # so a last-bit difference between NumPy's and this exp never prunes a tie).
        if count == k and d + 2 == hops and score * bound[v] * (1.0 + 1e-9) < threshold:
            continue
        d += 1
        path_node[d], path_edge[d - 1], path_score[d] = v, e, score
        cursor[d], cursor_end[d] = indptr[v], indptr[v + 1]
    state[PASS], state[TARGET], state[DEPTH], state[COUNT], state[SPENT] = hops, ti, d, count, spent
    return hops > max_hops
