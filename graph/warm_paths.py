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
from graph.strength import cypher_strength

# Quantifier bounds must be literals, so each hop limit has its own constant query. The quantified
# path pattern filters relationships by tenant while expanding (not after), anchored on indexed
# targets; node uniqueness is checked on the (at most 4) nodes of each path.
_TEMPLATE = """
MATCH (t:Person) WHERE t.pid IN $targets
MATCH p = (t) (()-[r:KNOWS WHERE r.tenant_id IN $tenants]-()){{1,{hops}}} (s:Person)
WHERE s.pid IN $sources
WITH p, [n IN reverse(nodes(p)) | n.pid] AS seq
WHERE size(seq) = size(reduce(seen = [], x IN seq | CASE WHEN x IN seen THEN seen ELSE seen + x END))
WITH seq, reduce(score = 1.0, k IN relationships(p) | score * {strength}) AS score
WITH seq, max(score) AS score
RETURN seq, score
ORDER BY score DESC, size(seq), seq
LIMIT $k
"""
WARM_PATHS = {hops: Query(f"warm_paths.cypher.{hops}", _TEMPLATE.format(hops=hops, strength=cypher_strength("k")))
              for hops in (1, 2, 3)}


@dataclass(frozen=True)
class ScoredPath:
    """People from source to target (pids) and the path's strength."""

    pids: tuple[str, ...]
    strength: float


def warm_paths_cypher(store: GraphStore, *, sources: list[str], targets: list[str], tenants: list[str],
                      k: int, max_hops: int, as_of: int) -> list[ScoredPath]:
    rows = store.read(WARM_PATHS[max_hops], sources=sources, targets=targets, tenants=tenants, k=k, as_of=as_of)
    return [ScoredPath(tuple(row["seq"]), float(row["score"])) for row in rows]
