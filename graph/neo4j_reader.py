"""The GraphReader over Neo4j (graph/reader.py): every read serving, training and evaluation make
of the graph, as named constant queries with parameters, streamed in pid-ordered pages where a
result can be large."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from graph.deal_bundle import Deal, DealBundle, Job, Signal, deal_from_row
from graph.events import decode_events
from graph.interaction_log import ExportScope, InteractionLog, build_interaction_log
from graph.reader import (
    ALL_TENANTS,
    ApiKeyRecord,
    CompanyRow,
    DealChange,
    EconomicBuyer,
    Erasure,
    KnowsRow,
    LoggedInteraction,
    PersonChange,
    PersonRow,
    ProposalDecision,
    TenantRow,
    TenantScope,
    TiePair,
    Ties,
    bundle_of,
)
from graph.store import GraphStore, Query

PAGE_SIZE = 20_000
_BUNDLE_CHUNK = 5000
_T = TypeVar("_T")

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

_PEOPLE_PAGE = Query(
    "read.people_page",
    """
MATCH (p:Person) WHERE p.pid > $after
WITH p ORDER BY p.pid LIMIT $limit
"""
    + _PERSON_FIELDS,
)

_PEOPLE_BY_PID = Query(
    "read.people_by_pid",
    """
UNWIND $pids AS pid
MATCH (p:Person {pid: pid})
"""
    + _PERSON_FIELDS,
)

_KNOWS_PAGE = Query(
    "read.knows_page",
    """
MATCH (a:Person) WHERE a.pid > $after
WITH a ORDER BY a.pid LIMIT $limit
OPTIONAL MATCH (a)-[k:KNOWS]->(b:Person) WHERE $tenants IS NULL OR k.tenant_id IN $tenants
"""
    + _KNOWS_FIELDS,
)

_KNOWS_CHANGED = Query(
    "read.knows_changed",
    """
MATCH (a:Person)-[k:KNOWS]->(b:Person) WHERE k.updated_at > $since AND ($tenants IS NULL OR k.tenant_id IN $tenants)
"""
    + _KNOWS_FIELDS,
)

_PEOPLE_CHANGED = Query(
    "read.people_changed",
    """
MATCH (p:Person) WHERE p.updated_at > $since
RETURN p.pid AS pid, p.updated_at AS updated_at
""",
)

_DEALS_CHANGED = Query(
    "read.deals_changed",
    """
MATCH (d:Deal) WHERE d.updated_at > $since AND ($tenants IS NULL OR d.tenant_id IN $tenants)
RETURN d.tenant_id AS tenant, d.deal_id AS deal_id, d.updated_at AS updated_at
""",
)

_DECISIONS_SINCE = Query(
    "read.proposal_decisions",
    """
MATCH (d:ProposalDecision) WHERE d.updated_at > $since AND ($tenants IS NULL OR d.tenant IN $tenants)
RETURN d.tenant AS tenant, d.proposal_id AS proposal_id, coalesce(d.deal_id, '') AS deal_id, d.field AS field,
       d.decision AS decision, d.updated_at AS updated_at
ORDER BY d.updated_at, d.key
""",
)

_PEOPLE_WATERMARK = Query("read.people_watermark", "MATCH (p:Person) RETURN max(p.updated_at) AS at")

_KNOWS_OF = Query(
    "read.knows_of",
    """
UNWIND $pids AS pid
MATCH (:Person {pid: pid})-[k:KNOWS]-(:Person) WHERE $tenants IS NULL OR k.tenant_id IN $tenants
WITH DISTINCT k
MATCH (a:Person)-[k]->(b:Person)
"""
    + _KNOWS_FIELDS,
)

_ERASURES_SINCE = Query(
    "read.erasures_since",
    """
MATCH (e:Erasure) WHERE e.at > $since
RETURN e.pid AS pid, e.at AS at ORDER BY at
""",
)

_KNOWS_EVENTS_PAGE = Query(
    "read.knows_events_page",
    """
MATCH (a:Person) WHERE a.pid > $after
WITH a ORDER BY a.pid LIMIT $limit
OPTIONAL MATCH (a)-[k:KNOWS]->(b:Person) WHERE $tenants IS NULL OR k.tenant_id IN $tenants
RETURN a.pid AS lo, b.pid AS hi, k.tenant_id AS tenant, k.events AS events
""",
)

_PAIR_EVENTS = Query(
    "read.pair_events",
    """
