"""Bookings forecast of a tenant's open deals, period by period, beside the two forecasts sales
teams use today. Pure computation on the deals and the deal model's outlooks at a time t.

- relgraph: each open deal books its amount with the deal model's win probability, at a close time
  from the tenant's own deal lifetimes given the deal's age (`CloseTiming`: Kaplan-Meier, the open
  deals censored). The expected bookings per period are exact (win probability x amount x the
  probability the close falls in the period); p10/p50/p90 come from sampling every deal's outcome
  and close together.
- weighted pipeline: amount x a fixed probability per CRM stage, placed at the CRM's expected close
  date (`close_date`; for a deal without one, its creation plus the tenant's median won-deal
  cycle), or in the current period once that is past.
- commit: the deals the CRM puts in its last open stage (negotiation), in full, this period."""

from __future__ import annotations

import calendar
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from statistics import median

import numpy as np
from scipy.stats import norm

from gnn.deal_scoring import DealOutlook, DealScorer
from gnn.deals import DAY
from gnn.pipeline_health import open_deals
from graph.deal_bundle import Deal, DealBundle

PERIOD_KINDS = ("month", "quarter")
_Z90 = float(norm.ppf(0.9))


def stage_probabilities(stages: Sequence[str]) -> dict[str, float]:
    """The fixed probability a CRM-weighted pipeline gives each stage: from 10% at the first to 75%
    at the last open one, evenly (discovery 10%, evaluation 31.7%, proposal 53.3%, negotiation 75%)."""
    n = len(stages)
    return {s: 0.1 + (0.75 - 0.1) * i / max(1, n - 1) for i, s in enumerate(stages)}


@dataclass(frozen=True)
class Period:
    label: str  # "2026-07" or "2026-Q3"
    start: int
    end: int  # exclusive


def periods_from(t: int, kind: str, count: int) -> list[Period]:
    """`count` calendar periods (UTC), the first the one holding t."""
    if kind not in PERIOD_KINDS:
        raise ValueError(f"period must be one of {PERIOD_KINDS}, got {kind!r}")
    day = datetime.fromtimestamp(t, UTC)
    months = 3 if kind == "quarter" else 1
    year, month = day.year, (day.month - 1) // months * months + 1
    found = []
    for _ in range(count):
        start = calendar.timegm((year, month, 1, 0, 0, 0))
        label = f"{year}-Q{(month - 1) // 3 + 1}" if kind == "quarter" else f"{year}-{month:02d}"
        year, month = (year + 1, month + months - 12) if month + months > 12 else (year, month + months)
        found.append(Period(label, start, calendar.timegm((year, month, 1, 0, 0, 0))))
    return found


@dataclass(frozen=True)
class PeriodForecast:
    period: Period
    expected: float
    p10: float
    p50: float
    p90: float
    weighted_pipeline: float
    commit: float


@dataclass(frozen=True)
class Forecast:
    as_of: int
    open_deals: int
    periods: list[PeriodForecast]
    by_owner: dict[str, list[float]]  # owner pid -> expected bookings per period

    def by_team(self, team_of: Mapping[str, str]) -> dict[str, tuple[list[float], int]]:
        """Per team (`team_of`: an owner's team in the tenant; "" for owners in none), the expected
        bookings per period of its members' deals, and how many of its members own one."""
        teams: dict[str, tuple[list[float], int]] = {}
        for owner, expected in self.by_owner.items():
            summed, reps = teams.get(team_of.get(owner, ""), ([0.0] * len(expected), 0))
            teams[team_of.get(owner, "")] = ([a + b for a, b in zip(summed, expected, strict=True)], reps + 1)
        return dict(sorted(teams.items()))


def close_cdf(outlook: DealOutlook, t: int, bounds: np.ndarray) -> np.ndarray:
    """P(close before each bound) under the split normal on log1p(days after t)."""
    low, mid, high = outlook.close_log_days
    x = np.log1p(np.maximum(bounds - t, 0) / DAY)
    sigma = np.where(x < mid, max(mid - low, 1e-6), max(high - mid, 1e-6)) / _Z90
    cdf: np.ndarray = norm.cdf((x - mid) / sigma)
    return np.where(bounds <= t, 0.0, cdf)


