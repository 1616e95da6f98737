"""Deals as the deal models see them. `load_deal_data` reads, in one bundle, everything relgraph
knows around a set of deals (the deal and its CRM history, listed contacts, interactions logged on
it, the people at its account, their jobs and signals, and their earlier ties to the tenant's
members); `deal_features` turns one deal at a time t into model inputs computed only from what had
happened before t. Training (offline) and serving (one deal, online) use the same two functions,
so a served answer is the offline prediction of the same model version."""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graph import exports
from graph.records import FUNCTIONS, TITLE_LEVELS
from graph.store import GraphStore
from graph.writes import decode_events

DAY = 86400
DEFAULT_STAGES = ("discovery", "evaluation", "proposal", "negotiation")
SIZE_BANDS = ("1-10", "11-50", "51-200", "201-1000", "1001-5000", "5001+")
INDUSTRY_BUCKETS = 12  # industries are hashed into buckets: any dataset's codes work without a vocabulary
_CHUNK = 5000
_SENIOR = TITLE_LEVELS.index("vp")
_GATEKEEPERS = (FUNCTIONS.index("legal"), FUNCTIONS.index("procurement"))

# Deal-level engagement features: what the gradient-boosted baseline sees too.
TABULAR_FEATURES = (
    "log_age_days", "log_amount", "amount_known", "has_interactions", "log_interactions", "log_interactions_14d",
    "log_interactions_30d", "log_days_since_last", "inbound_share", "reply_rate", "log_reply_latency_days",
    "meeting_share", "log_meetings", "log_people_engaged", "log_people_engaged_30d", "max_seniority_engaged",
    "senior_engaged", "log_days_since_senior", "log_days_since_multithread", "gatekeeper_engaged",
    "log_days_since_gatekeeper", "log_days_since_newest_person", "log_contacts_listed", "economic_buyer_engaged",
    "pricing_visits_30d", "contract_polls_90d", "account_signals_30d", "log_sellers_engaged",
    "log_days_since_second_seller", "meeting_share_14d",
)
_ROLE_SLOTS = ("champion", "economic_buyer", "other_contact", "not_listed")
# Per buyer-side person (the GNN's person nodes): who they are, how they engaged, and whether the
# tenant's people knew them before the deal (a warm introduction).
PERSON_FEATURES = (
    *(f"level_{x}" for x in TITLE_LEVELS), *(f"function_{x}" for x in FUNCTIONS), *(f"role_{x}" for x in _ROLE_SLOTS),
    "at_account", "log_interactions", "inbound_share", "log_days_since_first", "log_days_since_last",
    "log_prior_tie_events", "prior_tie_two_way", "prior_tie_with_owner",
)
COMPANY_FEATURES = (*(f"size_{b}" for b in SIZE_BANDS), "size_unknown",
                    *(f"industry_bucket_{i}" for i in range(INDUSTRY_BUCKETS)), "log_people_known")


def feature_schema(stages: tuple[str, ...]) -> dict[str, list[str]]:
    return {"tabular": list(TABULAR_FEATURES), "person": list(PERSON_FEATURES), "company": list(COMPANY_FEATURES),
            "stages": list(stages)}


