"""An in-memory graph built from ingest records, with the GraphReader contract (graph/reader.py): the
same records give the same reads as relgraph's writes into Neo4j and the Neo4j reader (a contract
test holds the two equal). Unit tests of everything above the store run on it; integration tests
use Neo4j only.

It applies records as graph/writes.py does: merges on natural keys (the last record of a key in a
batch stands), an activity id names one event (its first record stands), each interaction adds
events to its pair's KNOWS log, `updated_at` marks what a snapshot refresh must re-read; and
erasure as graph/operations.py does, with tombstones."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.vocabulary import KINDS
from graph.deal_bundle import Deal, DealBundle, Job, Signal, deal_from_row
from graph.events import TWO_WAY_CODES, decode_events
from graph.interaction_log import ExportScope, InteractionLog, build_interaction_log
from graph.pseudonymize import Pseudonymizer
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
from graph.records import parse_record
from graph.writes import ACTIVITY_KEY, NATURAL_KEYS, first_per_key, knows_updates, last_per_key

NETWORK = "*"  # graph.operations.NETWORK: an operator's erasure of everything


@dataclass
class _Activity:
    kind: str  # "interaction" or "signal"
    type: str
    ts: int
    by: str
    with_: dict[str, int] = field(default_factory=dict)  # recipient -> when added (as WITH.updated_at)
    deals: dict[str, int] = field(default_factory=dict)  # deal -> when logged on it (as ON.updated_at)
    topic: str = ""
    value: str = ""


@dataclass
class _Knows:
    events: set[int] = field(default_factory=set)
    updated_at: int = 0

    def evidence(self) -> tuple[int, int, int, int]:
        """(count, fwd, rev, last_ts) as the KNOWS writer maintains them."""
        codes = np.array(sorted(self.events), dtype=np.int64)
        _, kind, direction = decode_events(codes)
        both = np.isin(kind, TWO_WAY_CODES)
        fwd = int(np.sum((direction == 0) | both))
        rev = int(np.sum((direction == 1) | both))
        return len(self.events), fwd, rev, int((codes >> 3).max())

    def times(self) -> np.ndarray:
        """The events' times, sorted: a tie as `ties_to_members` gives it."""
        return np.sort(np.array(sorted(self.events), dtype=np.int64) >> 3)


