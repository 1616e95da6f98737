"""The write side of the store: one constant Cypher statement per step, applied in UNWIND batches
inside managed transactions. Every write is idempotent, so a retried or repeated batch changes
nothing: nodes and relationships are merged on natural keys, and each interaction is recorded on
the KNOWS relationship of its pair as an event code that is added only if it is not there yet.

Why interactions live on KNOWS: one Activity node per email (node + BY + WITH edges + three index
entries) measured about 10,000 events/s on the 2-core reference machine; the per-pair event log
keeps every event's time, kind and direction (all that the models and time-window exports need)
at a fraction of the cost. Interactions that belong to a deal, and signals, are still Activity
nodes, because the deal models look them up by deal and by person."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import neo4j

from graph.events import TWO_WAY_CODES, event_code
from graph.store import GraphStore, Query

# `Person.updated_at` (ms) marks a person whose attributes or tenants' records changed, so a
# snapshot refresh re-reads exactly those people (KNOWS changes carry their own `updated_at`);
# `Deal.updated_at` marks a deal whose record, contacts or signals changed, so the serving state
# re-reads exactly those deals; an interaction logged on a deal marks instead the relationships that
# make its rows (`ON` to the deal, `WITH` to each recipient), so only the new rows are read.
MEMBERS = Query(
    "ingest.members",
    """
UNWIND $rows AS r
MERGE (t:Tenant {tenant_id: r.tenant})
MERGE (p:Person {pid: r.pid})
SET p.updated_at = timestamp()
MERGE (p)-[m:MEMBER_OF {tenant_id: r.tenant}]->(t)
SET m.role = r.role, m.team = r.team, m.title_level = r.level, m.function = r.function
""",
)

EMPLOYMENT = Query(
    "ingest.employment",
    """
UNWIND $rows AS r
MERGE (p:Person {pid: r.pid})
SET p.updated_at = timestamp()
MERGE (c:Company {cid: r.cid})
SET c.industry = CASE WHEN r.industry <> '' THEN r.industry ELSE c.industry END,
    c.size_band = CASE WHEN r.size_band <> '' THEN r.size_band ELSE c.size_band END
MERGE (p)-[w:WORKED_AT {tenant_id: r.tenant, from: r.from}]->(c)
SET w.to = r.to, w.title_level = r.level, w.function = r.function
""",
)

DEALS = Query(
    "ingest.deals",
    """
UNWIND $rows AS r
MERGE (d:Deal {tenant_id: r.tenant, deal_id: r.deal_id})
SET d.amount = r.amount, d.created = r.created, d.product = r.product, d.stage_names = r.stage_names,
    d.stage_ts = r.stage_ts, d.crm_stage = r.crm_stage, d.closed = r.closed, d.outcome = r.outcome,
    d.close_date = r.close_date, d.updated_at = timestamp()
MERGE (c:Company {cid: r.cid})
MERGE (o:Person {pid: r.owner})
SET o.updated_at = timestamp()
WITH d, c, o, r
CALL (d, r) { MATCH (d)-[f:FOR]->(x:Company) WHERE x.cid <> r.cid DELETE f }
CALL (d, r) { MATCH (x:Person)-[w:OWNS]->(d) WHERE x.pid <> r.owner SET x.updated_at = timestamp() DELETE w }
MERGE (d)-[:FOR {tenant_id: r.tenant}]->(c)
MERGE (o)-[:OWNS {tenant_id: r.tenant}]->(d)
""",
)

DEAL_CONTACTS = Query(
    "ingest.deal_contacts",
    """
UNWIND $rows AS r
MERGE (d:Deal {tenant_id: r.tenant, deal_id: r.deal_id})
SET d.updated_at = timestamp()
MERGE (p:Person {pid: r.pid})
SET p.updated_at = timestamp()
MERGE (p)-[c:ON_DEAL {tenant_id: r.tenant}]->(d)
SET c.role = r.role
""",
)

TENANTS = Query("ingest.tenants", "UNWIND $tenants AS t MERGE (:Tenant {tenant_id: t})")
PERSONS = Query(
    "ingest.persons", "UNWIND $pids AS pid MERGE (p:Person {pid: pid}) ON CREATE SET p.updated_at = timestamp()"
)

# An event code packs one interaction between a pair: ts * 8 + kind * 2 + direction, where
# direction 0 is lo->hi and 1 is hi->lo (lo and hi: the pair's pids in sorted order). KNOWS is
# stored once per unordered pair and tenant, from lo to hi, with:
#   events   the event codes (the log; its codes are unique, which makes re-ingest a no-op)
#   count, fwd, rev, two_way = min(fwd, rev), first_ts, last_ts, updated_at (ms; for incremental refresh)
# Meetings and calls count in both directions.
KNOWS = Query(
    "ingest.knows",
    """
