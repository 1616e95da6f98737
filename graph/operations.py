"""Operator-facing reads and the erasure of a person: counts by label and type (overall and per
tenant), and erasure of what a tenant, or the whole network, holds about a pseudonymous person."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import neo4j

from graph.store import GraphStore, Query

# Labels and relationship types of the graph model; tenant-owned ones carry tenant_id.
NODE_LABELS = ("Tenant", "Person", "Company", "Deal", "Activity", "Interaction", "Signal")
TENANT_NODE_LABELS = ("Deal", "Activity", "Interaction", "Signal")
REL_TYPES = ("MEMBER_OF", "WORKED_AT", "FOR", "OWNS", "ON_DEAL", "BY", "WITH", "ON", "KNOWS")

# Labels and types are not parameterizable in Cypher, so each count is its own constant query.
_NODE_COUNT = {label: Query(f"stats.nodes.{label}", f"MATCH (n:{label}) RETURN count(n) AS n") for label in NODE_LABELS}
_REL_COUNT = {t: Query(f"stats.rels.{t}", f"MATCH ()-[r:{t}]->() RETURN count(r) AS n") for t in REL_TYPES}
_NODE_BY_TENANT = {
    label: Query(
        f"stats.tenant_nodes.{label}",
        f"MATCH (n:{label}) WHERE $tenant IS NULL OR n.tenant_id = $tenant RETURN n.tenant_id AS tenant, count(*) AS n",
    )
    for label in TENANT_NODE_LABELS
}
_REL_BY_TENANT = {
    t: Query(
        f"stats.tenant_rels.{t}",
        f"MATCH ()-[r:{t}]->() WHERE $tenant IS NULL OR r.tenant_id = $tenant "
        "RETURN r.tenant_id AS tenant, count(*) AS n",
    )
    for t in REL_TYPES
}
_MEMBERS_BY_TENANT = Query(
    "stats.tenant_members",
    """
MATCH (t:Tenant) WHERE $tenant IS NULL OR t.tenant_id = $tenant
RETURN t.tenant_id AS tenant, COUNT { (t)<-[:MEMBER_OF]-() } AS n
""",
)


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
    return Stats(
        nodes={label: int(store.read(q)[0]["n"]) for label, q in _NODE_COUNT.items()},
        relationships={t: int(store.read(q)[0]["n"]) for t, q in _REL_COUNT.items()},
        tenants=dict(sorted(tenants.items())),
    )


# -- erasure -----------------------------------------------------------------------------------
# A tenant erases what it holds about a person: its activities the person took part in (authored or
# received: an activity's id may be derived from the person's pseudonym) and every relationship of
# that tenant touching them; the person's node goes too when nothing else references it. A network
# operator erases the person everywhere. Either way, in the same transaction: a tombstone (the pid
# and the time) that tells every running server to drop and re-read the person at its next
# incremental refresh, pruned once older than the retention (servers rebuild fully well within
# it), and an audit record that keeps only a digest of the pid, so an operator holding the network
# key and the address can verify the erasure while nothing keeps the pseudonym itself.

NETWORK = "*"  # the erasure scope of a network operator: every tenant's data (never a tenant id)

_ERASE_PREVIEW = Query(
    "erase.preview",
    """
MATCH (p:Person {pid: $pid})
RETURN COUNT { (p)<-[:BY|WITH]-(a:Activity) WHERE $scope = '*' OR a.tenant_id = $scope } AS activities,
       COUNT { (p)-[r]-() WHERE $scope = '*' OR r.tenant_id = $scope } AS relationships
""",
)
# The other people of an erased activity lose a relationship: their updated_at makes every
# server's next refresh re-read them.
_ERASE_ACTIVITIES = Query(
    "erase.activities",
    """
MATCH (p:Person {pid: $pid})<-[:BY|WITH]-(a:Activity) WHERE $scope = '*' OR a.tenant_id = $scope
WITH DISTINCT a
OPTIONAL MATCH (a)-[:BY|WITH]->(other:Person) WHERE other.pid <> $pid
SET other.updated_at = timestamp()
WITH DISTINCT a
DETACH DELETE a
""",
)
_ERASE_RELATIONSHIPS = Query(
    "erase.relationships",
    """
MATCH (p:Person {pid: $pid})-[r]-() WHERE $scope = '*' OR r.tenant_id = $scope
DELETE r
""",
)
_ERASE_ORPHAN = Query(
    "erase.orphan",
    """
MATCH (p:Person {pid: $pid}) WHERE NOT EXISTS { (p)--() }
DELETE p
""",
)
_TOMBSTONE = Query("erase.tombstone", "CREATE (:Erasure {pid: $pid, at: timestamp()})")
_PRUNE_TOMBSTONES = Query(
    "erase.prune_tombstones",
    """