@dataclass(frozen=True)
class CloseTiming:
    """How long a tenant's deals stay open: the Kaplan-Meier estimate over its deals known at t,
    each closed deal's lifetime an event and each open deal's age censored, so the deals still open
    count too (a model trained at a date has seen only the deals that had closed by then, the fast
    ones, and places closes too early: measured, twice the bookings in the next month)."""

    days: np.ndarray  # lifetimes at which deals closed, ascending, in days
    survival: np.ndarray  # the share still open just after each

    @classmethod
    def of(cls, deals: Sequence[Deal], t: int) -> CloseTiming:
        known = [d for d in deals if d.created <= t]
        closed = np.asarray([0 <= d.closed <= t for d in known], dtype=bool)
        lifetime = np.asarray([(min(d.closed, t) if closed[i] else t) - d.created for i, d in enumerate(known)]) / DAY
        days = np.unique(lifetime[closed]) if closed.any() else np.zeros(0)
        at_risk = np.asarray([(lifetime >= d).sum() for d in days], dtype=np.float64)
        events = np.asarray([((lifetime == d) & closed).sum() for d in days], dtype=np.float64)
        return cls(days, np.cumprod(1.0 - events / np.maximum(at_risk, 1.0)))

    def _survival(self, days: np.ndarray) -> np.ndarray:
        i = np.searchsorted(self.days, days, side="right") - 1
        return np.where(i >= 0, self.survival[np.maximum(i, 0)], 1.0) if len(self.days) else np.ones_like(days)

    def closed_by(self, age_days: float, days_ahead: np.ndarray) -> np.ndarray:
        """P(a deal open at `age_days` has closed within each of `days_ahead`); what never closed in
        the history stays open (below 1 at any horizon)."""
        alive = float(self._survival(np.asarray([age_days]))[0])
        if alive <= 0:  # older than any deal ever was: it closes now
            return np.ones_like(days_ahead, dtype=np.float64)
        closed: np.ndarray = 1.0 - self._survival(age_days + np.maximum(days_ahead, 0.0)) / alive
        return np.where(days_ahead < 0, 0.0, closed)

    def sample_close(self, age_days: float, t: int, rng: np.random.Generator, n: int) -> np.ndarray:
        """Close times of `n` draws for a deal open at `age_days` at t; +inf for the draws it stays open."""
        alive = float(self._survival(np.asarray([age_days]))[0])
        if alive <= 0:
            return np.full(n, float(t))
        later = self.days > age_days
        conditional = 1.0 - self.survival[later] / alive  # P(closed by each later lifetime)
        slot = np.searchsorted(conditional, rng.random(n), side="left")
        ahead = np.append(self.days[later] - age_days, np.inf)[slot]
        return t + ahead * DAY


def forecast(
    deals: Sequence[Deal],
    outlooks: Sequence[DealOutlook],
    t: int,
    periods: list[Period],
    stages: Sequence[str],
    history: Sequence[Deal],
    *,
    samples: int = 2000,
    seed: int = 0,
) -> Forecast:
    """The forecast at t of the open `deals` (with their `outlooks`) over `periods`; `history` is
    the tenant's deals, of which only what was known at t sets the close timing and the weighted
    pipeline's cycle length."""
    bounds = np.asarray([p.start for p in periods] + [periods[-1].end], dtype=np.float64)
    timing = CloseTiming.of(history, t)
    expected = np.zeros(len(periods))
    by_owner: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(seed)
    sampled = np.zeros((samples, len(periods)))
    for deal, outlook in zip(deals, outlooks, strict=True):
        age = (t - deal.created) / DAY
        share = np.diff(timing.closed_by(age, (bounds - t) / DAY))
        booked = outlook.win_probability * deal.amount * share
        expected += booked
        by_owner[deal.owner] = by_owner.get(deal.owner, np.zeros(len(periods))) + booked
        won = rng.random(samples) < outlook.win_probability
        slot = np.searchsorted(bounds, timing.sample_close(age, t, rng, samples), side="right") - 1
        hit = won & (slot >= 0) & (slot < len(periods))
        np.add.at(sampled, (np.flatnonzero(hit), slot[hit]), deal.amount)
    weighted, commit = _crm_forecasts(deals, t, periods, stages, history)
    quantiles = np.quantile(sampled, [0.1, 0.5, 0.9], axis=0)
    rows = []
    for i, p in enumerate(periods):
        p10, p50, p90 = (float(q) for q in quantiles[:, i])
        rows.append(PeriodForecast(p, float(expected[i]), p10, p50, p90, weighted[i], commit[i]))
    return Forecast(t, len(deals), rows, {owner: booked.tolist() for owner, booked in sorted(by_owner.items())})