UNWIND $pairs AS k
MATCH (a:Person {pid: k.lo}), (b:Person {pid: k.hi})
MERGE (a)-[e:KNOWS {tenant_id: k.tenant}]->(b)
ON CREATE SET e.events = [], e.count = 0, e.fwd = 0, e.rev = 0
WITH e, k, [c IN k.events WHERE NOT c IN e.events] AS new
FOREACH (_ IN CASE WHEN size(new) > 0 THEN [1] ELSE [] END |
  SET e.events = e.events + new,
      e.count = e.count + size(new),
      e.fwd = e.fwd + size([c IN new WHERE c % 2 = 0 OR (c / 2) % 4 IN $two_way_kinds]),
      e.rev = e.rev + size([c IN new WHERE c % 2 = 1 OR (c / 2) % 4 IN $two_way_kinds]),
      e.first_ts = reduce(m = coalesce(e.first_ts, new[0] / 8), c IN new | CASE WHEN c / 8 < m THEN c / 8 ELSE m END),
      e.last_ts = reduce(m = coalesce(e.last_ts, new[0] / 8), c IN new | CASE WHEN c / 8 > m THEN c / 8 ELSE m END),
      e.updated_at = timestamp()
  SET e.two_way = CASE WHEN e.fwd < e.rev THEN e.fwd ELSE e.rev END)
RETURN sum(size(new)) AS added, sum(size(k.events) - size(new)) AS present
""",
)

# An id names one event: a record reusing it with another sender adds nothing to it.
DEAL_INTERACTIONS = Query(
    "ingest.deal_interactions",
    """
UNWIND $rows AS r
MERGE (a:Activity {tenant_id: r.tenant, activity_id: r.id})
ON CREATE SET a:Interaction, a.kind = r.kind, a.ts = r.ts
WITH a, r
MATCH (f:Person {pid: r.from})
WHERE NOT EXISTS { (a)-[:BY]->(:Person) } OR EXISTS { (a)-[:BY]->(f) }
MERGE (a)-[:BY {tenant_id: r.tenant}]->(f)
SET f.updated_at = timestamp()
MERGE (d:Deal {tenant_id: r.tenant, deal_id: r.deal})
MERGE (a)-[o:ON {tenant_id: r.tenant}]->(d)
ON CREATE SET o.updated_at = timestamp()
WITH a, r
UNWIND r.to AS t
MATCH (p:Person {pid: t})
MERGE (a)-[w:WITH {tenant_id: r.tenant}]->(p)
ON CREATE SET w.updated_at = timestamp()
SET p.updated_at = timestamp()
""",
)

DEAL_STUBS = Query("ingest.deal_stubs", "UNWIND $keys AS k MERGE (:Deal {tenant_id: k[0], deal_id: k[1]})")

# Persons and deals exist before this runs (PERSONS, DEAL_STUBS), so the only nodes it can create
# are new signals: nodes_created counts them. An id names one event: a second record with the same
# id is the same signal, so it gains no second author.
SIGNALS = Query(
    "ingest.signals",
    """
UNWIND $rows AS r
MATCH (p:Person {pid: r.pid})
MERGE (a:Activity {tenant_id: r.tenant, activity_id: r.id})
ON CREATE SET a:Signal, a.kind = r.kind, a.topic = r.topic, a.value = r.value, a.ts = r.ts
WITH a, p, r WHERE NOT EXISTS { (a)-[:BY]->(:Person) } OR EXISTS { (a)-[:BY]->(p) }
MERGE (a)-[:BY {tenant_id: r.tenant}]->(p)
SET p.updated_at = timestamp()
WITH a, r WHERE r.deal <> ''
MATCH (d:Deal {tenant_id: r.tenant, deal_id: r.deal})
SET d.updated_at = timestamp()
MERGE (a)-[:ON {tenant_id: r.tenant}]->(d)
""",
)


@dataclass
class WriteCounts:
    """What the writes changed, summed from Neo4j's own counters and the KNOWS event logs."""

    nodes_created: int = 0
    relationships_created: int = 0
    events_added: int = 0
    events_already_present: int = 0

    def add(self, counters: neo4j.SummaryCounters) -> None:
        self.nodes_created += counters.nodes_created
        self.relationships_created += counters.relationships_created


def first_per_key(rows: Sequence[dict[str, Any]], key: tuple[str, ...]) -> list[dict[str, Any]]:
    """The first record of each key in a batch (activities: an id names one event). Within one
    UNWIND Neo4j may plan later rows' writes before earlier rows' checks, so a batch is reduced first."""
    first: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        first.setdefault(tuple(row[k] for k in key), row)
    return list(first.values())