MATCH (old:Erasure) WHERE old.at < timestamp() - $retention_ms
DELETE old
""",
)
_AUDIT = Query(
    "erase.audit",
    """
CREATE (:ErasureAudit {erasure_id: $erasure_id, at: timestamp(), actor: $actor, scope: $scope, subject: $subject,
                       activities_deleted: $activities, relationships_deleted: $relationships, nodes_deleted: $nodes})
""",
)


@dataclass(frozen=True)
class ErasureReport:
    pid: str
    scope: str  # a tenant id, or NETWORK
    found: bool  # whether the scope held anything about the person
    activities_deleted: int
    relationships_deleted: int
    nodes_deleted: int
    erasure_id: str  # the audit record's id; "" when nothing was found

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def audit_subject(pid: str) -> str:
    """What the audit record keeps of the erased person: a digest of the pid, not the pid."""
    return hashlib.sha256(f"relgraph-erasure-audit:{pid}".encode()).hexdigest()[:32]


def erase_person(store: GraphStore, pid: str, *, scope: str, actor: str, retention_s: float) -> ErasureReport:
    """Erase what `scope` (a tenant id, or NETWORK) holds about the person `pid`, with a tombstone
    for running servers and an audit record, in one transaction. `found` counts only the scope's data."""

    def work(tx: neo4j.ManagedTransaction) -> ErasureReport:
        preview = tx.run(_ERASE_PREVIEW.text, pid=pid, scope=scope).single()
        if preview is None or preview["activities"] + preview["relationships"] == 0:
            return ErasureReport(pid, scope, False, 0, 0, 0, "")
        deleted = [
            tx.run(q.text, pid=pid, scope=scope).consume().counters
            for q in (_ERASE_ACTIVITIES, _ERASE_RELATIONSHIPS, _ERASE_ORPHAN)
        ]
        report = ErasureReport(
            pid,
            scope,
            True,
            int(preview["activities"]),
            sum(c.relationships_deleted for c in deleted),
            sum(c.nodes_deleted for c in deleted),
            uuid.uuid4().hex,
        )
        tx.run(_TOMBSTONE.text, pid=pid).consume()
        tx.run(_PRUNE_TOMBSTONES.text, retention_ms=int(retention_s * 1000)).consume()
        tx.run(
            _AUDIT.text,
            erasure_id=report.erasure_id,
            actor=actor,
            scope=scope,
            subject=audit_subject(pid),
            activities=report.activities_deleted,
            relationships=report.relationships_deleted,
            nodes=report.nodes_deleted,
        ).consume()
        return report

    return store.write_tx("erase.person", work)


def prune_erasure_tombstones(store: GraphStore, retention_s: float) -> int:
    """Delete tombstones older than `retention_s`; returns how many went."""
    return store.write(_PRUNE_TOMBSTONES, retention_ms=int(retention_s * 1000)).nodes_deleted


_STRONGEST_TIES = Query(
    "ops.strongest_ties",
    """
MATCH (a:Person)-[k:KNOWS {tenant_id: $tenant}]->(b:Person)
RETURN a.pid AS a, b.pid AS b, k.count AS count, k.two_way AS two_way, k.last_ts AS last_ts
ORDER BY k.two_way DESC, k.count DESC, a.pid, b.pid
LIMIT $limit
""",
)
_DEALS_BY_CRM_STAGE = Query(
    "ops.deals_by_crm_stage",
    """
MATCH (d:Deal {tenant_id: $tenant})
RETURN d.outcome AS outcome, d.crm_stage AS crm_stage, count(*) AS deals, sum(d.amount) AS amount
ORDER BY outcome, crm_stage
""",
)


def strongest_ties(store: GraphStore, tenant: str, limit: int = 5) -> list[dict[str, Any]]:
    """A tenant's most two-way, most frequent ties, as pseudonyms with their evidence."""
    return store.read(_STRONGEST_TIES, tenant=tenant, limit=limit)


def deals_by_crm_stage(store: GraphStore, tenant: str) -> list[dict[str, Any]]:
    return store.read(_DEALS_BY_CRM_STAGE, tenant=tenant)


_DECIDE = Query(
    "proposals.decide",
    "MERGE (d:ProposalDecision {key: $tenant + ':' + $proposal_id}) "
    "SET d.tenant = $tenant, d.proposal_id = $proposal_id, d.deal_id = $deal_id, d.field = $field, "
    "d.decision = $decision, d.at = $at, d.updated_at = timestamp()",
)


def record_proposal_decision(
    store: GraphStore, tenant: str, proposal_id: str, deal_id: str, field: str, decision: str, at: int
) -> None:
    """A rep's decision on a proposed CRM update (the last one told counts); no person data is kept.
    Servers pick it up at their next refresh (`GraphReader.proposal_decisions`)."""
    store.write(_DECIDE, tenant=tenant, proposal_id=proposal_id, deal_id=deal_id, field=field, decision=decision, at=at)
