"""Reads that export the graph for in-memory use (the serving snapshot, training data), streamed
in pid-ordered pages rather than one giant query, plus the delta reads that refresh a snapshot."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graph.store import GraphStore, Query

PAGE_SIZE = 20_000

# What serving needs of a person `p`: current job (level, function, employer), every employer
# (for shared-employer evidence) and tenant memberships.
_PERSON_FIELDS = """
OPTIONAL CALL (p) {
  MATCH (p)-[w:WORKED_AT]->(c:Company)
  WITH w, c ORDER BY w.to = -1 DESC, w.from DESC
  RETURN collect(DISTINCT c.cid) AS employers,
         head(collect(CASE WHEN w.to = -1 THEN [c.cid, w.title_level, w.function] END)) AS job
}
OPTIONAL CALL (p) {
  MATCH (p)-[m:MEMBER_OF]->(t:Tenant)
  RETURN collect([t.tenant_id, m.team, m.title_level, m.function]) AS memberships
}
OPTIONAL CALL (p) {
  MATCH (p)-[r:WORKED_AT|ON_DEAL|OWNS|BY|WITH]-()
  RETURN collect(DISTINCT r.tenant_id) AS held_by
}
RETURN p.pid AS pid, employers, job, memberships, held_by
"""
# A KNOWS relationship `k` from `a` to `b` with its evidence.
_KNOWS_FIELDS = """
RETURN a.pid AS lo, b.pid AS hi, k.tenant_id AS tenant, k.count AS count, k.two_way AS two_way,
       k.last_ts AS last_ts, k.updated_at AS updated_at
"""

_PEOPLE_PAGE = Query("export.people_page", """
MATCH (p:Person) WHERE p.pid > $after
WITH p ORDER BY p.pid LIMIT $limit
""" + _PERSON_FIELDS)

_PEOPLE_BY_PID = Query("export.people_by_pid", """
UNWIND $pids AS pid
MATCH (p:Person {pid: pid})
""" + _PERSON_FIELDS)

_KNOWS_PAGE = Query("export.knows_page", """
MATCH (a:Person) WHERE a.pid > $after
WITH a ORDER BY a.pid LIMIT $limit
OPTIONAL MATCH (a)-[k:KNOWS]->(b:Person)
""" + _KNOWS_FIELDS)

_KNOWS_CHANGED = Query("export.knows_changed", """
MATCH (a:Person)-[k:KNOWS]->(b:Person) WHERE k.updated_at > $since
""" + _KNOWS_FIELDS)

_PEOPLE_CHANGED = Query("export.people_changed", """
MATCH (p:Person) WHERE p.updated_at > $since
RETURN p.pid AS pid, p.updated_at AS updated_at
""")

_PEOPLE_WATERMARK = Query("export.people_watermark", "MATCH (p:Person) RETURN max(p.updated_at) AS at")

_KNOWS_OF = Query("export.knows_of", """
UNWIND $pids AS pid
MATCH (:Person {pid: pid})-[k:KNOWS]-(:Person)
WITH DISTINCT k
MATCH (a:Person)-[k]->(b:Person)
""" + _KNOWS_FIELDS)

_ERASURES_SINCE = Query("export.erasures_since", """
MATCH (e:Erasure) WHERE e.at > $since
RETURN e.pid AS pid, e.at AS at ORDER BY at
""")

_KNOWS_EVENTS_PAGE = Query("export.knows_events_page", """
MATCH (a:Person) WHERE a.pid > $after
WITH a ORDER BY a.pid LIMIT $limit
OPTIONAL MATCH (a)-[k:KNOWS]->(b:Person)
RETURN a.pid AS lo, b.pid AS hi, k.tenant_id AS tenant, k.events AS events
""")

_EMPLOYMENT = Query("export.employment", """
MATCH (p:Person)-[w:WORKED_AT]->(c:Company)
RETURN p.pid AS pid, c.cid AS cid, w.from AS from, w.to AS to,
       coalesce(w.title_level, '') AS level, coalesce(w.function, '') AS function