UNWIND $pairs AS pair
MATCH (a:Person {pid: pair[0]})-[k:KNOWS]->(b:Person {pid: pair[1]})
WHERE $tenants IS NULL OR k.tenant_id IN $tenants
RETURN a.pid AS lo, b.pid AS hi, k.tenant_id AS tenant, k.events AS events
""",
)

_EMPLOYMENT = Query(
    "read.employment",
    """
MATCH (p:Person)-[w:WORKED_AT]->(c:Company)
RETURN p.pid AS pid, c.cid AS cid, w.from AS from, w.to AS to,
       coalesce(w.title_level, '') AS level, coalesce(w.function, '') AS function
""",
)

# Changes whenever anything a training export reads changes (ingest, erasure, tenant settings).
_FINGERPRINT = Query(
    "read.fingerprint",
    """
CALL () { MATCH (p:Person) RETURN count(p) AS people }
CALL () { MATCH ()-[k:KNOWS]->() RETURN count(k) AS knows, max(k.updated_at) AS knows_updated }
CALL () { MATCH ()-[w:WORKED_AT]->() RETURN count(w) AS employment }
CALL () { MATCH (t:Tenant) RETURN collect([t.tenant_id, coalesce(t.network_opt_out, false)]) AS tenants }
RETURN people, knows, knows_updated, employment, tenants
""",
)

_COMPANIES = Query(
    "read.companies",
    """
MATCH (c:Company) RETURN c.cid AS cid, coalesce(c.industry, '') AS industry, coalesce(c.size_band, '') AS size_band
""",
)

# A company as one tenant's own records know it: an account of its deals or an employer in its records.
_NAMED_COMPANIES = Query(
    "read.named_companies",
    """
MATCH ()-[r:FOR|WORKED_AT]->(c:Company) WHERE $tenants IS NULL OR r.tenant_id IN $tenants
RETURN DISTINCT r.tenant_id AS tenant, c.cid AS cid
""",
)

_TENANTS = Query(
    "read.tenants",
    """
MATCH (t:Tenant)
RETURN t.tenant_id AS tenant, coalesce(t.share_identities, false) AS share_identities,
       coalesce(t.network_opt_out, false) AS network_opt_out
""",
)

_ECONOMIC_BUYERS = Query(
    "read.economic_buyers",
    """
MATCH (p:Person)-[r:ON_DEAL {role: 'economic_buyer'}]->(d:Deal)-[:FOR]->(c:Company)
WHERE $tenants IS NULL OR d.tenant_id IN $tenants
RETURN DISTINCT d.tenant_id AS tenant, p.pid AS pid, c.cid AS cid
""",
)


# A deal with its account, owner, listed contacts and the interactions logged on it; each
# interaction row is [ts, kind, from pid, with pid, from is a member of the deal's tenant, with is].
_DEALS = Query(
    "read.deals",
    """
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
                  EXISTS { (w)-[:MEMBER_OF {tenant_id: d.tenant_id}]->() }, a.activity_id]) AS interactions
}
RETURN d.tenant_id AS tenant, d.deal_id AS deal_id, c.cid AS cid, coalesce(c.industry, '') AS industry,
       coalesce(c.size_band, '') AS size_band, o.pid AS owner, coalesce(d.amount, 0.0) AS amount,
       d.created AS created, coalesce(d.product, '') AS product, coalesce(d.stage_names, []) AS stage_names,
       coalesce(d.stage_ts, []) AS stage_ts, coalesce(d.closed, -1) AS closed, coalesce(d.outcome, 'open') AS outcome,
       coalesce(d.close_date, -1) AS close_date,
       contacts, interactions
ORDER BY tenant, deal_id
""",
)

_JOBS_OF = Query(
    "read.jobs_of",
    """
UNWIND $pids AS pid
MATCH (p:Person {pid: pid})-[w:WORKED_AT]->(c:Company)
RETURN pid, c.cid AS cid, w.from AS from, w.to AS to, coalesce(w.title_level, '') AS level,
       coalesce(w.function, '') AS function
