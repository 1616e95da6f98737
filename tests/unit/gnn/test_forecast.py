"""The bookings forecast: calendar periods, exact expectations, sampled intervals, and the two CRM
forecasts beside it, on hand-made deals and outlooks."""

from __future__ import annotations

import calendar
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from gnn.deal_scoring import DealOutlook
from gnn.deals import DAY
from gnn.forecast import (
    CloseTiming,
    backtest_period,
    booked,
    forecast,
    forecast_open_deals,
    periods_from,
    stage_probabilities,
)
from gnn.model_kinds import DEAL
from gnn.pipeline_health import open_deals
from graph.deal_bundle import Deal
from graph.ingest import read_records
from graph.memory_reader import InMemoryGraph
from graph.pseudonymize import Pseudonymizer
from graph.reader import ALL_TENANTS
from tests.support.serving import untrained_models
from tests.unit.gnn.test_pipeline_health import STAGES, deal

T = calendar.timegm((2026, 5, 15, 0, 0, 0))


def test_calendar_periods() -> None:
    quarters = periods_from(T, "quarter", 3)
    assert [p.label for p in quarters] == ["2026-Q2", "2026-Q3", "2026-Q4"]
    assert quarters[0].start == calendar.timegm((2026, 4, 1, 0, 0, 0)) and quarters[-1].end == calendar.timegm(
        (2027, 1, 1, 0, 0, 0)
    )
    months = periods_from(calendar.timegm((2026, 12, 3, 0, 0, 0)), "month", 2)
    assert [(p.label, p.end) for p in months] == [
        ("2026-12", calendar.timegm((2027, 1, 1, 0, 0, 0))),
        ("2027-01", calendar.timegm((2027, 2, 1, 0, 0, 0))),
    ]
    with pytest.raises(ValueError, match="period"):
        periods_from(T, "week", 1)


def outlook(win: float, days: float, spread: float = 0.3) -> DealOutlook:
    mid = float(np.log1p(days))
    return DealOutlook(win, (mid - spread, mid, mid + spread), "", 0.0)


def test_expectation_interval_and_owners() -> None:
    # The tenant's history: half its deals lived 30 days, half 130 (one still open at 200 days: censored).
    history = [
        dataclasses.replace(deal(f"h{i}", ["discovery"], closed=T - 400 * DAY + life * DAY), created=T - 400 * DAY)
        for i, life in enumerate([30, 30, 130, 130])
    ] + [deal("open-old", ["discovery"], created=T - 200 * DAY)]
    deals = [deal("a", ["discovery"], touches=[T - DAY]), deal("b", ["discovery", "negotiation"])]
    deals = [dataclasses.replace(d, amount=a, created=T - 10 * DAY) for d, a in zip(deals, (100.0, 50.0), strict=True)]
    quarters = periods_from(T, "quarter", 4)
    outlooks = [outlook(0.5, 20), outlook(1.0, 120)]  # the model's close times: not what places closes
    result = forecast(deals, outlooks, T, quarters, STAGES, [*history, *deals], samples=4000)
    rows = {r.period.label: r for r in result.periods}
    # Both deals are 10 days old. Of the deals at risk, 2 of 5 closed at 30 days and 2 of the 3 left
    # at 130; the one open at 200 days never has: 40% close 20 days on (Q2), 40% 120 days on (Q3,
    # by September 12th), 20% not within the year.
    assert rows["2026-Q2"].expected == pytest.approx(0.4 * (0.5 * 100 + 1.0 * 50))
    assert rows["2026-Q3"].expected == pytest.approx(rows["2026-Q2"].expected)
    assert rows["2026-Q4"].expected == rows["2027-Q1"].expected == 0.0
    for r in result.periods:
        assert r.p10 <= r.p50 <= r.p90
    assert rows["2026-Q2"].p10 == 0.0 and rows["2026-Q2"].p90 == 100.0  # 150 needs both: 0.5 x 0.4 x 0.4
    assert result.by_owner["rep"] == pytest.approx([r.expected for r in result.periods])
    expected = [r.expected for r in result.periods]
    assert result.by_team({"rep": "east"}) == {"east": (pytest.approx(expected), 1)}
    assert result.by_team({}) == {"": (pytest.approx(expected), 1)}  # an owner in no team
    # Commit: b is in negotiation, in full, this quarter; weighted: stage probability x amount.
    assert rows["2026-Q2"].commit == 50.0 and rows["2026-Q3"].commit == 0.0
    probability = stage_probabilities(STAGES)
    assert sum(r.weighted_pipeline for r in result.periods) == pytest.approx(
        100 * probability["discovery"] + 50 * probability["negotiation"]
    )