""")

# Changes whenever anything a training export reads changes (ingest, erasure, tenant settings).
_FINGERPRINT = Query("export.fingerprint", """
CALL () { MATCH (p:Person) RETURN count(p) AS people }
CALL () { MATCH ()-[k:KNOWS]->() RETURN count(k) AS knows, max(k.updated_at) AS knows_updated }
CALL () { MATCH ()-[w:WORKED_AT]->() RETURN count(w) AS employment }
CALL () { MATCH (t:Tenant) RETURN collect([t.tenant_id, coalesce(t.network_opt_out, false)]) AS tenants }
RETURN people, knows, knows_updated, employment, tenants
""")

_COMPANIES = Query("export.companies", """
MATCH (c:Company) RETURN c.cid AS cid, coalesce(c.industry, '') AS industry, coalesce(c.size_band, '') AS size_band
""")

# A company as one tenant's own records know it: an account of its deals or an employer in its records.
_COMPANY = Query("export.company", """
MATCH (c:Company {cid: $cid})
WHERE EXISTS { (c)<-[:FOR {tenant_id: $tenant}]-() } OR EXISTS { (c)<-[:WORKED_AT {tenant_id: $tenant}]-() }
RETURN coalesce(c.industry, '') AS industry, coalesce(c.size_band, '') AS size_band
""")

_TENANTS = Query("export.tenants", """
MATCH (t:Tenant)
RETURN t.tenant_id AS tenant, coalesce(t.share_identities, false) AS share_identities,
       coalesce(t.network_opt_out, false) AS network_opt_out
""")

_ECONOMIC_BUYERS = Query("export.economic_buyers", """
MATCH (p:Person)-[r:ON_DEAL {role: 'economic_buyer'}]->(d:Deal)-[:FOR]->(c:Company)
RETURN DISTINCT d.tenant_id AS tenant, p.pid AS pid, c.cid AS cid
""")


# A deal with its account, owner, listed contacts and the interactions logged on it; each
# interaction row is [ts, kind, from pid, with pid, from is a member of the deal's tenant, with is].
_DEALS = Query("export.deals", """
MATCH (d:Deal) WHERE d.created IS NOT NULL AND ($tenants IS NULL OR d.tenant_id IN $tenants)
  AND ($deal_ids IS NULL OR d.deal_id IN $deal_ids)
OPTIONAL MATCH (d)-[:FOR]->(c:Company)
OPTIONAL MATCH (o:Person)-[:OWNS]->(d)
CALL (d) {
  OPTIONAL MATCH (p:Person)-[r:ON_DEAL]->(d)
  RETURN collect([p.pid, r.role]) AS contacts
}
CALL (d) {
  OPTIONAL MATCH (a:Interaction)-[:ON]->(d)
  OPTIONAL MATCH (a)-[:BY]->(f:Person)
  OPTIONAL MATCH (a)-[:WITH]->(w:Person)
  RETURN collect([a.ts, a.kind, f.pid, w.pid,
                  EXISTS { (f)-[:MEMBER_OF {tenant_id: d.tenant_id}]->() },
                  EXISTS { (w)-[:MEMBER_OF {tenant_id: d.tenant_id}]->() }]) AS interactions
}
RETURN d.tenant_id AS tenant, d.deal_id AS deal_id, c.cid AS cid, coalesce(c.industry, '') AS industry,
       coalesce(c.size_band, '') AS size_band, o.pid AS owner, coalesce(d.amount, 0.0) AS amount,
       d.created AS created, coalesce(d.product, '') AS product, coalesce(d.stage_names, []) AS stage_names,
       coalesce(d.stage_ts, []) AS stage_ts, coalesce(d.closed, -1) AS closed, coalesce(d.outcome, 'open') AS outcome,
       contacts, interactions
ORDER BY tenant, deal_id
""")

_JOBS_OF = Query("export.jobs_of", """
UNWIND $pids AS pid
MATCH (p:Person {pid: pid})-[w:WORKED_AT]->(c:Company)
RETURN pid, c.cid AS cid, w.from AS from, w.to AS to, coalesce(w.title_level, '') AS level,
       coalesce(w.function, '') AS function