""",
)

_STAFF_OF = Query(
    "read.staff_of",
    """
UNWIND $cids AS cid
MATCH (:Company {cid: cid})<-[:WORKED_AT]-(p:Person)
RETURN DISTINCT cid, p.pid AS pid
""",
)

_SIGNALS_BY = Query(
    "read.signals_by",
    """
UNWIND $pids AS pid
MATCH (:Person {pid: pid})<-[:BY]-(s:Signal) WHERE s.tenant_id IN $tenants
RETURN pid, s.tenant_id AS tenant, s.activity_id AS id, s.kind AS kind, s.topic AS topic,
       coalesce(s.value, '') AS value, s.ts AS ts
""",
)

# Which tenants' records name each person (any relationship of theirs carries its tenant), and
# whether the person is a member of a tenant that shares identities: the visibility rule's inputs.
_HOLDERS_OF = Query(
    "read.holders_of",
    """
UNWIND $pids AS pid
MATCH (p:Person {pid: pid})
RETURN pid, COLLECT { MATCH (p)-[r]-() RETURN DISTINCT r.tenant_id } AS held_by,
       EXISTS { (p)-[:MEMBER_OF]->(t:Tenant) WHERE t.share_identities } AS shared
""",
)

# Each person's ties to members of a tenant, observed by that tenant: the KNOWS event logs.
_TIES_TO_MEMBERS = Query(
    "read.ties_to_members",
    """
UNWIND $pids AS pid
MATCH (p:Person {pid: pid})-[k:KNOWS]-(m:Person)-[:MEMBER_OF]->(t:Tenant)
WHERE k.tenant_id = t.tenant_id AND t.tenant_id IN $tenants AND m <> p
RETURN pid, m.pid AS member, t.tenant_id AS tenant, k.events AS events
""",
)

# The same ties, only between the given pairs: q = [tenant, pid, other].
_TIES_BETWEEN = Query(
    "read.ties_between",
    """
UNWIND $pairs AS q
MATCH (p:Person {pid: q[1]})-[k:KNOWS {tenant_id: q[0]}]-(m:Person {pid: q[2]})
WHERE q[0] IN $tenants AND m <> p AND EXISTS { (m)-[:MEMBER_OF {tenant_id: q[0]}]->(:Tenant) }
RETURN q[1] AS pid, m.pid AS member, q[0] AS tenant, k.events AS events
""",
)

# A row is new when its deal (ON) or its recipient (WITH) was added to the interaction after $since.
_INTERACTIONS_LOGGED_SINCE = Query(
    "read.interactions_logged_since",
    """
CALL () {
  MATCH (a:Interaction)-[o:ON]->(:Deal) WHERE o.updated_at > $since RETURN DISTINCT a
  UNION
  MATCH (a:Interaction)-[w:WITH]->(:Person) WHERE w.updated_at > $since RETURN DISTINCT a
}
MATCH (a)-[o:ON]->(d:Deal), (a)-[w:WITH]->(p:Person), (a)-[:BY]->(f:Person)
WHERE (o.updated_at > $since OR w.updated_at > $since) AND ($tenants IS NULL OR d.tenant_id IN $tenants)
RETURN d.tenant_id AS tenant, d.deal_id AS deal_id, a.activity_id AS activity_id, a.ts AS ts, a.kind AS kind,
       f.pid AS sender,
       p.pid AS recipient, EXISTS { (f)-[:MEMBER_OF {tenant_id: d.tenant_id}]->() } AS sender_is_member,
       EXISTS { (p)-[:MEMBER_OF {tenant_id: d.tenant_id}]->() } AS recipient_is_member,
       CASE WHEN coalesce(o.updated_at, 0) > coalesce(w.updated_at, 0) THEN o.updated_at ELSE w.updated_at END
         AS updated_at
""",
)

# Index-backed: the latest `updated_at` of each, read in the index's order.
_LOGGED_WATERMARK = Query(
    "read.logged_watermark",
    """
CALL () { MATCH ()-[o:ON]->() WHERE o.updated_at IS NOT NULL RETURN o.updated_at AS at ORDER BY at DESC LIMIT 1
  UNION
  MATCH ()-[w:WITH]->() WHERE w.updated_at IS NOT NULL RETURN w.updated_at AS at ORDER BY at DESC LIMIT 1 }
