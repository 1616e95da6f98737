"""Deals as the deal models see them: `deal_features` turns one deal of a `DealBundle` (a
GraphReader's read of deals and everything around them, graph/deal_bundle.py) at a time t into model
inputs computed only from what had happened before t; labels and snapshot times for training.
Training (offline) and serving (one deal, online) use the same function, so a served answer is the
offline prediction of the same model version."""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.vocabulary import FUNCTIONS, SIZE_BANDS, TITLE_LEVELS
from graph.deal_bundle import Deal, DealBundle, Job, Signal

DAY = 86400
DEFAULT_STAGES = ("discovery", "evaluation", "proposal", "negotiation")
INDUSTRY_BUCKETS = 12  # industries are hashed into buckets: any dataset's codes work without a vocabulary
_SENIOR = TITLE_LEVELS.index("vp")
_GATEKEEPERS = (FUNCTIONS.index("legal"), FUNCTIONS.index("procurement"))

# Deal-level engagement features: what the gradient-boosted baseline sees too.
TABULAR_FEATURES = (
    "log_age_days",
    "log_amount",
    "amount_known",
    "has_interactions",
    "log_interactions",
    "log_interactions_14d",
    "log_interactions_30d",
    "log_days_since_last",
    "inbound_share",
    "reply_rate",
    "log_reply_latency_days",
    "meeting_share",
    "log_meetings",
    "log_people_engaged",
    "log_people_engaged_30d",
    "max_seniority_engaged",
    "senior_engaged",
    "log_days_since_senior",
    "log_days_since_multithread",
    "gatekeeper_engaged",
    "log_days_since_gatekeeper",
    "log_days_since_newest_person",
    "log_contacts_listed",
    "economic_buyer_engaged",
    "pricing_visits_30d",
    "contract_polls_90d",
    "account_signals_30d",
    "log_sellers_engaged",
    "log_days_since_second_seller",
    "meeting_share_14d",
)
_ROLE_SLOTS = ("champion", "economic_buyer", "other_contact", "not_listed")
# Per buyer-side person (the GNN's person nodes): who they are, how they engaged, and whether the
# tenant's people knew them before the deal (a warm introduction).
PERSON_FEATURES = (
    *(f"level_{x}" for x in TITLE_LEVELS),
    *(f"function_{x}" for x in FUNCTIONS),
    *(f"role_{x}" for x in _ROLE_SLOTS),
    "at_account",
    "log_interactions",
    "inbound_share",
    "log_days_since_first",
    "log_days_since_last",
    "log_prior_tie_events",
    "prior_tie_two_way",
    "prior_tie_with_owner",
)
COMPANY_FEATURES = (
    *(f"size_{b}" for b in SIZE_BANDS),
    "size_unknown",
    *(f"industry_bucket_{i}" for i in range(INDUSTRY_BUCKETS)),
    "log_people_known",
)


def deal_feature_schema(stages: tuple[str, ...], heads: str | None = None) -> dict[str, Any]:
    """What a deal version computes from; `heads` names how its served heads are made (None: the
    graph model's alone, as versions trained before the blend), so code that cannot serve a
    version's heads refuses it rather than misreading its calibration."""
    schema: dict[str, Any] = {
        "tabular": list(TABULAR_FEATURES),
        "person": list(PERSON_FEATURES),
        "company": list(COMPANY_FEATURES),
        "stages": list(stages),
    }
    return schema if heads is None else {**schema, "heads": heads}