class InMemoryGraph:
    """A graph held in dicts, written with ingest records and read as a GraphReader."""

    def __init__(self, pseudo: Pseudonymizer) -> None:
        self._pseudo = pseudo
        self._clock = itertools.count(1)  # stands in for Neo4j's timestamp(): strictly increasing ms
        self.tenant_settings: dict[str, dict[str, bool]] = {}
        self.persons: dict[str, int] = {}  # pid -> updated_at (0: never marked)
        self.company_attrs: dict[str, dict[str, str]] = {}
        self.members: dict[tuple[str, str], dict[str, str]] = {}  # (tenant, pid) -> role, team, level, function
        self.jobs: dict[tuple[str, str, str, int], dict[str, Any]] = {}  # (tenant, pid, cid, from) -> to, level, fn
        self.knows_logs: dict[tuple[str, str, str], _Knows] = {}  # (tenant, lo, hi)
        self.deal_records: dict[tuple[str, str], dict[str, Any]] = {}  # (tenant, deal id) -> attributes ({} for a stub)
        self.deal_updated: dict[tuple[str, str], int] = {}  # (tenant, deal id) -> updated_at, as Deal.updated_at
        self.contacts: dict[tuple[str, str, str], str] = {}  # (tenant, deal id, pid) -> role
        self.activities: dict[tuple[str, str], _Activity] = {}  # (tenant, id)
        self.erasure_log: list[Erasure] = []
        self.decisions: dict[tuple[str, str], ProposalDecision] = {}  # (tenant, proposal id) -> the latest
        self.keys: dict[str, ApiKeyRecord] = {}
        self._version = 0

    def _now(self) -> int:
        self._version += 1
        return next(self._clock)

    def _touch_deal(self, tenant: str, deal_id: str) -> None:
        self.deal_records.setdefault((tenant, deal_id), {})
        self.deal_updated[(tenant, deal_id)] = self._now()

    def _person(self, pid: str, *, touched: bool) -> None:
        if pid not in self.persons or touched:
            self.persons[pid] = self._now()

    # -- writes ---------------------------------------------------------------------------------

    def ingest(self, records: Iterable[dict[str, Any]]) -> None:
        """Validate and apply records of the public ingest format, as one strict batch: an invalid
        record raises RecordError and nothing is applied."""
        rows: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
        for record in records:
            kind, tenant, row = parse_record(record, self._pseudo)
            rows[kind].append({**row, "tenant": tenant})
        for tenant in sorted({r["tenant"] for batch in rows.values() for r in batch}):
            self.tenant_settings.setdefault(tenant, {"share_identities": False, "network_opt_out": False})
        for row in last_per_key(rows["member"], NATURAL_KEYS["member"]):
            self._person(row["pid"], touched=True)
            self.members[(row["tenant"], row["pid"])] = {
                "role": row["role"],
                "team": row["team"],
                "level": row["level"],
                "function": row["function"],
            }
        for row in last_per_key(rows["employment"], NATURAL_KEYS["employment"]):
            self._person(row["pid"], touched=True)
            attrs = self.company_attrs.setdefault(row["cid"], {"industry": "", "size_band": ""})
            for name in ("industry", "size_band"):
                attrs[name] = row[name] or attrs[name]
            self.jobs[(row["tenant"], row["pid"], row["cid"], row["from"])] = {
                "to": row["to"],
                "level": row["level"],
                "function": row["function"],
            }
        for row in last_per_key(rows["deal"], NATURAL_KEYS["deal"]):
            self._deal(row)
        for row in last_per_key(rows["deal_contact"], NATURAL_KEYS["deal_contact"]):
            self._touch_deal(row["tenant"], row["deal_id"])
            self._person(row["pid"], touched=True)
            self.contacts[(row["tenant"], row["deal_id"], row["pid"])] = row["role"]
        self._interactions(rows["interaction"])
        self._signals(rows["signal"])

    def _deal(self, row: dict[str, Any]) -> None:
        key = (row["tenant"], row["deal_id"])
        self.company_attrs.setdefault(row["cid"], {"industry": "", "size_band": ""})
        previous = self.deal_records.get(key, {}).get("owner")
        if previous is not None and previous != row["owner"]:
            self._person(previous, touched=True)  # the replaced owner loses a relationship
        self._person(row["owner"], touched=True)
        self.deal_records[key] = {
            k: row[k]
            for k in (
                "cid",
                "owner",
                "amount",
                "created",
                "product",
                "stage_names",
                "stage_ts",
                "closed",
                "outcome",
                "close_date",
            )
        }
        self._touch_deal(*key)

    def _interactions(self, rows: list[dict[str, Any]]) -> None:
        for pid in sorted({r["from"] for r in rows} | {t for r in rows for t in r["to"]}):
            self._person(pid, touched=False)
        for update in knows_updates(rows):
            log = self.knows_logs.setdefault((update["tenant"], update["lo"], update["hi"]), _Knows())
            new = set(update["events"]) - log.events
            if new:
                log.events |= new
                log.updated_at = self._now()
        for row in first_per_key([r for r in rows if r["deal"]], ACTIVITY_KEY):
            activity = self.activities.setdefault(
                (row["tenant"], row["id"]), _Activity("interaction", row["kind"], row["ts"], row["from"])
            )
            if activity.kind != "interaction" or activity.by != row["from"]:
                continue  # an id names one event: another sender adds nothing to it
            self.deal_records.setdefault((row["tenant"], row["deal"]), {})
            if row["deal"] not in activity.deals:
                activity.deals[row["deal"]] = self._now()
            for pid in row["to"]:
                if pid not in activity.with_:
                    activity.with_[pid] = self._now()
            for pid in (row["from"], *row["to"]):
                self._person(pid, touched=True)

    def _signals(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self._person(row["pid"], touched=False)
            if row["deal"]:
                self._touch_deal(row["tenant"], row["deal"])
        for row in first_per_key(rows, ACTIVITY_KEY):
            key = (row["tenant"], row["id"])
            if key in self.activities:
                continue
            self.activities[key] = _Activity(
                "signal",
                row["kind"],
                row["ts"],
                row["pid"],
                deals={row["deal"]: 0} if row["deal"] else {},
                topic=row["topic"],
                value=row["value"],
            )
            self._person(row["pid"], touched=True)

    def set_sharing(
        self, tenant: str, *, share_identities: bool | None = None, network_opt_out: bool | None = None
    ) -> None:
        settings = self.tenant_settings.setdefault(tenant, {"share_identities": False, "network_opt_out": False})
        for name, value in (("share_identities", share_identities), ("network_opt_out", network_opt_out)):
            if value is not None:
                settings[name] = value
        self._version += 1

    def add_api_key(self, record: ApiKeyRecord) -> None:
        self.tenant_settings.setdefault(record.tenant, {"share_identities": False, "network_opt_out": False})
        self.keys[record.key_id] = record

    def decide(self, tenant: str, proposal_id: str, deal_id: str, field: str, decision: str) -> None:
        """A rep's decision on a proposed CRM update, as graph.operations.record_proposal_decision."""
        self.decisions[(tenant, proposal_id)] = ProposalDecision(
            tenant, proposal_id, deal_id, field, decision, self._now()
        )

    def erase(self, pid: str, scope: str) -> bool:
        """Erase what `scope` (a tenant, or NETWORK) holds about `pid`; whether it held anything."""

        def mine(tenant: str) -> bool:
            return scope == NETWORK or tenant == scope

        if pid not in self.persons or not any(mine(t) for t in self._holders(pid)):
            return False
        for key in [k for k, a in self.activities.items() if mine(k[0]) and (a.by == pid or pid in a.with_)]:
            for other in {self.activities[key].by, *self.activities[key].with_} - {pid}:
                self._person(other, touched=True)
            del self.activities[key]
        for member in [k for k in self.members if mine(k[0]) and k[1] == pid]:
            del self.members[member]
        for pair in [k for k in self.knows_logs if mine(k[0]) and pid in k[1:]]:
            del self.knows_logs[pair]
        for job in [k for k in self.jobs if mine(k[0]) and k[1] == pid]:
            del self.jobs[job]
        for contact in [k for k in self.contacts if mine(k[0]) and k[2] == pid]:
            del self.contacts[contact]
        for key, deal in self.deal_records.items():
            if mine(key[0]) and deal.get("owner") == pid:
                deal["owner"] = None
        if not self._holders(pid):
            del self.persons[pid]
        self.erasure_log.append(Erasure(pid, self._now()))
        return True

    def _holders(self, pid: str) -> set[str]:
        """Tenants of every relationship touching the person (graph.operations' erasure scope test)."""
        held = {t for (t, p) in self.members if p == pid} | {k[0] for k in self.jobs if k[1] == pid}
        held |= {k[0] for k in self.knows_logs if pid in k[1:]} | {k[0] for k in self.contacts if k[2] == pid}
        held |= {k[0] for k, d in self.deal_records.items() if d.get("owner") == pid}
        held |= {k[0] for k, a in self.activities.items() if a.by == pid or pid in a.with_}
        return held

    # -- the GraphReader contract ------------------------------------------------------------------

    def people(self, scope: TenantScope) -> Iterator[PersonRow]:
        return iter(self.people_by_pid(sorted(self.persons), scope))

    def people_by_pid(self, pids: Sequence[str], scope: TenantScope) -> list[PersonRow]:
        return [self._person_row(pid, scope) for pid in pids if pid in self.persons]

    def _person_row(self, pid: str, scope: TenantScope) -> PersonRow:
        jobs = sorted(
            ((k, v) for k, v in self.jobs.items() if k[1] == pid), key=lambda kv: (kv[1]["to"] != -1, -kv[0][3])
        )
        current = next(((k[2], v["level"], v["function"]) for k, v in jobs if v["to"] == -1), None)
        non_knows = {k[0] for k in self.jobs if k[1] == pid} | {k[0] for k in self.contacts if k[2] == pid}
        non_knows |= {k[0] for k, d in self.deal_records.items() if d.get("owner") == pid}
        non_knows |= {k[0] for k, a in self.activities.items() if a.by == pid or pid in a.with_}
        return PersonRow(
            pid=pid,
            employers=tuple(sorted({k[2] for k, _ in jobs})),
            job=current,
            memberships=tuple(
                (t, m["team"], m["level"], m["function"])
                for (t, p), m in sorted(self.members.items())
                if p == pid and scope.allows(t)
            ),
            held_by=tuple(sorted(t for t in non_knows if scope.allows(t))),
        )

    def people_changed(self, since_ms: int, scope: TenantScope) -> list[PersonChange]:
        return [PersonChange(pid, at) for pid, at in sorted(self.persons.items()) if at > since_ms]

    def people_watermark(self, scope: TenantScope) -> int:
        return max(self.persons.values(), default=0)

    def _knows_rows(self, scope: TenantScope) -> list[KnowsRow]:
        rows = []
        for (tenant, lo, hi), log in sorted(self.knows_logs.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
            if scope.allows(tenant) and log.events:
                count, fwd, rev, last = log.evidence()
                rows.append(KnowsRow(lo, hi, tenant, count, min(fwd, rev), last, log.updated_at))
        return rows

    def knows(self, scope: TenantScope) -> Iterator[KnowsRow]:
        return iter(self._knows_rows(scope))

    def knows_changed(self, since_ms: int, scope: TenantScope) -> list[KnowsRow]:
        return [row for row in self._knows_rows(scope) if row.updated_at > since_ms]

    def knows_of(self, pids: Sequence[str], scope: TenantScope) -> list[KnowsRow]:
        wanted = set(pids)
        return [row for row in self._knows_rows(scope) if row.lo in wanted or row.hi in wanted]

    def erasures_since(self, since_ms: int, scope: TenantScope) -> list[Erasure]:
        return [e for e in self.erasure_log if e.at > since_ms]

    def proposal_decisions(self, since_ms: int, scope: TenantScope) -> list[ProposalDecision]:
        return sorted(
            (d for d in self.decisions.values() if d.updated_at > since_ms and scope.allows(d.tenant)),
            key=lambda d: d.updated_at,
        )

    def companies(self, scope: TenantScope) -> list[CompanyRow]:
        return [CompanyRow(cid, a["industry"], a["size_band"]) for cid, a in sorted(self.company_attrs.items())]

    def tenants(self, scope: TenantScope) -> list[TenantRow]:
        return [
            TenantRow(t, s["share_identities"], s["network_opt_out"])
            for t, s in sorted(self.tenant_settings.items())
            if scope.allows(t)
        ]

    def economic_buyers(self, scope: TenantScope) -> list[EconomicBuyer]:
        found = {
            EconomicBuyer(t, pid, self.deal_records[(t, d)]["cid"])
            for (t, d, pid), role in self.contacts.items()
            if role == "economic_buyer" and scope.allows(t) and self.deal_records.get((t, d), {}).get("cid")
        }
        return sorted(found)

    def named_companies(self, scope: TenantScope) -> list[tuple[str, str]]:
        accounts = {(t, d["cid"]) for (t, _), d in self.deal_records.items() if d.get("cid")}
        employers = {(k[0], k[2]) for k in self.jobs}
        return sorted((t, cid) for t, cid in accounts | employers if scope.allows(t))

    def deals(self, scope: TenantScope, deal_ids: Sequence[str] | None = None) -> list[Deal]:
        return [
            deal_from_row(self._deal_row(t, d))
            for (t, d), attrs in sorted(self.deal_records.items())
            if attrs.get("created") is not None and scope.allows(t) and (deal_ids is None or d in deal_ids)
        ]

    def deal_bundle(self, scope: TenantScope, deal_ids: Sequence[str] | None = None) -> DealBundle:
        return bundle_of(self, self.deals(scope, deal_ids))

    def deal_surroundings(self, pids: Sequence[str], cids: Sequence[str], scope: TenantScope) -> DealBundle:
        wanted = set(pids)
        staff = {cid: sorted({k[1] for k in self.jobs if k[2] == cid}) for cid in sorted(cids)}
        jobs: dict[str, list[Job]] = defaultdict(list)
        for (_, pid, cid, start), job in sorted(self.jobs.items()):
            if pid in wanted:
                jobs[pid].append(Job(cid, start, job["to"], job["level"], job["function"]))
        signals: dict[tuple[str, str], list[Signal]] = defaultdict(list)
        for (tenant, sid), a in sorted(self.activities.items()):
            if a.kind == "signal" and a.by in wanted and scope.allows(tenant):
                signals[(tenant, a.by)].append(Signal(sid, a.by, a.type, a.topic, a.value, a.ts))
        sharing = {t for t, s in self.tenant_settings.items() if s["share_identities"]}
        return DealBundle(
            deals=[],
            jobs=dict(jobs),
            staff={cid: people for cid, people in staff.items() if people},
            signals=dict(signals),
            ties={},
            held_by={pid: frozenset(self._holders(pid)) for pid in sorted(wanted) if pid in self.persons},
            shared=frozenset(pid for pid in wanted if any((t, pid) in self.members for t in sharing)),
        )

    def ties_to_members(self, pids: Sequence[str], scope: TenantScope) -> dict[tuple[str, str], list[Ties]]:
        wanted = set(pids)
        ties: dict[tuple[str, str], list[Ties]] = defaultdict(list)
        for (tenant, lo, hi), log in sorted(self.knows_logs.items()):
            for pid, member in ((lo, hi), (hi, lo)):
                if scope.allows(tenant) and pid in wanted and (tenant, member) in self.members:
                    ties[(tenant, pid)].append((member, log.times()))
        return dict(ties)

    def deals_changed(self, since_ms: int, scope: TenantScope) -> list[DealChange]:
        return [
            DealChange(t, d, at)
            for (t, d), at in sorted(self.deal_updated.items())
            if at > since_ms and scope.allows(t)
        ]

    def ties_between(self, pairs: Sequence[TiePair], scope: TenantScope) -> dict[tuple[str, str], list[Ties]]:
        ties: dict[tuple[str, str], list[Ties]] = defaultdict(list)
        for tenant, pid, other in sorted(set(pairs)):
            lo, hi = sorted((pid, other))
            log = self.knows_logs.get((tenant, lo, hi))
            if log is not None and pid != other and scope.allows(tenant) and (tenant, other) in self.members:
                ties[(tenant, pid)].append((other, log.times()))
        return dict(ties)

    def logged_watermark(self, scope: TenantScope) -> int:
        return max((row.updated_at for row in self.interactions_logged_since(0, ALL_TENANTS)), default=0)

    def interactions_logged_since(self, since_ms: int, scope: TenantScope) -> list[LoggedInteraction]:
        return [
            LoggedInteraction(
                t, deal, aid, a.ts, a.type, a.by, w, (t, a.by) in self.members, (t, w) in self.members, max(on, at)
            )
            for (t, aid), a in sorted(self.activities.items())
            if a.kind == "interaction" and scope.allows(t)
            for deal, on in sorted(a.deals.items())
            for w, at in sorted(a.with_.items())
            if max(on, at) > since_ms
        ]

    def _deal_row(self, tenant: str, deal_id: str) -> dict[str, Any]:
        deal = self.deal_records[(tenant, deal_id)]
        attrs = self.company_attrs.get(deal["cid"], {"industry": "", "size_band": ""})
        interactions = []
        for (t, aid), a in self.activities.items():
            if t == tenant and a.kind == "interaction" and deal_id in a.deals:
                recipients: list[str | None] = [*sorted(a.with_)] or [None]
                for w in recipients:
                    interactions.append(
                        [
                            a.ts,
                            a.type,
                            a.by,
                            w,
                            (tenant, a.by) in self.members,
                            w is not None and (tenant, w) in self.members,
                            aid,
                        ]
                    )
        return {
            "tenant": tenant,
            "deal_id": deal_id,
            "cid": deal["cid"],
            **attrs,
            "owner": deal["owner"],
            **{
                k: deal[k]
                for k in ("amount", "created", "product", "stage_names", "stage_ts", "closed", "outcome", "close_date")
            },
            "contacts": [[p, r] for (t, d, p), r in sorted(self.contacts.items()) if (t, d) == (tenant, deal_id)],
            "interactions": interactions,
        }

    def interaction_log(self, scope: ExportScope) -> InteractionLog:
        return build_interaction_log(
            self._knows_events(scope, lambda lo, hi: True),
            [(k[1], k[2], k[3], v["to"], v["level"], v["function"]) for k, v in self.jobs.items()],
            scope,
        )

    def pair_interactions(self, pairs: Sequence[tuple[str, str]], scope: ExportScope) -> InteractionLog:
        wanted = set(pairs)
        return build_interaction_log(self._knows_events(scope, lambda lo, hi: (lo, hi) in wanted), [], scope)

    def _knows_events(
        self, scope: ExportScope, pair_wanted: Callable[[str, str], bool]
    ) -> Iterator[tuple[str, str, str, list[int]]]:
        opted_out = (
            set() if scope.with_opted_out else {t for t, s in self.tenant_settings.items() if s["network_opt_out"]}
        )
        return (
            (lo, hi, tenant, sorted(log.events))
            for (tenant, lo, hi), log in sorted(self.knows_logs.items())
            if scope.tenants.allows(tenant) and tenant not in opted_out and log.events and pair_wanted(lo, hi)
        )

    def fingerprint(self) -> str:
        return f"memory-{id(self)}-{self._version}"

    def api_keys(self, scope: TenantScope) -> list[ApiKeyRecord]:
        return sorted(
            (k for k in self.keys.values() if scope.allows(k.tenant)), key=lambda k: (-k.created_at, k.key_id)
        )


__all__ = ["ALL_TENANTS", "NETWORK", "InMemoryGraph"]
