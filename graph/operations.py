"""Operator-facing reads and the erasure of a person: counts by label and type (overall and per
tenant) and removal of a pseudonymous person with everything that references them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from graph.pseudonymize import Pseudonymizer
from graph.store import GraphStore, Query

# Labels and relationship types of the graph model; tenant-owned ones carry tenant_id.
NODE_LABELS = ("Tenant", "Person", "Company", "Deal", "Activity", "Interaction", "Signal")
TENANT_NODE_LABELS = ("Deal", "Activity", "Interaction", "Signal")
REL_TYPES = ("MEMBER_OF", "WORKED_AT", "FOR", "OWNS", "ON_DEAL", "BY", "WITH", "ON", "KNOWS")

# Labels and types are not parameterizable in Cypher, so each count is its own constant query.
_NODE_COUNT = {label: Query(f"stats.nodes.{label}", f"MATCH (n:{label}) RETURN count(n) AS n") for label in NODE_LABELS}
_REL_COUNT = {t: Query(f"stats.rels.{t}", f"MATCH ()-[r:{t}]->() RETURN count(r) AS n") for t in REL_TYPES}
_NODE_BY_TENANT = {label: Query(f"stats.tenant_nodes.{label}",
                                f"MATCH (n:{label}) WHERE $tenant IS NULL OR n.tenant_id = $tenant "
                                "RETURN n.tenant_id AS tenant, count(*) AS n") for label in TENANT_NODE_LABELS}
_REL_BY_TENANT = {t: Query(f"stats.tenant_rels.{t}",
                           f"MATCH ()-[r:{t}]->() WHERE $tenant IS NULL OR r.tenant_id = $tenant "
                           "RETURN r.tenant_id AS tenant, count(*) AS n") for t in REL_TYPES}
_MEMBERS_BY_TENANT = Query("stats.tenant_members", """
MATCH (t:Tenant) WHERE $tenant IS NULL OR t.tenant_id = $tenant
RETURN t.tenant_id AS tenant, COUNT { (t)<-[:MEMBER_OF]-() } AS n
""")

_ERASE_PREVIEW = Query("erase.preview", """
MATCH (p:Person {pid: $pid})
RETURN COUNT { (p)<-[:BY]-(:Activity) } AS activities, COUNT { (p)--() } AS relationships
""")
# Events the person authored reference them as a whole; events they only received lose the WITH edge.
_ERASE = Query("erase.person", """
MATCH (p:Person {pid: $pid})
OPTIONAL MATCH (p)<-[:BY]-(a:Activity)
DETACH DELETE a
WITH DISTINCT p
DETACH DELETE p
""")


@dataclass(frozen=True)
class Stats:
    nodes: dict[str, int]
    relationships: dict[str, int]
    tenants: dict[str, dict[str, int]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stats(store: GraphStore, tenant: str | None = None) -> Stats:
    """Counts by label and type; per tenant, the tenant-owned ones keyed by tenant id."""
    tenants: dict[str, dict[str, int]] = {}

    def add(rows: list[dict[str, Any]], key: str) -> None:
        for row in rows:
            if row["tenant"] is not None and row["n"]:
                tenants.setdefault(row["tenant"], {})[key] = int(row["n"])

    add(store.read(_MEMBERS_BY_TENANT, tenant=tenant), "members")
    for label, query in _NODE_BY_TENANT.items():
        add(store.read(query, tenant=tenant), label)
    for rel, query in _REL_BY_TENANT.items():
        add(store.read(query, tenant=tenant), rel)
    if tenant is not None:
        return Stats(nodes={}, relationships={}, tenants=tenants)
    return Stats(nodes={label: int(store.read(q)[0]["n"]) for label, q in _NODE_COUNT.items()},
                 relationships={t: int(store.read(q)[0]["n"]) for t, q in _REL_COUNT.items()},
                 tenants=dict(sorted(tenants.items())))


@dataclass(frozen=True)
class ErasureReport:
    pid: str
    found: bool
    activities_deleted: int
    relationships_deleted: int
    nodes_deleted: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def erase_person(store: GraphStore, pseudo: Pseudonymizer, email: str) -> ErasureReport:
    """Remove the person's node, the events they authored and every relationship touching either."""
    pid = pseudo.pid(email)
    preview = store.read(_ERASE_PREVIEW, pid=pid)
    if not preview:
        return ErasureReport(pid=pid, found=False, activities_deleted=0, relationships_deleted=0, nodes_deleted=0)
    counters = store.write(_ERASE, pid=pid)
    return ErasureReport(pid=pid, found=True, activities_deleted=int(preview[0]["activities"]),
                         relationships_deleted=counters.relationships_deleted, nodes_deleted=counters.nodes_deleted)


_STRONGEST_TIES = Query("ops.strongest_ties", """
MATCH (a:Person)-[k:KNOWS {tenant_id: $tenant}]->(b:Person)
RETURN a.pid AS a, b.pid AS b, k.count AS count, k.two_way AS two_way, k.last_ts AS last_ts
ORDER BY k.two_way DESC, k.count DESC, a.pid, b.pid
LIMIT $limit
""")
_DEALS_BY_CRM_STAGE = Query("ops.deals_by_crm_stage", """
MATCH (d:Deal {tenant_id: $tenant})
RETURN d.outcome AS outcome, d.crm_stage AS crm_stage, count(*) AS deals, sum(d.amount) AS amount
ORDER BY outcome, crm_stage
""")


def strongest_ties(store: GraphStore, tenant: str, limit: int = 5) -> list[dict[str, Any]]:
    """A tenant's most two-way, most frequent ties, as pseudonyms with their evidence."""
    return store.read(_STRONGEST_TIES, tenant=tenant, limit=limit)


def deals_by_crm_stage(store: GraphStore, tenant: str) -> list[dict[str, Any]]:
    return store.read(_DEALS_BY_CRM_STAGE, tenant=tenant)