def test_the_weighted_pipeline_places_deals_at_the_crms_close_date() -> None:
    """At the CRM's expected close date; this period once it has passed; without one, at creation
    plus the median won cycle (here 80 days: T + 70 days, in Q3)."""
    history = [deal(f"h{i}", ["discovery"], created=T - 400 * DAY, closed=T - (400 - life) * DAY) for i, life in
               enumerate([30, 30, 130, 130])]  # fmt: skip
    deals = [
        deal("dated", ["discovery"], created=T - 10 * DAY, close_date=T + 150 * DAY),  # October: Q4
        deal("overdue", ["discovery"], created=T - 10 * DAY, close_date=T - 5 * DAY),
        deal("undated", ["discovery"], created=T - 10 * DAY),
    ]
    result = forecast(deals, [outlook(0.5, 20)] * 3, T, periods_from(T, "quarter", 3), STAGES, [*history, *deals])
    one = stage_probabilities(STAGES)["discovery"]
    assert [r.weighted_pipeline for r in result.periods] == pytest.approx([one, one, one])


def test_close_timing_counts_the_open_deals() -> None:
    """Kaplan-Meier: a deal still open at 200 days keeps a share of the deals from ever closing."""
    lives = [deal(f"c{i}", ["discovery"], created=T - 300 * DAY, closed=T - 300 * DAY + 10 * DAY) for i in range(3)]
    timing = CloseTiming.of([*lives, deal("open", ["discovery"], created=T - 200 * DAY)], T)
    assert timing.closed_by(0.0, np.asarray([5.0, 10.0, 1000.0])) == pytest.approx([0.0, 0.75, 0.75])
    assert timing.closed_by(50.0, np.asarray([1000.0])) == pytest.approx([0.0])  # past every close, still open
    draws = timing.sample_close(0.0, T, np.random.default_rng(0), 4000)
    assert np.isinf(draws).mean() == pytest.approx(0.25, abs=0.03)
    assert set(draws[np.isfinite(draws)]) == {T + 10 * DAY}


def test_what_was_booked() -> None:
    quarters = periods_from(T, "quarter", 2)
    won = deal("w", ["discovery"], closed=quarters[1].start + DAY)
    still_open = deal("o", ["discovery"])
    assert booked([won, still_open], quarters) == [0.0, 1.0]


def test_a_backtest_forecast_reads_nothing_after_its_date(
    small_network: Path, pseudo: Pseudonymizer, tmp_path: Path
) -> None:
    """Rewriting everything after the backtest date (outcomes, later stages, interactions, signals,
    ties, the CRM's close dates) changes what was booked, never the forecasts made at that date."""
    graph = InMemoryGraph(pseudo)
    graph.ingest([r for path in sorted((small_network / "ingest").glob("*.jsonl")) for _, r, _ in read_records(path)])
    scorer = DEAL.load_promoted(untrained_models(tmp_path))  # untrained: any leak would still move its numbers
    data = graph.deal_bundle(ALL_TENANTS)  # the small network's every deal: one tenant's are few
    # The moment with the most open deals among those with a closed history (the close timing's).
    start = max(
        (d.created for d in data.deals if sum(0 <= x.closed <= d.created for x in data.deals) >= 5),
        key=lambda t: len(open_deals(data.deals, t)),
    )

    def rewritten(d: Deal) -> Deal:
        if d.created > start or 0 <= d.closed <= start:
            return d
        later = d.ts > start
        wins = d.deal_id[-1] in "02468"  # half the deals open at the start win the next day, half never close
        return dataclasses.replace(
            d,
            outcome="won" if wins else "open",
            closed=start + DAY if wins else -1,
            close_date=start + DAY,  # a CRM keeps only its latest close date: a backtest never reads it
            stage_names=[*d.stage_names, "negotiation"],
            stage_ts=[*d.stage_ts, start + DAY],
            ts=np.concatenate([d.ts[~later], [start + 2 * DAY]]),
            kind=np.concatenate([d.kind[~later], ["meeting"]]),
            buyer=np.concatenate([d.buyer[~later], d.buyer[:1] if len(d.buyer) else ["someone"]]),
            seller=np.concatenate([d.seller[~later], d.seller[:1] if len(d.seller) else ["rep"]]),
            inbound=np.concatenate([d.inbound[~later], [True]]),
            activity=np.concatenate([d.activity[~later], ["later"]]),
        )

    future = dataclasses.replace(
        data,
        deals=[rewritten(d) for d in data.deals],
        signals={k: [s for s in found if s.ts <= start] for k, found in data.signals.items()},
        ties={k: [(m, times[times <= start]) for m, times in tied] for k, tied in data.ties.items()},
    )
    made, remade = backtest_period(data, scorer, start, "quarter"), backtest_period(future, scorer, start, "quarter")
    assert made.open_deals > 1 and made.expected > 0
    forecasts = ("open_deals", "expected", "p10", "p90", "weighted_pipeline", "commit")
    assert [getattr(made, f) for f in forecasts] == [getattr(remade, f) for f in forecasts]
    assert made.booked != remade.booked
    # The forecast itself reads only what was known at t, even given everything (known_at aside), but
    # the CRM's close dates, which are what the CRM says at t when t is now.
    given_all = forecast_open_deals(data, scorer, start, "quarter", 2)
    as_dated = [dataclasses.replace(f, close_date=d.close_date) for f, d in zip(future.deals, data.deals, strict=True)]
    assert given_all == forecast_open_deals(dataclasses.replace(future, deals=as_dated), scorer, start, "quarter", 2)