def _crm_forecasts(
    deals: Sequence[Deal], t: int, periods: list[Period], stages: Sequence[str], history: Sequence[Deal]
) -> tuple[list[float], list[float]]:
    probability = stage_probabilities(stages)
    cycles = [d.closed - d.created for d in history if d.outcome == "won" and 0 <= d.closed <= t]
    cycle = median(cycles) if cycles else 90 * DAY
    weighted, commit = [0.0] * len(periods), [0.0] * len(periods)
    for deal in deals:
        stage = deal.crm_stage_at(t)
        close = max(t, deal.close_date if deal.close_date >= 0 else deal.created + cycle)
        for i, p in enumerate(periods):
            if p.start <= close < p.end:
                weighted[i] += deal.amount * probability.get(stage, 0.0)
        if stages and stage == stages[-1]:
            commit[0] += deal.amount
    return weighted, commit


def booked(deals: Sequence[Deal], periods: list[Period]) -> list[float]:
    """What was actually booked in each period: the amounts of deals won in it."""
    return [sum(d.amount for d in deals if d.outcome == "won" and p.start <= d.closed < p.end) for p in periods]


def forecast_open_deals(
    data: DealBundle | None,
    scorer: DealScorer,
    t: int,
    period: str,
    count: int,
    owners: Collection[str] | None = None,
) -> Forecast:
    """The forecast at t of the open deals among a tenant's (`data`: its deals as its own read sees
    them; None when it has none; only those `owners` own, when given: a team's) over `count`
    periods of kind `period`, with the deal model; close timing from all the tenant's deals."""
    deals = data.deals if data else []
    live = [d for d in open_deals(deals, t) if owners is None or d.owner in owners]
    outlooks = scorer.outlooks(data, live, t) if data else []
    return forecast(live, outlooks, t, periods_from(t, period, count), scorer.stages, deals, seed=t // DAY)


def known_at(data: DealBundle, t: int) -> DealBundle:
    """`data` as it was known at t: deals created by then, open unless they had closed, with the
    stage changes, interactions, jobs, signals and ties recorded by then, and no CRM close date (a
    CRM keeps only its latest value, which may have been set after t). A backtest forecasts from
    this, so it cannot read the future whatever its features do."""
    deals = []
    for d in data.deals:
        if d.created > t:
            continue
        seen = d.ts <= t
        stages = [(name, ts) for name, ts in zip(d.stage_names, d.stage_ts, strict=True) if ts <= t]
        deals.append(
            replace(
                d,
                stage_names=[name for name, _ in stages],
                stage_ts=[ts for _, ts in stages],
                closed=d.closed if 0 <= d.closed <= t else -1,
                outcome=d.outcome if 0 <= d.closed <= t else "open",
                close_date=-1,
                ts=d.ts[seen],
                kind=d.kind[seen],
                buyer=d.buyer[seen],
                seller=d.seller[seen],
                inbound=d.inbound[seen],
                activity=d.activity[seen],
            )
        )
    return DealBundle(
        deals=deals,
        jobs={
            p: [replace(j, end=j.end if j.end <= t else -1) for j in js if j.start <= t] for p, js in data.jobs.items()
        },
        staff=data.staff,
        signals={k: [s for s in found if s.ts <= t] for k, found in data.signals.items()},
        ties={k: [(m, times[times <= t]) for m, times in tied] for k, tied in data.ties.items()},
        held_by=data.held_by,
        shared=data.shared,
    )


@dataclass(frozen=True)
class BacktestRow:
    """One past period: the forecasts made at its start from what was known then, and what the deals
    open then actually booked in it."""

    period: Period
    open_deals: int
    booked: float
    expected: float
    p10: float
    p90: float
    weighted_pipeline: float
    commit: float

    @property
    def covered(self) -> bool:
        return self.p10 <= self.booked <= self.p90


def backtest_period(data: DealBundle, scorer: DealScorer, start: int, period: str) -> BacktestRow:
    """The forecast at `start` (a period's first instant) from `data` known at `start`, against what
    the deals open at `start` booked in that period. `scorer` must be trained on data up to `start`."""
    result = forecast_open_deals(known_at(data, start), scorer, start, period, 1)
    row = result.periods[0]
    pipeline = {d.deal_id for d in open_deals(data.deals, start)}
    actual = booked([d for d in data.deals if d.deal_id in pipeline], [row.period])[0]
    return BacktestRow(
        row.period, result.open_deals, actual, row.expected, row.p10, row.p90, row.weighted_pipeline, row.commit
    )


def periods_before(t: int, kind: str, count: int) -> list[Period]:
    """The `count` whole calendar periods before the one holding t, oldest first."""
    found: list[Period] = []
    start = periods_from(t, kind, 1)[0].start
    for _ in range(count):
        period = periods_from(start - 1, kind, 1)[0]
        found.insert(0, period)
        start = period.start
    return found