def last_per_key(rows: Sequence[dict[str, Any]], key: tuple[str, ...]) -> list[dict[str, Any]]:
    """The last record of each key in a batch (records merged on a natural key: the latest stands)."""
    return list({tuple(row[k] for k in key): row for row in rows}.values())


def knows_updates(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group a batch of interactions into one entry per (tenant, pair) with its sorted, distinct
    event codes; an interaction counts once per recipient."""
    pairs: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    for r in rows:
        sender = r["from"]
        for to in r["to"]:
            from_lo = sender < to
            lo, hi = (sender, to) if from_lo else (to, sender)
            pairs[(r["tenant"], lo, hi)].add(event_code(r["ts"], r["kind"], from_lo))
    return [{"tenant": t, "lo": lo, "hi": hi, "events": sorted(codes)} for (t, lo, hi), codes in pairs.items()]


def write_interactions(store: GraphStore, rows: Sequence[dict[str, Any]], counts: WriteCounts) -> None:
    """Record the batch's interactions on KNOWS, and those that belong to a deal as Activity nodes,
    in one transaction."""
    pids = sorted({r["from"] for r in rows} | {t for r in rows for t in r["to"]})
    on_deal = first_per_key([r for r in rows if r["deal"]], ACTIVITY_KEY)

    def work(tx: neo4j.ManagedTransaction) -> tuple[list[neo4j.SummaryCounters], int, int]:
        summaries = [tx.run(PERSONS.text, pids=pids).consume().counters]
        result = tx.run(KNOWS.text, pairs=knows_updates(rows), two_way_kinds=TWO_WAY_CODES)
        row = result.single(strict=True)
        summaries.append(result.consume().counters)
        if on_deal:
            summaries.append(tx.run(DEAL_INTERACTIONS.text, rows=on_deal).consume().counters)
        return summaries, int(row["added"] or 0), int(row["present"] or 0)

    summaries, added, present = store.write_tx(KNOWS.name, work)
    for summary in summaries:
        counts.add(summary)
    counts.events_added += added
    counts.events_already_present += present


def write_signals(store: GraphStore, rows: Sequence[dict[str, Any]], counts: WriteCounts) -> None:
    rows = first_per_key(rows, ACTIVITY_KEY)
    pids = sorted({r["pid"] for r in rows})
    deals = sorted({(r["tenant"], r["deal"]) for r in rows if r["deal"]})

    def work(tx: neo4j.ManagedTransaction) -> tuple[list[neo4j.SummaryCounters], int]:
        summaries = [
            tx.run(PERSONS.text, pids=pids).consume().counters,
            tx.run(DEAL_STUBS.text, keys=[list(k) for k in deals]).consume().counters,
        ]
        signals = tx.run(SIGNALS.text, rows=list(rows)).consume().counters
        return [*summaries, signals], signals.nodes_created

    summaries, created = store.write_tx(SIGNALS.name, work)
    for summary in summaries:
        counts.add(summary)
    counts.events_added += created
    counts.events_already_present += len(rows) - created


def write_tenants(store: GraphStore, tenants: Sequence[str], counts: WriteCounts) -> None:
    """Make sure each tenant exists as a Tenant node, whatever kinds of records it sends."""
    if tenants:
        counts.add(store.write(TENANTS, tenants=list(tenants)))


BatchWriter = Callable[[GraphStore, Sequence[dict[str, Any]], WriteCounts], None]


def _merge_writer(query: Query, key: tuple[str, ...]) -> BatchWriter:
    """A writer of records merged on the natural `key`. Records with the same key in one batch
    are reduced to the last one first: within one UNWIND, Neo4j may apply a row's deletions and
    merges out of order (eager planning), so two versions of one deal could both keep an owner."""

    def write(store: GraphStore, rows: Sequence[dict[str, Any]], counts: WriteCounts) -> None:
        counts.add(store.write(query, rows=last_per_key(rows, key)))

    return write


# The natural key of each merged record kind, and of activities (interactions on deals, signals).
NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    "member": ("tenant", "pid"),
    "employment": ("tenant", "pid", "cid", "from"),
    "deal": ("tenant", "deal_id"),
    "deal_contact": ("tenant", "deal_id", "pid"),
}
ACTIVITY_KEY = ("tenant", "id")

# The order in which kinds are written: entities before the events that reference them.
WRITERS: dict[str, BatchWriter] = {
    **{
        kind: _merge_writer(query, NATURAL_KEYS[kind])
        for kind, query in (
            ("member", MEMBERS),
            ("employment", EMPLOYMENT),
            ("deal", DEALS),
            ("deal_contact", DEAL_CONTACTS),
        )
    },
    "interaction": write_interactions,
    "signal": write_signals,
}