RETURN max(at) AS at
""",
)

_API_KEYS = Query(
    "read.api_keys",
    """
MATCH (k:ApiKey) WHERE $tenants IS NULL OR k.tenant_id IN $tenants
RETURN k.key_id AS key_id, k.tenant_id AS tenant, k.role AS role, k.scopes AS scopes, k.label AS label,
       k.hash AS hash, k.created_at AS created_at, k.revoked AS revoked
ORDER BY k.created_at DESC, k.key_id
""",
)


class Neo4jReader:
    """The GraphReader over Neo4j: named constant queries through the one query runner, streamed in
    pid-ordered pages where a result can be large."""

    def __init__(self, store: GraphStore, *, page_size: int = PAGE_SIZE, progress: bool = False) -> None:
        self._store = store
        self._page_size = page_size
        self._progress = progress  # a progress bar while an interaction log is read

    def __repr__(self) -> str:
        return f"Neo4jReader({self._store!r})"

    # -- the serving snapshot ----------------------------------------------------------------------

    def people(self, scope: TenantScope) -> Iterator[PersonRow]:
        after = ""
        while True:
            rows = self._store.read(_PEOPLE_PAGE, after=after, limit=self._page_size)
            if not rows:
                return
            yield from (_person(row, scope) for row in rows)
            after = rows[-1]["pid"]

    def people_by_pid(self, pids: Sequence[str], scope: TenantScope) -> list[PersonRow]:
        return [
            _person(row, scope)
            for chunk in _chunks(pids, self._page_size)
            for row in self._store.read(_PEOPLE_BY_PID, pids=chunk)
        ]

    def people_changed(self, since_ms: int, scope: TenantScope) -> list[PersonChange]:
        return [PersonChange(r["pid"], r["updated_at"]) for r in self._store.read(_PEOPLE_CHANGED, since=since_ms)]

    def people_watermark(self, scope: TenantScope) -> int:
        at = self._store.read(_PEOPLE_WATERMARK)[0]["at"]
        return int(at) if isinstance(at, int) else 0

    def knows(self, scope: TenantScope) -> Iterator[KnowsRow]:
        return (_knows(row) for row in self._pages(_KNOWS_PAGE, scope))

    def knows_changed(self, since_ms: int, scope: TenantScope) -> list[KnowsRow]:
        return [_knows(row) for row in self._store.read(_KNOWS_CHANGED, since=since_ms, tenants=scope.names())]

    def knows_of(self, pids: Sequence[str], scope: TenantScope) -> list[KnowsRow]:
        return [
            _knows(row)
            for chunk in _chunks(pids, self._page_size)
            for row in self._store.read(_KNOWS_OF, pids=chunk, tenants=scope.names())
        ]

    def erasures_since(self, since_ms: int, scope: TenantScope) -> list[Erasure]:
        return [Erasure(r["pid"], r["at"]) for r in self._store.read(_ERASURES_SINCE, since=since_ms)]

    def companies(self, scope: TenantScope) -> list[CompanyRow]:
        return [CompanyRow(r["cid"], r["industry"], r["size_band"]) for r in self._store.read(_COMPANIES)]

    def tenants(self, scope: TenantScope) -> list[TenantRow]:
        return [
            TenantRow(r["tenant"], bool(r["share_identities"]), bool(r["network_opt_out"]))
            for r in self._store.read(_TENANTS)
            if scope.allows(r["tenant"])
        ]

    def economic_buyers(self, scope: TenantScope) -> list[EconomicBuyer]:
        return [
            EconomicBuyer(r["tenant"], r["pid"], r["cid"])
            for r in self._store.read(_ECONOMIC_BUYERS, tenants=scope.names())
        ]

    # -- answers, training and keys ----------------------------------------------------------------

    def named_companies(self, scope: TenantScope) -> list[tuple[str, str]]:
        return sorted((r["tenant"], r["cid"]) for r in self._store.read(_NAMED_COMPANIES, tenants=scope.names()))

    def deals(self, scope: TenantScope, deal_ids: Sequence[str] | None = None) -> list[Deal]:
        rows = self._store.read(_DEALS, tenants=scope.names(), deal_ids=None if deal_ids is None else list(deal_ids))
        for row in rows:  # the empty placeholder rows of OPTIONAL MATCH
            row["contacts"] = [c for c in row["contacts"] if c[0] is not None]
            row["interactions"] = [a for a in row["interactions"] if a[0] is not None and a[2] is not None]
        return [deal_from_row(row) for row in rows]

    def deal_bundle(self, scope: TenantScope, deal_ids: Sequence[str] | None = None) -> DealBundle:
        return bundle_of(self, self.deals(scope, deal_ids))

    def deal_surroundings(self, pids: Sequence[str], cids: Sequence[str], scope: TenantScope) -> DealBundle:
        tenants = self._tenant_names(scope)
        staff: dict[str, list[str]] = defaultdict(list)
        for chunk in _chunks(sorted(cids), _BUNDLE_CHUNK):
            for row in self._store.read(_STAFF_OF, cids=chunk):
                staff[row["cid"]].append(row["pid"])
        jobs: dict[str, list[Job]] = defaultdict(list)
        signals: dict[tuple[str, str], list[Signal]] = defaultdict(list)
        held_by: dict[str, frozenset[str]] = {}
        shared: set[str] = set()
        for chunk in _chunks(sorted(pids), _BUNDLE_CHUNK):
            for row in self._store.read(_JOBS_OF, pids=chunk):
                jobs[row["pid"]].append(
                    Job(row["cid"], int(row["from"]), int(row["to"]), row["level"], row["function"])
                )
            for row in self._store.read(_SIGNALS_BY, pids=chunk, tenants=tenants):
                signals[(row["tenant"], row["pid"])].append(
                    Signal(row["id"], row["pid"], row["kind"], row["topic"], row["value"], int(row["ts"]))
                )
            for row in self._store.read(_HOLDERS_OF, pids=chunk):
                held_by[row["pid"]] = frozenset(t for t in row["held_by"] if t is not None)
                if row["shared"]:
                    shared.add(row["pid"])
        return DealBundle(
            deals=[],
            jobs=dict(jobs),
            staff=dict(staff),
            signals=dict(signals),
            ties={},
            held_by=held_by,
            shared=frozenset(shared),
        )

    def _tenant_names(self, scope: TenantScope) -> list[str]:
        """The scope's tenants by name (every tenant's for ALL_TENANTS), for queries that need a list."""
        names = scope.names()
        return [t.tenant for t in self.tenants(ALL_TENANTS)] if names is None else names

    def ties_to_members(self, pids: Sequence[str], scope: TenantScope) -> dict[tuple[str, str], list[Ties]]:
        ties: dict[tuple[str, str], list[Ties]] = defaultdict(list)
        tenants = self._tenant_names(scope)
        for chunk in _chunks(sorted(pids), _BUNDLE_CHUNK):
            for row in self._store.read(_TIES_TO_MEMBERS, pids=chunk, tenants=tenants):
                ties[(row["tenant"], row["pid"])].append((row["member"], _tie_times(row["events"])))
        return dict(ties)

    def ties_between(self, pairs: Sequence[TiePair], scope: TenantScope) -> dict[tuple[str, str], list[Ties]]:
        ties: dict[tuple[str, str], list[Ties]] = defaultdict(list)
        tenants = self._tenant_names(scope)
        for chunk in _chunks([list(p) for p in sorted(set(pairs))], _BUNDLE_CHUNK):
            for row in self._store.read(_TIES_BETWEEN, pairs=chunk, tenants=tenants):
                ties[(row["tenant"], row["pid"])].append((row["member"], _tie_times(row["events"])))
        return dict(ties)

    def deals_changed(self, since_ms: int, scope: TenantScope) -> list[DealChange]:
        rows = self._store.read(_DEALS_CHANGED, since=since_ms, tenants=scope.names())
        return [DealChange(r["tenant"], r["deal_id"], r["updated_at"]) for r in rows]

    def proposal_decisions(self, since_ms: int, scope: TenantScope) -> list[ProposalDecision]:
        return [
            ProposalDecision(**row) for row in self._store.read(_DECISIONS_SINCE, since=since_ms, tenants=scope.names())
        ]

    def logged_watermark(self, scope: TenantScope) -> int:
        rows = self._store.read(_LOGGED_WATERMARK)
        return int(rows[0]["at"] or 0) if rows else 0

    def interactions_logged_since(self, since_ms: int, scope: TenantScope) -> list[LoggedInteraction]:
        rows = self._store.read(_INTERACTIONS_LOGGED_SINCE, since=since_ms, tenants=scope.names())
        return [LoggedInteraction(**row) for row in rows]

    def interaction_log(self, scope: ExportScope) -> InteractionLog:
        opted_out = self._opted_out(scope)
        pages = (row for row in self._pages(_KNOWS_EVENTS_PAGE, scope.tenants) if row["tenant"] not in opted_out)
        rows = (
            (row["lo"], row["hi"], row["tenant"], row["events"])
            for row in tqdm(pages, desc="export interactions", unit=" pairs", disable=not self._progress)
        )
        return build_interaction_log(
            rows,
            [
                (r["pid"], r["cid"], r["from"], r["to"], r["level"], r["function"])
                for r in self._store.read(_EMPLOYMENT)
            ],
            scope,
        )

    def pair_interactions(self, pairs: Sequence[tuple[str, str]], scope: ExportScope) -> InteractionLog:
        opted_out = self._opted_out(scope)
        rows = (
            (row["lo"], row["hi"], row["tenant"], row["events"])
            for chunk in _chunks([list(pair) for pair in pairs], self._page_size)
            for row in self._store.read(_PAIR_EVENTS, pairs=chunk, tenants=scope.tenants.names())
            if row["tenant"] not in opted_out
        )
        return build_interaction_log(rows, [], scope)

    def _opted_out(self, scope: ExportScope) -> set[str]:
        """The tenants whose interactions the export leaves out."""
        return (
            set() if scope.with_opted_out else {row.tenant for row in self.tenants(ALL_TENANTS) if row.network_opt_out}
        )

    def fingerprint(self) -> str:
        row = self._store.read(_FINGERPRINT)[0]
        row["tenants"] = sorted(row["tenants"])
        return json.dumps(row, sort_keys=True, default=str)

    def api_keys(self, scope: TenantScope) -> list[ApiKeyRecord]:
        return [
            ApiKeyRecord(
                key_id=r["key_id"],
                tenant=r["tenant"],
                role=r["role"],
                scopes=tuple(r["scopes"] or ()),
                label=r["label"] or "",
                hash=r["hash"],
                created_at=int(r["created_at"]),
                revoked=bool(r["revoked"]),
            )
            for r in self._store.read(_API_KEYS, tenants=scope.names())
        ]

    def _pages(self, query: Query, scope: TenantScope) -> Iterator[dict[str, Any]]:
        """Run a KNOWS page query (`$after`, `$limit`: a page of lower people) until the people run out."""
        after = ""
        while True:
            rows = self._store.read(query, after=after, limit=self._page_size, tenants=scope.names())
            if not rows:
                return
            yield from (row for row in rows if row["hi"] is not None)
            after = max(row["lo"] for row in rows)


def _person(row: dict[str, Any], scope: TenantScope) -> PersonRow:
    job = row["job"]
    return PersonRow(
        pid=row["pid"],
        employers=tuple(sorted(row["employers"] or ())),
        job=(job[0], job[1] or "", job[2] or "") if job else None,
        memberships=tuple(
            sorted((m[0], m[1] or "", m[2] or "", m[3] or "") for m in row["memberships"] or () if scope.allows(m[0]))
        ),
        held_by=tuple(sorted(t for t in row["held_by"] or () if t is not None and scope.allows(t))),
    )


def _knows(row: dict[str, Any]) -> KnowsRow:
    return KnowsRow(
        row["lo"], row["hi"], row["tenant"], row["count"], row["two_way"], row["last_ts"], row["updated_at"]
    )


def _tie_times(events: list[int]) -> np.ndarray:
    times, _, _ = decode_events(np.asarray(events, dtype=np.int64))
    return np.sort(times)


def _chunks(items: Sequence[_T], size: int) -> Iterator[list[_T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