""")

_STAFF_OF = Query("export.staff_of", """
UNWIND $cids AS cid
MATCH (:Company {cid: cid})<-[:WORKED_AT]-(p:Person)
RETURN DISTINCT cid, p.pid AS pid
""")

_SIGNALS_BY = Query("export.signals_by", """
UNWIND $pids AS pid
MATCH (:Person {pid: pid})<-[:BY]-(s:Signal) WHERE s.tenant_id IN $tenants
RETURN pid, s.tenant_id AS tenant, s.activity_id AS id, s.kind AS kind, s.topic AS topic,
       coalesce(s.value, '') AS value, s.ts AS ts
""")

# Which tenants' records name each person (any relationship of theirs carries its tenant), and
# whether the person is a member of a tenant that shares identities: the visibility rule's inputs.
_HOLDERS_OF = Query("export.holders_of", """
UNWIND $pids AS pid
MATCH (p:Person {pid: pid})
RETURN pid, COLLECT { MATCH (p)-[r]-() RETURN DISTINCT r.tenant_id } AS held_by,
       EXISTS { (p)-[:MEMBER_OF]->(t:Tenant) WHERE t.share_identities } AS shared
""")

# Each person's ties to members of a tenant, observed by that tenant: the KNOWS event logs.
_TIES_TO_MEMBERS = Query("export.ties_to_members", """
UNWIND $pids AS pid
MATCH (p:Person {pid: pid})-[k:KNOWS]-(m:Person)-[:MEMBER_OF]->(t:Tenant)
WHERE k.tenant_id = t.tenant_id AND t.tenant_id IN $tenants AND m <> p
RETURN pid, m.pid AS member, t.tenant_id AS tenant, k.events AS events
""")


@dataclass(frozen=True)
class PersonRow:
    pid: str
    employers: list[str]
    job: tuple[str, str, str] | None  # (company cid, title level, function) of the current job
    memberships: list[tuple[str, str, str, str]]  # (tenant, team, title level, function)
    # Tenants whose own records name this person besides membership and KNOWS: employment, deals,
    # activities (the visibility rule's "held by", see server/visibility.py).
    held_by: list[str]


def _person(row: dict[str, Any]) -> PersonRow:
    job = row["job"]
    return PersonRow(pid=row["pid"], employers=list(row["employers"] or []),
                     job=(job[0], job[1] or "", job[2] or "") if job else None,
                     memberships=[(m[0], m[1] or "", m[2] or "", m[3] or "") for m in row["memberships"] or []],
                     held_by=[t for t in row["held_by"] or [] if t is not None])


def people(store: GraphStore, page_size: int = PAGE_SIZE) -> Iterator[PersonRow]:
    """Every person, in pid order."""
    after = ""
    while True:
        rows = store.read(_PEOPLE_PAGE, after=after, limit=page_size)
        if not rows:
            return
        for row in rows:
            yield _person(row)
        after = rows[-1]["pid"]


def people_by_pid(store: GraphStore, pids: list[str], page_size: int = PAGE_SIZE) -> list[PersonRow]:
    """The people of `pids` that exist, read a page of pids at a time."""
    return [_person(row) for start in range(0, len(pids), page_size)
            for row in store.read(_PEOPLE_BY_PID, pids=pids[start:start + page_size])]


def knows(store: GraphStore, page_size: int = PAGE_SIZE) -> Iterator[dict[str, Any]]:
    """Every KNOWS relationship with its evidence, paged by the lower person's pid."""
    return _knows_pages(store, _KNOWS_PAGE, page_size)


def knows_events(store: GraphStore, page_size: int = PAGE_SIZE) -> Iterator[dict[str, Any]]:
    """Every KNOWS relationship with its event log (see graph.writes), paged by the lower pid."""
    return _knows_pages(store, _KNOWS_EVENTS_PAGE, page_size)


def _knows_pages(store: GraphStore, query: Query, page_size: int) -> Iterator[dict[str, Any]]:
    """Run a KNOWS page query (`$after`, `$limit`: a page of lower people) until the people run out."""
    after = ""
    while True:
        rows = store.read(query, after=after, limit=page_size)
        if not rows:
            return
        yield from (row for row in rows if row["hi"] is not None)
        after = max(row["lo"] for row in rows)


