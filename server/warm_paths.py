"""Warm-path search over the serving snapshot, and the privacy rules for showing its people.

The search expands from the targets (usually few) toward the tenant's people, one hop at a time,
as NumPy array operations over the CSR: every partial path is a row, so a level costs a handful
of vector operations instead of a Python loop per neighbor. Semantics are those of the Cypher twin
in graph/warm_paths.py (tests hold them equal)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from graph.records import FUNCTIONS, TITLE_LEVELS
from relgraph.errors import DeadlineExceededError
from server.snapshot import Snapshot, ranges

MAX_HOPS = 3


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


def find_paths(snap: Snapshot, query: PathSearch, deadline: float | None = None) -> list[FoundPath]:
    """The k strongest distinct simple paths of 1..max_hops hops from a source to a target."""
    usable = usable_tenants(snap, query.tenant, query.allow_cross_tenant)
    is_source = snap.member_mask(query.tenant)
    if query.sources is not None:
        restricted = np.zeros(snap.people, dtype=bool)
        restricted[query.sources] = True
        is_source = is_source & restricted

    # Partial paths, target first: nodes (rows x hops+1), edges (rows x hops), score (rows).
    nodes = np.unique(query.targets).astype(np.int32)[:, None]
    edges = np.zeros((nodes.shape[0], 0), dtype=np.int32)
    score = np.ones(nodes.shape[0])
    found_nodes: list[np.ndarray] = []
    found_edges: list[np.ndarray] = []
    found_score: list[np.ndarray] = []
    for hop in range(1, query.max_hops + 1):
        if deadline is not None and time.monotonic() > deadline:
            raise DeadlineExceededError("the warm-path search ran out of time")
        last = nodes[:, -1]
        degree = snap.indptr[last + 1] - snap.indptr[last]
        row = np.repeat(np.arange(last.shape[0]), degree)
        slot = ranges(snap.indptr[last], degree)
        neighbor, edge = snap.neighbor[slot], snap.edge[slot]
        keep = usable[snap.edge_tenant[edge]] & ~snap.erased[neighbor]
        for column in range(nodes.shape[1]):  # simple paths: no person twice
            keep &= neighbor != nodes[row, column]
        if hop == query.max_hops:  # the last hop only matters where it reaches a source
            keep &= is_source[neighbor]
        row, neighbor, edge = row[keep], neighbor[keep], edge[keep]
        strength = snap.strength(edge, query.as_of)
        nodes = np.column_stack([nodes[row], neighbor])
        edges = np.column_stack([edges[row], edge])
        score = score[row] * strength
        done = is_source[neighbor]
        found_nodes.append(_pad(nodes[done]))
        found_edges.append(_pad(edges[done]))
        found_score.append(score[done])
        if nodes.shape[0] == 0:
            break
    return _rank(np.concatenate(found_nodes), np.concatenate(found_edges), np.concatenate(found_score), query.k)


def _pad(a: np.ndarray, width: int = MAX_HOPS + 1) -> np.ndarray:
    out = np.full((a.shape[0], width), -1, dtype=np.int32)
    out[:, :a.shape[1]] = a
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
    seq, edges, score, hops = seq[order], edges[order], score[order], hops[order]
    _, first = np.unique(seq, axis=0, return_index=True)  # best-scored copy of each node sequence
    keep = np.sort(first)[:k]
    paths = []
    for i in keep:
        h = int(hops[i])
        paths.append(FoundPath(nodes=tuple(int(x) for x in seq[i, : h + 1]),
                               edges=tuple(int(x) for x in edges[i, :h][::-1]), strength=float(score[i])))
    return paths


# -- showing people ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PersonFacts:
    """What the requesting tenant may see of one person."""

    pid: str  # empty when masked
    identified: bool
    own_member: bool
    title_level: str
    function: str
    company_domain: str  # empty when masked
    company_size_band: str
    company_industry: str
    description: str


def person_facts(snap: Snapshot, node: int, tenant: int, named_by_requester: bool = False) -> PersonFacts:
    """Identify a person only if the tenant knows them (its member, its own data shows them, or it
    named them in the request) or their tenant opted in to sharing; otherwise describe their role
    only (DESIGN §4)."""
    memberships = snap.memberships(node)
    own_member = bool(np.any(memberships == tenant))
    shared = bool(np.any(snap.tenants.share_identities[memberships])) if memberships.size else False
    identified = named_by_requester or own_member or shared or snap.knows_tenant(node, tenant)
    level = TITLE_LEVELS[snap.level[node]] if snap.level[node] >= 0 else ""
    function = FUNCTIONS[snap.function[node]] if snap.function[node] >= 0 else ""
    company = int(snap.company[node])
    domain = snap.companies.cids[company] if company >= 0 else ""
    band = snap.companies.size_band[company] if company >= 0 else ""
    industry = snap.companies.industry[company] if company >= 0 else ""
    return PersonFacts(pid=snap.pid(node) if identified else "", identified=identified, own_member=own_member,
                       title_level=level, function=function, company_domain=domain if identified else "",
                       company_size_band=band, company_industry=industry,
                       description=describe(level, function, band, industry))


def describe(level: str, function: str, band: str, industry: str) -> str:
    """'VP finance at a 201-1000 person fintech company' from whatever is known."""
    title = {"c_level": "C-level", "vp": "VP", "director": "Director", "manager": "Manager", "ic": "Individual contributor"}
    function = {"hr": "HR", "it": "IT"}.get(function, function)
    who = " ".join(x for x in (title.get(level, "Person"), function if function and function != "other" else "") if x)
    where = " ".join(x for x in (f"a {band} person" if band else "a", industry, "company") if x)
    return f"{who} at {where}"


def shared_employers(snap: Snapshot, a: int, b: int) -> list[str]:
    return [snap.companies.cids[c] for c in np.intersect1d(snap.employers(a), snap.employers(b))]
