"""Versioned schema migrations (constraints and indexes for the graph model), applied idempotently
at start-up and recorded as (:SchemaMigration) nodes, so the current version is queryable.

Nodes: Tenant{tenant_id}, Person{pid}, Company{cid}, Deal{tenant_id, deal_id},
Activity{tenant_id, activity_id}. Every tenant-owned node and relationship carries tenant_id."""

from __future__ import annotations

from dataclasses import dataclass

from graph.store import GraphStore, Query


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "natural-key uniqueness constraints",
        (
            "CREATE CONSTRAINT tenant_id IF NOT EXISTS FOR (t:Tenant) REQUIRE t.tenant_id IS UNIQUE",
            "CREATE CONSTRAINT person_pid IF NOT EXISTS FOR (p:Person) REQUIRE p.pid IS UNIQUE",
            "CREATE CONSTRAINT company_cid IF NOT EXISTS FOR (c:Company) REQUIRE c.cid IS UNIQUE",
            "CREATE CONSTRAINT deal_key IF NOT EXISTS FOR (d:Deal) REQUIRE (d.tenant_id, d.deal_id) IS UNIQUE",
            "CREATE CONSTRAINT activity_key IF NOT EXISTS FOR (a:Activity) "
            "REQUIRE (a.tenant_id, a.activity_id) IS UNIQUE",
        ),
    ),
    Migration(
        2,
        "lookup indexes for time windows and incremental snapshot refresh",
        (
            "CREATE INDEX activity_ts IF NOT EXISTS FOR (a:Activity) ON (a.tenant_id, a.ts)",
            "CREATE INDEX deal_tenant IF NOT EXISTS FOR (d:Deal) ON (d.tenant_id)",
            "CREATE INDEX knows_updated IF NOT EXISTS FOR ()-[k:KNOWS]-() ON (k.updated_at)",
        ),
    ),
    Migration(3, "API keys", ("CREATE CONSTRAINT api_key_id IF NOT EXISTS FOR (k:ApiKey) REQUIRE k.key_id IS UNIQUE",)),
    Migration(
        4,
        "erasure tombstones and audit records",
        (
            "CREATE INDEX erasure_at IF NOT EXISTS FOR (e:Erasure) ON (e.at)",
            "CREATE CONSTRAINT erasure_audit_id IF NOT EXISTS FOR (a:ErasureAudit) REQUIRE a.erasure_id IS UNIQUE",
        ),
    ),
    Migration(
        5,
        "people changed since a snapshot refresh",
        ("CREATE INDEX person_updated IF NOT EXISTS FOR (p:Person) ON (p.updated_at)",),
    ),
    Migration(
        6,
        "deals changed since the serving state's last refresh",
        ("CREATE INDEX deal_updated IF NOT EXISTS FOR (d:Deal) ON (d.updated_at)",),
    ),
    Migration(
        7,
        "reps' decisions on proposed CRM updates",
        ("CREATE CONSTRAINT proposal_decision_key IF NOT EXISTS FOR (d:ProposalDecision) REQUIRE d.key IS UNIQUE",),
    ),
    Migration(
        8,
        "interactions logged on deals since the serving state's last refresh",
        (
            "CREATE INDEX on_deal_updated IF NOT EXISTS FOR ()-[o:ON]-() ON (o.updated_at)",
            "CREATE INDEX with_updated IF NOT EXISTS FOR ()-[w:WITH]-() ON (w.updated_at)",
        ),
    ),
    Migration(
        9,
        "reps' decisions since the serving state's last refresh",
        (
            "CREATE INDEX proposal_decision_updated IF NOT EXISTS FOR (d:ProposalDecision) ON (d.updated_at)",
            # Decisions recorded before this version: stamped older than anything since (`at` is the
            # --as-of time they were made at, which may be a replay's future), their deal unknown.
            "MATCH (d:ProposalDecision) WHERE d.updated_at IS NULL SET d.updated_at = 1, d.deal_id = ''",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version

_APPLIED = Query("schema.applied", "MATCH (m:SchemaMigration) RETURN m.version AS version ORDER BY version")
_RECORD = Query(
    "schema.record",
    """
MERGE (m:SchemaMigration {version: $version})
ON CREATE SET m.name = $name, m.applied_at = datetime()
""",
)
_AWAIT = Query("schema.await_indexes", "CALL db.awaitIndexes(300)")


def current_version(store: GraphStore) -> int:
    """The highest applied migration, 0 for an empty database."""
    rows = store.read(_APPLIED)
    return max((int(r["version"]) for r in rows), default=0)


def migrate(store: GraphStore) -> list[int]:
    """Apply the migrations not yet recorded; returns the versions applied now (empty if none)."""
    applied = {int(r["version"]) for r in store.read(_APPLIED)}
    done = []
    for migration in MIGRATIONS:
        if migration.version in applied:
            continue
        for i, statement in enumerate(migration.statements):
            store.schema(Query(f"schema.v{migration.version}.{i}", statement))
        store.write(_RECORD, version=migration.version, name=migration.name)
        done.append(migration.version)
    if done:
        store.schema(_AWAIT)
    return done