def employment(store: GraphStore) -> list[dict[str, Any]]:
    """Every employment record: pid, cid, from, to (-1: current), level, function."""
    return store.read(_EMPLOYMENT)


def fingerprint(store: GraphStore) -> dict[str, Any]:
    """Counts and watermarks that change whenever the exported data changes."""
    row = store.read(_FINGERPRINT)[0]
    row["tenants"] = sorted(row["tenants"])
    return row


def knows_changed(store: GraphStore, since_ms: int) -> list[dict[str, Any]]:
    """KNOWS relationships created or changed after `since_ms` (their updated_at)."""
    return store.read(_KNOWS_CHANGED, since=since_ms)


def people_changed(store: GraphStore, since_ms: int) -> list[dict[str, Any]]:
    """People whose attributes or tenants' records changed after `since_ms` (pid, updated_at)."""
    return store.read(_PEOPLE_CHANGED, since=since_ms)


def people_watermark(store: GraphStore) -> int:
    """The latest `Person.updated_at`, 0 when none is set."""
    at = store.read(_PEOPLE_WATERMARK)[0]["at"]
    return int(at) if isinstance(at, int) else 0


def knows_of(store: GraphStore, pids: list[str]) -> list[dict[str, Any]]:
    """Every KNOWS relationship touching one of `pids`, with its evidence."""
    return store.read(_KNOWS_OF, pids=pids)


def erasures_since(store: GraphStore, since_ms: int) -> list[dict[str, Any]]:
    """Erasure tombstones (pid, at in ms) written after `since_ms` (graph.operations.erase_person)."""
    return store.read(_ERASURES_SINCE, since=since_ms)


def companies(store: GraphStore) -> list[dict[str, Any]]:
    return store.read(_COMPANIES)


def company(store: GraphStore, cid: str, tenant: str) -> dict[str, Any] | None:
    """A company's industry and size band; None unless `tenant`'s own records name the company."""
    rows = store.read(_COMPANY, cid=cid, tenant=tenant)
    return rows[0] if rows else None


def tenants(store: GraphStore) -> list[dict[str, Any]]:
    return store.read(_TENANTS)


def economic_buyers(store: GraphStore) -> list[dict[str, Any]]:
    """People the tenants' own deals list as economic buyer, with the deal's account."""
    return store.read(_ECONOMIC_BUYERS)


def deals(store: GraphStore, tenants: list[str] | None = None, deal_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Deals (of `tenants`, optionally only `deal_ids`) with account, owner, contacts and logged
    interactions; empty placeholder rows of OPTIONAL MATCH are dropped."""
    rows = store.read(_DEALS, tenants=tenants, deal_ids=deal_ids)
    for row in rows:
        row["contacts"] = [c for c in row["contacts"] if c[0] is not None]
        row["interactions"] = [a for a in row["interactions"] if a[0] is not None and a[2] is not None]
    return rows


def jobs_of(store: GraphStore, pids: list[str]) -> list[dict[str, Any]]:
    """Employment records of `pids`: pid, cid, from, to (-1: current), level, function."""
    return store.read(_JOBS_OF, pids=pids)


def staff_of(store: GraphStore, cids: list[str]) -> list[dict[str, Any]]:
    """Everyone who works or worked at the companies `cids`: (cid, pid) rows."""
    return store.read(_STAFF_OF, cids=cids)


def signals_by(store: GraphStore, pids: list[str], tenants: list[str]) -> list[dict[str, Any]]:
    """Signals by `pids` that `tenants` ingested."""
    return store.read(_SIGNALS_BY, pids=pids, tenants=tenants)


def holders_of(store: GraphStore, pids: list[str]) -> list[dict[str, Any]]:
    """Per person of `pids`: the tenants whose records name them, and whether their identity is shared."""
    return store.read(_HOLDERS_OF, pids=pids)


def ties_to_members(store: GraphStore, pids: list[str], tenants: list[str]) -> list[dict[str, Any]]:
    """KNOWS event logs between `pids` and members of `tenants`, as each tenant observed them."""
    return store.read(_TIES_TO_MEMBERS, pids=pids, tenants=tenants)
