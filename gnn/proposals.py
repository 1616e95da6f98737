"""Proposed CRM updates for reps to approve or reject in their CRM: what the evidence around each
open deal supports changing, with that evidence and a confidence. relgraph never writes to a CRM;
a rep's decision is recorded when told (graph/operations.py) and acceptance rates are reported.

Each proposal has a stable id (the same update of the same deal proposed again keeps it), so a
decision recorded once applies until the evidence supports another value."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from gnn.deal_scoring import DealOutlook, DealScorer
from gnn.deals import DAY
from gnn.forecast import close_cdf
from gnn.pipeline_health import days_overdue, open_deals
from graph.deal_bundle import Deal, DealBundle

FIELDS = ("stage", "close_date", "next_step", "contact")
STALE_DAYS = 30
ENGAGED_INTERACTIONS = 2  # a buyer-side person with this many interactions on a deal is engaged
_CLOSE_WINDOW_DAYS = 30  # a proposed close date's confidence: the chance it closes within this of it


@dataclass(frozen=True)
class Proposal:
    proposal_id: str
    deal_id: str
    owner: str  # the rep's pid
    field: str  # one of FIELDS
    current: str  # what the CRM says ("" when it says nothing)
    proposed: str
    evidence: tuple[str, ...]
    confidence: float  # in [0, 1]


def _proposal(deal: Deal, field: str, current: str, proposed: str, evidence: list[str], confidence: float) -> Proposal:
    digest = hashlib.sha256(f"{deal.tenant}\x1f{deal.deal_id}\x1f{field}\x1f{proposed}".encode()).hexdigest()[:16]
    return Proposal(digest, deal.deal_id, deal.owner, field, current, proposed, tuple(evidence), round(confidence, 4))


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def propose(deals: Sequence[Deal], outlooks: Sequence[DealOutlook], t: int) -> list[Proposal]:
    """The updates the evidence supports for each open deal at t (with the deal model's outlook),
    most confident first."""
    found = []
    for deal, outlook in zip(deals, outlooks, strict=True):
        found += [*_stage(deal, outlook, t), *_close_date(deal, outlook, t), *_next_step(deal, t), *_contacts(deal, t)]
    return sorted(found, key=lambda p: (-p.confidence, p.deal_id, p.field, p.proposed))


def _stage(deal: Deal, outlook: DealOutlook, t: int) -> list[Proposal]:
    crm = deal.crm_stage_at(t)
    if not outlook.stage or outlook.stage == crm:
        return []
    why = f"the buyer's behaviour reads as {outlook.stage} with probability {outlook.stage_probability:.0%}"
    return [_proposal(deal, "stage", crm, outlook.stage, [why], outlook.stage_probability)]


def _close_date(deal: Deal, outlook: DealOutlook, t: int) -> list[Proposal]:
    """The expected close, where the CRM records none, or one already past, or one outside the
    model's p10-p90; confident as the chance it closes within a month of it."""
    low, mid, high = (t + float(np.expm1(x)) * DAY for x in outlook.close_log_days)
    crm, overdue = deal.close_date, days_overdue(deal, t)
    if crm < 0:
        wrong = "the CRM records no close date"
    elif overdue:
        wrong = f"the CRM's close date {_day(crm)} passed {overdue} days ago"
    elif not low <= crm <= high:
        wrong = f"the CRM's close date {_day(crm)} lies outside the expected p10-p90"
    else:
        return []
    window = np.asarray([mid - _CLOSE_WINDOW_DAYS * DAY, mid + _CLOSE_WINDOW_DAYS * DAY])
    within = float(np.diff(close_cdf(outlook, t, window))[0])
    why = (
        f"expected close {_day(mid)} (p10 {_day(low)}, p90 {_day(high)}); win probability {outlook.win_probability:.0%}"
    )
    return [_proposal(deal, "close_date", _day(crm) if crm >= 0 else "", _day(mid), [wrong, why], within)]


def _next_step(deal: Deal, t: int) -> list[Proposal]:
    seen = deal.ts[deal.ts <= t]
    last = int(seen[-1]) if len(seen) else deal.created
    if len(seen) and t - last <= STALE_DAYS * DAY:
        return []
    quiet = f"no interaction for {(t - last) // DAY} days" if len(seen) else "no interaction recorded"
    return [_proposal(deal, "next_step", "", "re-engage the buyer", [quiet], 0.9)]


def _contacts(deal: Deal, t: int) -> list[Proposal]:
    """Buyer-side people engaged on the deal but not listed on it."""
    seen = deal.ts <= t
    people, times = deal.buyer[seen], deal.ts[seen]
    found = []
    for person, count in sorted(Counter(str(p) for p in people).items()):
        if person in deal.contacts or count < ENGAGED_INTERACTIONS:
            continue
        latest = int(times[people == person].max())
        why = f"{count} interactions on the deal, the latest {_day(latest)}, but not listed as a contact"
        found.append(_proposal(deal, "contact", "", person, [why], min(1.0, count / 5)))
    return found


def proposals_for(
    data: DealBundle | None, scorer: DealScorer, t: int, owners: Collection[str] | None = None
) -> tuple[list[Proposal], int]:
    """The proposals for a tenant's open deals at t (`data`: its deals as its own read sees them; None
    when it has none), only those `owners` own when given (a rep, a team); and how many open deals."""
    live = [d for d in open_deals(data.deals if data else [], t) if owners is None or d.owner in owners]
    return (propose(live, scorer.outlooks(data, live, t), t) if data else []), len(live)


def acceptance_rates(decisions: Sequence[tuple[str, str]]) -> dict[str, dict[str, float]]:
    """Per field, of (field, "accept" | "reject") decisions: how many were decided and the share accepted."""
    rates = {}
    for field in FIELDS:
        mine = [d for f, d in decisions if f == field]
        if mine:
            rates[field] = {"decided": float(len(mine)), "accepted": sum(d == "accept" for d in mine) / len(mine)}
    return rates