def deal_schema_hash(stages: tuple[str, ...], heads: str | None = None) -> str:
    return hashlib.sha256(json.dumps(deal_feature_schema(stages, heads), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DealFeatures:
    tabular: np.ndarray  # float32 [len(TABULAR_FEATURES)]
    persons: np.ndarray  # float32 [people, len(PERSON_FEATURES)]
    person_pids: list[str]
    company: np.ndarray  # float32 [len(COMPANY_FEATURES)]


def _log_days(seconds: float) -> float:
    return float(np.log1p(max(seconds, 0.0) / DAY))


def deal_features(data: DealBundle, deal: Deal, t: int) -> DealFeatures:
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
        _log_days(age),
        float(np.log1p(deal.amount)),
        float(deal.amount > 0),
        float(n > 0),
        float(np.log1p(n)),
        float(np.log1p(np.sum(ts >= t - 14 * DAY))),
        float(np.log1p(np.sum(ts >= t - 30 * DAY))),
        _log_days(t - int(ts[-1])) if n else _log_days(age),
        float(inbound.mean()) if n else 0.0,
        replies / outbound_emails.size if outbound_emails.size else 0.0,
        float(np.log1p(np.median(latencies) / DAY)) if latencies else 0.0,
        meetings / n if n else 0.0,
        float(np.log1p(meetings)),
        float(np.log1p(len(first_by_person))),
        float(np.log1p(len(set(buyer[ts >= t - 30 * DAY].tolist())))),
        (max(levels.values()) + 1) / len(TITLE_LEVELS) if levels else 0.0,
        float(bool(senior_times)),
        since(senior_times),
        _log_days(t - firsts[1]) if len(firsts) > 1 else 0.0,
        float(bool(gatekeeper_times)),
        since(gatekeeper_times),
        _log_days(t - firsts[-1]) if firsts else 0.0,
        float(np.log1p(len(deal.contacts))),
        float(bool(eb & set(first_by_person))),
        float(
            sum(1 for s in account_signals if s.kind == "page_visit" and s.topic == "pricing" and s.ts >= t - 30 * DAY)
        ),
        float(sum(1 for s in account_signals if s.topic == "contract_expiry" and s.ts >= t - 90 * DAY)),
        float(np.log1p(sum(1 for s in account_signals if s.ts >= t - 30 * DAY))),
        float(np.log1p(len(sellers))),
        _log_days(t - sorted(sellers.values())[1]) if len(sellers) > 1 else 0.0,
        float(np.mean(kind[recent] == "meeting")) if recent.any() else 0.0,
    ]
    pids = sorted(set(deal.contacts) | set(first_by_person))
    persons = np.array([_person_row(data, deal, p, t, ts, buyer, inbound) for p in pids], dtype=np.float32).reshape(
        len(pids), len(PERSON_FEATURES)
    )
    return DealFeatures(
        tabular=np.asarray(tabular, dtype=np.float32),
        persons=persons,
        person_pids=pids,
        company=_company_row(data, deal),
    )


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


def _account_signals(data: DealBundle, deal: Deal, t: int) -> list[Signal]:
    """Signals before t that the deal's tenant ingested from people at its account or on the deal."""
    people = set(data.staff.get(deal.cid, ())) | set(deal.contacts)
    return [s for p in people for s in data.signals.get((deal.tenant, p), ()) if s.ts < t]


def _person_row(
    data: DealBundle, deal: Deal, pid: str, t: int, ts: np.ndarray, buyer: np.ndarray, inbound: np.ndarray
) -> list[float]:
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
    return [
        *(float(level == i) for i in range(len(TITLE_LEVELS))),
        *(float(function == i) for i in range(len(FUNCTIONS))),
        *(float(slot == i) for i in range(len(_ROLE_SLOTS))),
        float(job is not None and job.cid == deal.cid),
        float(np.log1p(count)),
        float(inbound[mine].mean()) if count else 0.0,
        _log_days(t - int(ts[mine][0])) if count else 0.0,
        _log_days(t - int(ts[mine][-1])) if count else 0.0,
        float(np.log1p(prior_events)),
        float(two_way),
        float(any(member == deal.owner and times.size for member, times in prior)),
    ]


def _company_row(data: DealBundle, deal: Deal) -> np.ndarray:
    band = SIZE_BANDS.index(deal.size_band) if deal.size_band in SIZE_BANDS else -1
    bucket = zlib.crc32(deal.industry.encode()) % INDUSTRY_BUCKETS if deal.industry else -1
    return np.array(
        [
            *(float(band == i) for i in range(len(SIZE_BANDS))),
            float(band < 0),
            *(float(bucket == i) for i in range(INDUSTRY_BUCKETS)),
            float(np.log1p(len(data.staff.get(deal.cid, ())))),
        ],
        dtype=np.float32,
    )


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
    """Times at which an open stretch of the deal is looked at: a week in (halfway, for a deal that
    closes sooner: the fastest deals must not drop out of training and testing), then every two weeks."""
    end = deal.end(as_of)
    first = min(first_days * DAY, (end - deal.created) // 2)
    return list(range(deal.created + first, end, every_days * DAY)) if first > 0 else []
