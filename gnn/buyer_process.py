"""The buyer-process model: how buyers like this one buy, from the network's closed deals.

Training reduces every closed deal (of tenants that share with the network) to anonymous facts:
its buyer cohort (industry, size band), amount band, product, outcome, days to close, days per
stage and stalls (from trusted CRM histories, `gnn.deals.trusted_history`), and the drivers seen
in its engagement. Answers are statistics over a cohort, and only over a cohort of at least k deals
from at least m tenants (DESIGN §4); a smaller one is refused, or a company's cohort rolls up to a
broader one and says so."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import CohortTooSmallError
from gnn.deals import DAY, PERSON_FEATURES, TABULAR_FEATURES, deal_features, trusted_history
from graph.deal_bundle import DealBundle

# (upper bound, band); an amount of 0 is unknown.
AMOUNT_BANDS = ((10_000.0, "<10k"), (50_000.0, "10k-50k"), (250_000.0, "50k-250k"), (float("inf"), "250k+"))
DRIVERS = {
    "economic_buyer_before_proposal": "economic buyer engaged before proposal",
    "warm_introduction": "warm introduction: the buyer's people knew your team before the deal",
    "multithreaded": "three or more buyer-side people engaged",
    "legal_or_procurement_engaged": "legal or procurement engaged",
}
STALL_FACTOR = 2.0  # a stage stalls when it takes more than twice the network's median for it


def amount_band(amount: float) -> str:
    if amount <= 0:
        return ""
    return next(band for upper, band in AMOUNT_BANDS if amount < upper)


def buyer_schema_hash(stages: tuple[str, ...]) -> str:
    schema = {"stages": list(stages), "drivers": list(DRIVERS), "amount_bands": [b for _, b in AMOUNT_BANDS]}
    return hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()[:16]


def closed_deal_facts(data: DealBundle, stages: tuple[str, ...], as_of: int) -> dict[str, list[Any]]:
    """One anonymous row per deal closed by `as_of`: no deal, person or tenant names, only a tenant
    number (to count tenants) and the cohort codes."""
    tenants: dict[str, int] = {}
    facts: dict[str, list[Any]] = {
        k: []
        for k in (
            "tenant",
            "industry",
            "size_band",
            "amount_band",
            "product",
            "won",
            "days_to_close",
            "stage_days",
            *DRIVERS,
        )
    }
    people_engaged = TABULAR_FEATURES.index("log_people_engaged")
    gatekeeper = TABULAR_FEATURES.index("gatekeeper_engaged")
    prior_tie = PERSON_FEATURES.index("log_prior_tie_events")
    for deal in data.deals:
        if not 0 <= deal.closed <= as_of:
            continue
        features = deal_features(data, deal, deal.closed)
        trusted = trusted_history(deal, stages)
        ends = [*deal.stage_ts[1:], deal.closed]
        facts["tenant"].append(tenants.setdefault(deal.tenant, len(tenants)))
        facts["industry"].append(deal.industry)
        facts["size_band"].append(deal.size_band)
        facts["amount_band"].append(amount_band(deal.amount))
        facts["product"].append(deal.product)
        facts["won"].append(deal.outcome == "won")
        facts["days_to_close"].append((deal.closed - deal.created) / DAY)
        facts["stage_days"].append([(e - s) / DAY for s, e in zip(deal.stage_ts, ends)] if trusted else [])
        facts["economic_buyer_before_proposal"].append(_eb_before_proposal(deal, stages) if trusted else -1)
        facts["warm_introduction"].append(int(bool((features.persons[:, prior_tie] > 0).any())))
        facts["multithreaded"].append(int(np.expm1(features.tabular[people_engaged]) >= 3 - 1e-6))
        facts["legal_or_procurement_engaged"].append(int(features.tabular[gatekeeper] > 0))
    return facts


def _eb_before_proposal(deal: Any, stages: tuple[str, ...]) -> int:
    """1 when the listed economic buyer (or a VP+ buyer) took part before the proposal stage began."""
    proposal = stages.index("proposal") if "proposal" in stages else len(stages) // 2
    start = deal.stage_ts[proposal]
    eb = {p for p, r in deal.contacts.items() if r == "economic_buyer"}
    return int(bool(np.any((deal.ts < start) & np.isin(deal.buyer, list(eb))))) if eb else 0


@dataclass(frozen=True)
class StageForecast:
    stage: str
    p10: float
    p50: float
    p90: float
    stall_probability: float


@dataclass(frozen=True)
class Driver:
    description: str
    effect_days: float
    effect_win_probability: float
    deals_with: int
    deals_without: int


_MAX_KEPT_ANSWERS = 10_000  # distinct questions whose answers a model keeps (cohorts x profiles: few)


@dataclass(frozen=True)
class BuyerProcessAnswer:
    stages: list[StageForecast]
    median_days_to_close: float
    win_rate: float
    drivers: list[Driver]
    cohort: dict[str, str]  # the cohort answered: industry, size_band, amount_band, product ("" = any)
    cohort_deals: int
    cohort_tenants: int
    rolled_up: bool


@dataclass(frozen=True)
class CohortMinimum:
    """Network statistics rest on at least `deals` closed deals from at least `tenants` tenants (DESIGN §4)."""

    deals: int = 10
    tenants: int = 3


DEFAULT_COHORT_MINIMUM = CohortMinimum()


class BuyerProcessModel:
    """A buyer-process model version: the anonymous closed-deal facts, answering per cohort."""

    def __init__(self, state: dict[str, Any], version: str = "") -> None:
        self.version = version
        self.stages: tuple[str, ...] = tuple(state["stages"])
        f = state["facts"]
        self._tenant = np.asarray(f["tenant"], dtype=np.int64)
        self._codes = {k: np.asarray(f[k], dtype=object) for k in ("industry", "size_band", "amount_band", "product")}
        self._won = np.asarray(f["won"], dtype=bool)
        self._days = np.asarray(f["days_to_close"], dtype=np.float64)
        self._drivers = {k: np.asarray(f[k], dtype=np.int64) for k in DRIVERS}
        n = len(f["stage_days"])
        self._stage_days = np.full((n, len(self.stages)), np.nan)
        for i, row in enumerate(f["stage_days"]):
            if len(row) == len(self.stages):
                self._stage_days[i] = row
        self._trusted = ~np.isnan(self._stage_days).any(axis=1)
        # Answers are a pure function of the question and the (immutable) facts: kept, up to a bound.
        self._answers: dict[tuple[Any, ...], BuyerProcessAnswer] = {}
        self._stall_limit = (
            STALL_FACTOR * np.nanmedian(self._stage_days[self._trusted], axis=0)
            if self._trusted.any()
            else np.full(len(self.stages), np.inf)
        )

    def meets_minimum(self, mask: np.ndarray, minimum: CohortMinimum) -> bool:
        return int(mask.sum()) >= minimum.deals and np.unique(self._tenant[mask]).size >= minimum.tenants

    def _size(self, mask: np.ndarray) -> str:
        return f"{int(mask.sum())} closed deals from {np.unique(self._tenant[mask]).size} tenants"

    def predict(
        self, cohort: dict[str, str], *, minimum: CohortMinimum, roll_up: bool, eb_engaged_early: bool = False
    ) -> BuyerProcessAnswer:
        """Statistics for the narrowest level of `cohort` (industry, size_band, amount_band, product;
        "" = any) that rests on enough deals and tenants. Profile codes (amount band, product) are
        dropped first; with `roll_up` the size band and then the industry are dropped too."""
        key = (tuple(sorted(cohort.items())), minimum, roll_up, eb_engaged_early)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._predict(cohort, minimum=minimum, roll_up=roll_up, eb_engaged_early=eb_engaged_early)
            if len(self._answers) < _MAX_KEPT_ANSWERS:
                self._answers[key] = answer
        return answer

    def _predict(
        self, cohort: dict[str, str], *, minimum: CohortMinimum, roll_up: bool, eb_engaged_early: bool
    ) -> BuyerProcessAnswer:
        levels = [dict(cohort)]
        for key in ("product", "amount_band", *(("size_band", "industry") if roll_up else ())):
            if levels[-1].get(key):
                levels.append({**levels[-1], key: ""})
        tried = []
        for i, level in enumerate(levels):
            mask = self.cohort_mask(level)
            if self.meets_minimum(mask & self._trusted, minimum):  # then the whole cohort does too
                return self._answer(level, mask, minimum, rolled_up=i > 0, eb_engaged_early=eb_engaged_early)
            tried.append(
                f"{_name(level)}: {self._size(mask)} ({self._size(mask & self._trusted)} with a full stage history)"
            )
        raise CohortTooSmallError(
            f"cohort too small: network statistics need at least {minimum.deals} closed deals from at least "
            f"{minimum.tenants} tenants; " + "; ".join(tried)
        )

    def cohort_mask(self, level: dict[str, str]) -> np.ndarray:
        mask = np.ones(self._won.shape[0], dtype=bool)
        for key, value in level.items():
            if value:
                mask &= self._codes[key] == value
        return mask

    def _answer(
        self,
        level: dict[str, str],
        mask: np.ndarray,
        minimum: CohortMinimum,
        *,
        rolled_up: bool,
        eb_engaged_early: bool,
    ) -> BuyerProcessAnswer:
        trusted = mask & self._trusted
        drivers = []
        for key, description in DRIVERS.items():
            with_, without = mask & (self._drivers[key] == 1), mask & (self._drivers[key] == 0)
            if self.meets_minimum(with_ & self._won, minimum) and self.meets_minimum(without & self._won, minimum):
                drivers.append(
                    Driver(
                        description,
                        effect_days=float(
                            np.median(self._days[with_ & self._won]) - np.median(self._days[without & self._won])
                        ),
                        effect_win_probability=float(self._won[with_].mean() - self._won[without].mean()),
                        deals_with=int(with_.sum()),
                        deals_without=int(without.sum()),
                    )
                )
        won = mask & self._won
        timing = won & (self._drivers["economic_buyer_before_proposal"] == 1) if eb_engaged_early else won
        if not self.meets_minimum(timing, minimum):
            timing = won if self.meets_minimum(won, minimum) else mask
        stages = []
        for s, stage in enumerate(self.stages):
            days = self._stage_days[trusted, s]
            p10, p50, p90 = (float(q) for q in np.quantile(days, (0.1, 0.5, 0.9)))
            stages.append(StageForecast(stage, p10, p50, p90, float(np.mean(days > self._stall_limit[s]))))
        return BuyerProcessAnswer(
            stages=stages,
            median_days_to_close=float(np.median(self._days[timing])),
            win_rate=float(self._won[mask].mean()),
            drivers=drivers,
            cohort=level,
            cohort_deals=int(mask.sum()),
            cohort_tenants=int(np.unique(self._tenant[mask]).size),
            rolled_up=rolled_up,
        )


def _name(level: dict[str, str]) -> str:
    named = [f"{k}={v}" for k, v in level.items() if v]
    return "cohort " + (", ".join(named) if named else "the whole network")
