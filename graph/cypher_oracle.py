"""Warm paths as Cypher on Neo4j: the query twin of the serving snapshot's search (server/), used
to prove both give the same paths and as the benchmark's baseline.

Semantics shared with the snapshot: simple paths of 1..max_hops KNOWS relationships from a source
(the tenant's members, optionally narrowed) to a target; only relationships of allowed tenants are
usable; between two people the strongest usable relationship counts; a path's strength is the
product of its relationships' strengths; paths are distinct by their people and ranked by strength,
then fewer hops, then the people's pids in order."""

from __future__ import annotations

from dataclasses import dataclass

from graph.store import GraphStore, Query
from graph.strength_heuristic import cypher_strength

# Quantifier bounds must be literals, so each hop limit has its own constant query. The quantified
# path pattern filters relationships by tenant while expanding (not after), anchored on indexed
# targets; node uniqueness is checked on the (at most 4) nodes of each path.
_TEMPLATE = """
MATCH (t:Person) WHERE t.pid IN $targets
MATCH p = (t) (()-[r:KNOWS WHERE r.tenant_id IN $tenants]-()){{1,{hops}}} (s:Person)
WHERE {sources}
WITH p, [n IN reverse(nodes(p)) | n.pid] AS seq
WHERE size(seq) = size(reduce(seen = [], x IN seq | CASE WHEN x IN seen THEN seen ELSE seen + x END))
WITH seq, reduce(score = 1.0, k IN relationships(p) | score * {strength}) AS score
WITH seq, max(score) AS score
RETURN seq, score
ORDER BY score DESC, size(seq), seq
LIMIT $k
"""
# Sources: the tenant's members (the common case, matched in the graph), or an explicit list (a rep, a team).
_SOURCES = {"members": "EXISTS { (s)-[:MEMBER_OF]->(:Tenant {tenant_id: $tenant}) }", "listed": "s.pid IN $sources"}
WARM_PATHS = {
    (hops, kind): Query(
        f"warm_paths.cypher.{kind}.{hops}",
        _TEMPLATE.format(hops=hops, sources=predicate, strength=cypher_strength("k")),
    )
    for hops in (1, 2, 3)
    for kind, predicate in _SOURCES.items()
}


@dataclass(frozen=True)
class ScoredPath:
    """People from source to target (pids) and the path's strength."""

    pids: tuple[str, ...]
    strength: float


def warm_paths_cypher(
    store: GraphStore,
    *,
    tenant: str,
    targets: list[str],
    tenants: list[str],
    k: int,
    max_hops: int,
    as_of: int,
    sources: list[str] | None = None,
) -> list[ScoredPath]:
    """Paths from `sources`, or from any member of `tenant` when None, over `tenants`' KNOWS."""
    query = WARM_PATHS[(max_hops, "members" if sources is None else "listed")]
    rows = store.read(query, tenant=tenant, sources=sources or [], targets=targets, tenants=tenants, k=k, as_of=as_of)
    return [ScoredPath(tuple(row["seq"]), float(row["score"])) for row in rows]


def same_ranking(a: list[ScoredPath], b: list[ScoredPath], tolerance: float = 1e-9) -> bool:
    """Equal ranked paths, where paths whose strengths tie (within `tolerance`; the two engines'
    floating point may differ in the last bits) may come in either order."""
    if len(a) != len(b) or any(abs(x.strength - y.strength) > tolerance for x, y in zip(a, b)):
        return False
    groups: dict[float, tuple[set[tuple[str, ...]], set[tuple[str, ...]]]] = {}
    for x, y in zip(a, b):
        mine, theirs = groups.setdefault(round(x.strength / tolerance) * tolerance, (set(), set()))
        mine.add(x.pids)
        theirs.add(y.pids)
    return all(mine == theirs for mine, theirs in groups.values())
