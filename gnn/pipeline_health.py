"""How far a tenant's CRM can be trusted: the audit a revenue-operations lead would do by hand,
over every open deal at a time t. Each check passes or fails per deal it applies to; the hygiene
score is the share of open deals that pass every check, and below `HYGIENE_THRESHOLD` automating on
the CRM (AI-driven qualification) does worse than a coin flip. Pure computation on the read seam's
deals and a deal model's stage estimates; relgraph never writes to a CRM."""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np

from gnn.deal_scoring import DealScorer
from gnn.deals import DAY
from graph.deal_bundle import Deal, DealBundle

HYGIENE_THRESHOLD = 0.7
DEFAULT_STALE_DAYS = 30
DEFAULT_SAMPLE = 50
# The stage from which a deal should name its economic buyer, when the CRM's stages include it.
ECONOMIC_BUYER_FROM = "proposal"


@dataclass(frozen=True)
class Check:
    code: str
    description: str


STAGE_AGREES = Check("stage_agrees", "the CRM stage is the stage the buyer's behaviour says")
ACTIVE = Check("active", "an interaction in the last {stale_days} days (the CRM shows the deal as open)")
HAS_CONTACTS = Check("has_contacts", "at least one buyer-side contact listed")
HAS_INTERACTIONS = Check("has_interactions", "interactions synced from email or calendar")
ECONOMIC_BUYER = Check(
    "economic_buyer_named", f"the economic buyer is listed once the CRM says {ECONOMIC_BUYER_FROM} or later"
)
CLOSE_DATE_AHEAD = Check("close_date_ahead", "the CRM's expected close date is not in the past")


@dataclass(frozen=True)
class CheckResult:
    check: Check
    deals: int  # open deals the check applies to
    passed: int

    @property
    def pass_share(self) -> float:
        return self.passed / self.deals if self.deals else 1.0


@dataclass(frozen=True)
class DealFindings:
    deal_id: str
    crm_stage: str
    estimated_stage: str  # "" without a stage estimate
    issues: tuple[str, ...]  # what is wrong, in words; empty for a clean deal


@dataclass(frozen=True)
class HygieneAudit:
    as_of: int
    open_deals: int
    checks: list[CheckResult]
    sample: list[DealFindings]  # a random sample, as one would audit by hand
    not_audited: list[str]

    clean_deals: int  # open deals that pass every check that applies to them

    @property
    def score(self) -> float:
        """The share of open deals whose record passes every check (1.0 with no open deal): what
        could be automated on as it stands."""
        return self.clean_deals / self.open_deals if self.open_deals else 1.0

    @property
    def below_threshold(self) -> bool:
        return self.score < HYGIENE_THRESHOLD


def days_overdue(deal: Deal, t: int) -> int:
    """Whole days since the CRM's expected close date passed (a date passes once its day is over);
    0 when it has not, or the deal carries none."""
    return max(0, (t - deal.close_date) // DAY) if deal.close_date >= 0 else 0


def open_deals(deals: Sequence[Deal], t: int) -> list[Deal]:
    """Deals created by t and not closed by t, as the CRM would list them at t."""
    return [d for d in deals if d.created <= t and not 0 <= d.closed <= t]


def audit_hygiene(
    deals: Sequence[Deal],
    t: int,
    estimated_stages: Callable[[list[Deal]], list[str]] | None,
    stage_order: Sequence[str],
    *,
    stale_days: int = DEFAULT_STALE_DAYS,
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
) -> HygieneAudit:
    """Audit the open deals among `deals` at t. `estimated_stages` gives the deal model's stage for
    each deal (None, or "" for a deal, when there is no stage estimate: that check is then left
    out); `stage_order` is the CRM's stage codes in order (the model's), for the economic-buyer
    check. Only what was recorded by t is read."""
    live = sorted(open_deals(deals, t), key=lambda d: d.deal_id)
    estimates = estimated_stages(live) if estimated_stages and live else [""] * len(live)
    eb_from = stage_order.index(ECONOMIC_BUYER_FROM) if ECONOMIC_BUYER_FROM in stage_order else None
    active = Check(ACTIVE.code, ACTIVE.description.format(stale_days=stale_days))
    tallies: dict[str, list[int]] = {}  # check code -> [applies, passed]
    findings = []
    for deal, estimate in zip(live, estimates, strict=True):
        crm = deal.crm_stage_at(t)
        seen = deal.ts[deal.ts <= t]
        outcomes: list[tuple[Check, bool, str]] = [
            (HAS_CONTACTS, bool(deal.contacts), "no buyer-side contact listed"),
            (HAS_INTERACTIONS, len(seen) > 0, "no interaction synced"),
            (
                active,
                len(seen) > 0 and t - int(seen[-1]) <= stale_days * DAY,
                f"no interaction for {_days_since(seen, deal.created, t)} days while the CRM shows it open",
            ),
        ]
        if estimate:
            outcomes.append((STAGE_AGREES, crm == estimate, f"CRM says {crm or 'no stage'}, behaviour says {estimate}"))
        if deal.close_date >= 0:
            overdue = days_overdue(deal, t)
            outcomes.append((CLOSE_DATE_AHEAD, overdue == 0, f"the CRM's close date passed {overdue} days ago"))
        if eb_from is not None and crm in stage_order and stage_order.index(crm) >= eb_from:
            named = "economic_buyer" in deal.contacts.values()
            outcomes.append((ECONOMIC_BUYER, named, f"no economic buyer listed at {crm}"))
        for check, passed, _ in outcomes:
            tally = tallies.setdefault(check.code, [0, 0])
            tally[0] += 1
            tally[1] += passed
        issues = tuple(why for _, passed, why in outcomes if not passed)
        findings.append(DealFindings(deal.deal_id, crm, estimate, issues))
    checks = [STAGE_AGREES, active, CLOSE_DATE_AHEAD, HAS_CONTACTS, HAS_INTERACTIONS, ECONOMIC_BUYER]
    results = [CheckResult(c, *tallies.get(c.code, [0, 0])) for c in checks]
    picked = random.Random(seed).sample(findings, min(sample, len(findings)))
    not_audited = []
    if not any(deal.close_date >= 0 for deal in live):
        not_audited.append("close dates: no open deal carries the CRM's expected close date (`close_date`)")
    if not estimated_stages or not any(estimates):
        not_audited.append("stage agreement: no deal model with a stage estimate is promoted")
    if eb_from is None:
        not_audited.append(f"economic buyer: the CRM's stages have no {ECONOMIC_BUYER_FROM!r}")
    clean = sum(not f.issues for f in findings)
    return HygieneAudit(t, len(live), results, sorted(picked, key=lambda f: f.deal_id), not_audited, clean)


def _days_since(seen: np.ndarray, created: int, t: int) -> int:
    return int((t - (int(seen[-1]) if len(seen) else created)) // DAY)


def audit_open_deals(
    data: DealBundle | None,
    scorer: DealScorer | None,
    t: int,
    *,
    stale_days: int,
    sample: int,
    owners: Collection[str] | None = None,
) -> HygieneAudit:
    """The audit at t of a tenant's deals (`data`: its deals as its own read sees them; None when it
    has none; only those `owners` own, when given), with the deal model's stages when one is
    promoted; the sample is the same all day."""
    return audit_hygiene(
        [d for d in (data.deals if data else []) if owners is None or d.owner in owners],
        t,
        (lambda deals: [o.stage for o in scorer.outlooks(data, deals, t)]) if scorer and data else None,
        scorer.stages if scorer else (),
        stale_days=stale_days,
        sample=sample,
        seed=t // DAY,
    )