def schema_hash(stages: tuple[str, ...]) -> str:
    return hashlib.sha256(json.dumps(feature_schema(stages), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Job:
    cid: str
    start: int
    end: int  # -1: current
    level: str
    function: str


@dataclass(frozen=True)
class Signal:
    id: str
    pid: str
    kind: str
    topic: str
    value: str
    ts: int


@dataclass
class Deal:
    tenant: str
    deal_id: str
    cid: str
    industry: str
    size_band: str
    owner: str
    amount: float
    created: int
    product: str
    stage_names: list[str]
    stage_ts: list[int]
    closed: int  # -1 while open
    outcome: str  # open, won or lost
    contacts: dict[str, str]  # pid -> role
    # Interactions logged on the deal, in time order.
    ts: np.ndarray = field(repr=False)
    kind: np.ndarray = field(repr=False)  # "email", "meeting", ...
    buyer: np.ndarray = field(repr=False)  # the buyer-side person of each interaction
    seller: np.ndarray = field(repr=False)  # the tenant's member in it
    inbound: np.ndarray = field(repr=False)  # True: from the buyer side to the seller side

    def crm_stage_at(self, t: int) -> str:
        """The stage the CRM showed at t ('' before its first stage change)."""
        i = int(np.searchsorted(np.asarray(self.stage_ts, dtype=np.int64), t, side="right")) - 1
        return self.stage_names[i] if i >= 0 else ""

    def end(self, as_of: int) -> int:
        """When the deal stops being open: its close, or `as_of` for an open deal."""
        return min(self.closed, as_of) if self.closed >= 0 else as_of


@dataclass
class DealData:
    """Deals and what surrounds them; keys are pids, tenants and company ids (all pseudonymous)."""

    deals: list[Deal]
    jobs: dict[str, list[Job]]
    staff: dict[str, list[str]]  # company -> people who work or worked there
    signals: dict[tuple[str, str], list[Signal]]  # (tenant, pid) -> signals that tenant ingested
    ties: dict[tuple[str, str], list[tuple[str, np.ndarray]]]  # (tenant, pid) -> [(member, event times)]
    # Per person around the deals: the tenants whose records name them, and the people whose tenant
    # shares identities (what the server's visibility rule needs; server/visibility.py).
    held_by: dict[str, frozenset[str]] = field(default_factory=dict)
    shared: frozenset[str] = frozenset()

    def job_at(self, pid: str, t: int) -> Job | None:
        """The job held at t (the latest started, if several)."""
        held = [j for j in self.jobs.get(pid, ()) if j.start <= t and (j.end < 0 or j.end > t)]
        return max(held, key=lambda j: j.start) if held else None

    def deal(self, tenant: str, deal_id: str) -> Deal | None:
        return next((d for d in self.deals if d.tenant == tenant and d.deal_id == deal_id), None)


def observed_until(data: DealData) -> int:
    """The time the deal data was observed: one second after its latest event."""
    latest = [max([d.created, d.closed, *d.stage_ts, *d.ts.tolist()]) for d in data.deals]
    return max(latest, default=0) + 1


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i:i + _CHUNK]


def load_deal_data(store: GraphStore, tenants: list[str] | None = None, deal_ids: list[str] | None = None) -> DealData:
    """Read the deals of `tenants` (all when None; only `deal_ids` when given) and their surroundings."""
    deals = [_deal(row) for row in exports.deals(store, tenants, deal_ids)]
    deal_tenants = sorted({d.tenant for d in deals})
    cids = sorted({d.cid for d in deals if d.cid})
    staff: dict[str, list[str]] = defaultdict(list)
    for chunk in _chunks(cids):
        for row in exports.staff_of(store, chunk):
            staff[row["cid"]].append(row["pid"])
    buyer_side = sorted({p for d in deals for p in (*d.contacts, *d.buyer.tolist())})
    around = sorted(set(buyer_side) | {p for c in cids for p in staff[c]})
    jobs: dict[str, list[Job]] = defaultdict(list)
    signals: dict[tuple[str, str], list[Signal]] = defaultdict(list)
    ties: dict[tuple[str, str], list[tuple[str, np.ndarray]]] = defaultdict(list)
    for chunk in _chunks(sorted(set(around) | {d.owner for d in deals if d.owner})):
        for row in exports.jobs_of(store, chunk):
            jobs[row["pid"]].append(Job(row["cid"], int(row["from"]), int(row["to"]), row["level"], row["function"]))
    for chunk in _chunks(around):
        for row in exports.signals_by(store, chunk, deal_tenants):
            signals[(row["tenant"], row["pid"])].append(
                Signal(row["id"], row["pid"], row["kind"], row["topic"], row["value"], int(row["ts"])))
    for chunk in _chunks(buyer_side):
        for row in exports.ties_to_members(store, chunk, deal_tenants):
            times, _, _ = decode_events(np.asarray(row["events"], dtype=np.int64))
            ties[(row["tenant"], row["pid"])].append((row["member"], np.sort(times)))
    held_by: dict[str, frozenset[str]] = {}
    shared: set[str] = set()
    for chunk in _chunks(around):
        for row in exports.holders_of(store, chunk):
            held_by[row["pid"]] = frozenset(t for t in row["held_by"] if t is not None)
            if row["shared"]:
                shared.add(row["pid"])
    return DealData(deals=deals, jobs=dict(jobs), staff=dict(staff), signals=dict(signals), ties=dict(ties),
                    held_by=held_by, shared=frozenset(shared))


def _amount(value: Any) -> float:
    """A stored amount as a usable number: one written before amounts were range-checked (infinite,
    not a number, negative) counts as unknown rather than poisoning the estimate."""
    amount = float(value) if isinstance(value, (int, float)) else 0.0
    return amount if np.isfinite(amount) and amount >= 0 else 0.0


def _deal(row: dict[str, Any]) -> Deal:
    rows = sorted(row["interactions"], key=lambda a: (a[0], a[2], a[3] or ""))
    # Each logged interaction is between a member of the tenant and someone on the buyer side.
    kept = [a for a in rows if a[3] is not None and bool(a[4]) != bool(a[5])]
    return Deal(
        tenant=str(row["tenant"]), deal_id=str(row["deal_id"]), cid=str(row["cid"] or ""), industry=str(row["industry"]),
        size_band=str(row["size_band"]), owner=str(row["owner"] or ""), amount=_amount(row["amount"]),
        created=int(row["created"]), product=str(row["product"]),
        stage_names=list(row["stage_names"]), stage_ts=[int(x) for x in row["stage_ts"]],
        closed=int(row["closed"]), outcome=str(row["outcome"]),
        contacts={str(p): str(r) for p, r in row["contacts"]},
        ts=np.array([int(a[0]) for a in kept], dtype=np.int64),
        kind=np.array([str(a[1]) for a in kept], dtype=object),
        buyer=np.array([str(a[3] if a[4] else a[2]) for a in kept], dtype=object),
        seller=np.array([str(a[2] if a[4] else a[3]) for a in kept], dtype=object),
        inbound=np.array([not a[4] for a in kept], dtype=bool))


@dataclass(frozen=True)
class DealFeatures:
    tabular: np.ndarray  # float32 [len(TABULAR_FEATURES)]
    persons: np.ndarray  # float32 [people, len(PERSON_FEATURES)]
    person_pids: list[str]
    company: np.ndarray  # float32 [len(COMPANY_FEATURES)]


def _log_days(seconds: float) -> float:
    return float(np.log1p(max(seconds, 0.0) / DAY))


def deal_features(data: DealData, deal: Deal, t: int) -> DealFeatures:
    """The deal's inputs at time t, from events strictly before t."""
    seen = deal.ts < t
    ts, kind, buyer, inbound = deal.ts[seen], deal.kind[seen], deal.buyer[seen], deal.inbound[seen]
    sellers: dict[str, int] = {}
    for when, who in zip(ts.tolist(), deal.seller[seen].tolist()):
        sellers.setdefault(who, when)
    recent = ts >= t - 14 * DAY
    age = t - deal.created
    n = ts.size
    first_by_person: dict[str, int] = {}
    for when, who in zip(ts.tolist(), buyer.tolist()):
        first_by_person.setdefault(who, when)
    levels = {p: _level_index(data.job_at(p, t)) for p in first_by_person}
    functions = {p: _function_index(data.job_at(p, t)) for p in first_by_person}
    senior_times = [w for p, w in first_by_person.items() if levels[p] >= _SENIOR]
    gatekeeper_times = [w for p, w in first_by_person.items() if functions[p] in _GATEKEEPERS]
    firsts = sorted(first_by_person.values())
    meetings = int(np.sum(kind == "meeting"))
    outbound_emails = ts[(kind == "email") & ~inbound]
    replies, latencies = _replies(ts, kind, buyer, inbound)
    account_signals = _account_signals(data, deal, t)
    eb = {p for p, r in deal.contacts.items() if r == "economic_buyer"}

    def since(times: list[int]) -> float:
        return _log_days(t - min(times)) if times else 0.0

    tabular = [
        _log_days(age), float(np.log1p(deal.amount)), float(deal.amount > 0), float(n > 0), float(np.log1p(n)),
        float(np.log1p(np.sum(ts >= t - 14 * DAY))), float(np.log1p(np.sum(ts >= t - 30 * DAY))),
        _log_days(t - int(ts[-1])) if n else _log_days(age), float(inbound.mean()) if n else 0.0,
        replies / outbound_emails.size if outbound_emails.size else 0.0,
        float(np.log1p(np.median(latencies) / DAY)) if latencies else 0.0,
        meetings / n if n else 0.0, float(np.log1p(meetings)), float(np.log1p(len(first_by_person))),
        float(np.log1p(len(set(buyer[ts >= t - 30 * DAY].tolist())))),
        (max(levels.values()) + 1) / len(TITLE_LEVELS) if levels else 0.0,
        float(bool(senior_times)), since(senior_times), _log_days(t - firsts[1]) if len(firsts) > 1 else 0.0,
        float(bool(gatekeeper_times)), since(gatekeeper_times), _log_days(t - firsts[-1]) if firsts else 0.0,
        float(np.log1p(len(deal.contacts))), float(bool(eb & set(first_by_person))),
        float(sum(1 for s in account_signals if s.kind == "page_visit" and s.topic == "pricing" and s.ts >= t - 30 * DAY)),
        float(sum(1 for s in account_signals if s.topic == "contract_expiry" and s.ts >= t - 90 * DAY)),
        float(np.log1p(sum(1 for s in account_signals if s.ts >= t - 30 * DAY))),
        float(np.log1p(len(sellers))), _log_days(t - sorted(sellers.values())[1]) if len(sellers) > 1 else 0.0,
        float(np.mean(kind[recent] == "meeting")) if recent.any() else 0.0,
    ]
    pids = sorted(set(deal.contacts) | set(first_by_person))
    persons = np.array([_person_row(data, deal, p, t, ts, buyer, inbound) for p in pids],
                       dtype=np.float32).reshape(len(pids), len(PERSON_FEATURES))
    return DealFeatures(tabular=np.asarray(tabular, dtype=np.float32), persons=persons, person_pids=pids,
                        company=_company_row(data, deal))


def _level_index(job: Job | None) -> int:
    return TITLE_LEVELS.index(job.level) if job and job.level in TITLE_LEVELS else -1


def _function_index(job: Job | None) -> int:
    return FUNCTIONS.index(job.function) if job and job.function in FUNCTIONS else -1


def _replies(ts: np.ndarray, kind: np.ndarray, buyer: np.ndarray, inbound: np.ndarray) -> tuple[int, list[int]]:
    """Outbound emails answered by their recipient within 7 days, and the answers' delays."""
    answered, delays = 0, []
    emails = kind == "email"
    for i in np.flatnonzero(emails & ~inbound):
        later = np.flatnonzero(emails & inbound & (buyer == buyer[i]) & (ts > ts[i]) & (ts <= ts[i] + 7 * DAY))
        if later.size:
            answered += 1
            delays.append(int(ts[later[0]] - ts[i]))
    return answered, delays


def _account_signals(data: DealData, deal: Deal, t: int) -> list[Signal]:
    """Signals before t that the deal's tenant ingested from people at its account or on the deal."""
    people = set(data.staff.get(deal.cid, ())) | set(deal.contacts)
    return [s for p in people for s in data.signals.get((deal.tenant, p), ()) if s.ts < t]


def _person_row(data: DealData, deal: Deal, pid: str, t: int, ts: np.ndarray, buyer: np.ndarray,
                inbound: np.ndarray) -> list[float]:
    job = data.job_at(pid, t)
    level, function = _level_index(job), _function_index(job)
    role = deal.contacts.get(pid)
    slot = _ROLE_SLOTS.index(role) if role in ("champion", "economic_buyer") else (2 if role else 3)
    mine = buyer == pid
    count = int(mine.sum())
    ties = data.ties.get((deal.tenant, pid), [])
    prior = [(member, times[times < deal.created]) for member, times in ties]
    prior_events = sum(int(times.size) for _, times in prior)
    two_way = any(times.size >= 2 for _, times in prior)
    return [*(float(level == i) for i in range(len(TITLE_LEVELS))),
            *(float(function == i) for i in range(len(FUNCTIONS))),
            *(float(slot == i) for i in range(len(_ROLE_SLOTS))),
            float(job is not None and job.cid == deal.cid), float(np.log1p(count)),
            float(inbound[mine].mean()) if count else 0.0,
            _log_days(t - int(ts[mine][0])) if count else 0.0, _log_days(t - int(ts[mine][-1])) if count else 0.0,
            float(np.log1p(prior_events)), float(two_way),
            float(any(member == deal.owner and times.size for member, times in prior))]


def _company_row(data: DealData, deal: Deal) -> np.ndarray:
    band = SIZE_BANDS.index(deal.size_band) if deal.size_band in SIZE_BANDS else -1
    bucket = zlib.crc32(deal.industry.encode()) % INDUSTRY_BUCKETS if deal.industry else -1
    return np.array([*(float(band == i) for i in range(len(SIZE_BANDS))), float(band < 0),
                     *(float(bucket == i) for i in range(INDUSTRY_BUCKETS)),
                     float(np.log1p(len(data.staff.get(deal.cid, ()))))], dtype=np.float32)


def trusted_history(deal: Deal, stages: tuple[str, ...]) -> bool:
    """A CRM stage history to learn stages from: a won deal whose record names every stage, in order.
    Lagging records stop early and wrong ones skip or jump, so neither passes."""
    return deal.outcome == "won" and tuple(deal.stage_names) == stages


def stage_label(deal: Deal, t: int, stages: tuple[str, ...]) -> int:
    """The stage index at t from a trusted history; -1 when the history is not trusted."""
    if not trusted_history(deal, stages):
        return -1
    return max(0, int(np.searchsorted(np.asarray(deal.stage_ts), t, side="right")) - 1)


def snapshot_times(deal: Deal, as_of: int, every_days: int = 14, first_days: int = 7) -> list[int]:
    """Times at which an open stretch of the deal is looked at: a week in, then every two weeks."""
    end = deal.end(as_of)
    return list(range(deal.created + first_days * DAY, end, every_days * DAY))
