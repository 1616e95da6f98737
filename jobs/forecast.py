"""`relgraph forecast`: a tenant's bookings forecast from Neo4j and the promoted deal model, and its
backtest: at the start of each of the last whole periods, a deal model trained only on what was
known then forecasts the deals open then, and each forecast is compared with what they booked."""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.errors import InvalidInputError
from gnn.forecast import BacktestRow, Forecast, backtest_period, forecast_open_deals, known_at, periods_before
from gnn.model_kinds import DEAL
from gnn.registry import ModelRegistry
from graph.neo4j_reader import Neo4jReader
from graph.reader import TenantScope
from graph.store import GraphStore
from jobs.train_deals import DealSettings, train_deal_model
from jobs.trainers import TrainingRequest


def forecast_tenant(
    store: GraphStore, registry: ModelRegistry, tenant: str, as_of: int, period: str, count: int
) -> tuple[Forecast, str, dict[str, str]]:
    """The forecast at `as_of` with the promoted deal model (NoModelError without one), its version,
    and each deal owner's team in the tenant."""
    scorer = DEAL.load_promoted(registry)
    reader, scope = Neo4jReader(store), TenantScope.of(tenant)
    result = forecast_open_deals(reader.deal_bundle(scope), scorer, as_of, period, count)
    teams = {
        person.pid: team
        for person in reader.people_by_pid(sorted(result.by_owner), scope)
        for member_of, team, _, _ in person.memberships
        if member_of == tenant
    }
    return result, f"deal/{scorer.version}", teams


@dataclass(frozen=True)
class Backtest:
    tenant: str
    period: str
    rows: list[BacktestRow]
    skipped: list[str]  # periods left out, with why

    def summary(self) -> dict[str, Any]:
        return backtest_summary(self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "period": self.period,
            "summary": self.summary(),
            "rows": [{**asdict(r), "period": r.period.label, "covered": r.covered} for r in self.rows],
            "skipped": self.skipped,
        }


def backtest_summary(rows: list[BacktestRow]) -> dict[str, Any]:
    """Mean absolute error of each forecast against what was booked, and the interval's coverage."""
    if not rows:
        return {"periods": 0}
    forecasts = {"relgraph": "expected", "weighted_pipeline": "weighted_pipeline", "commit": "commit"}
    error = {
        name: statistics.fmean(abs(getattr(r, field) - r.booked) for r in rows) for name, field in forecasts.items()
    }
    weighted = error["weighted_pipeline"]
    return {
        "periods": len(rows),
        "mean_booked": statistics.fmean(r.booked for r in rows),
        "mean_absolute_error": error,
        "relgraph_error_vs_weighted": error["relgraph"] / weighted if weighted else None,
        "interval_coverage": sum(r.covered for r in rows) / len(rows),
    }


def backtest_tenants(
    store: GraphStore,
    tenants: list[str],
    as_of: int,
    period: str,
    count: int,
    settings: DealSettings,
    progress: bool = False,
) -> list[Backtest]:
    """Each tenant's backtest over the `count` whole periods before the one holding `as_of`. Each
    period's deal model learns from the network's deals known at the period's start (as `relgraph
    train` would have then, tenants that opted out left out), once for every tenant, in a throwaway
    registry."""
    reader = Neo4jReader(store)
    rows: dict[str, list[BacktestRow]] = {t: [] for t in tenants}
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="relgraph-backtest-") as work:
        request = TrainingRequest(reader, ModelRegistry(Path(work) / "models"), Path(work) / "runs", None)
        network = request.deals
        theirs = {t: reader.deal_bundle(TenantScope.of(t)) for t in tenants}
        for past in periods_before(as_of, period, count):
            registry = ModelRegistry(Path(work) / f"models-{past.label}")
            try:
                report = train_deal_model(
                    known_at(network, past.start),
                    settings,
                    as_of=past.start,
                    runs_dir=request.runs_dir,
                    registry=registry,
                    scope={"backtest": past.label},
                    progress=progress,
                )
            except InvalidInputError as exc:  # too few closed deals yet
                skipped.append(f"{past.label}: {exc}")
                continue
            assert report.version is not None
            registry.promote("deal", report.version.name)
            scorer = DEAL.load_promoted(registry)
            for tenant in tenants:
                rows[tenant].append(backtest_period(theirs[tenant], scorer, past.start, period))
    return [Backtest(t, period, rows[t], skipped) for t in tenants]


def _axes() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4))


def plot_forecast(result: Forecast, path: Path) -> None:
    """The three forecasts per period, relgraph's with its p10-p90 interval."""
    fig, ax = _axes()
    x = range(len(result.periods))
    expected = [r.expected for r in result.periods]
    ax.errorbar(
        x,
        expected,
        yerr=[
            [e - r.p10 for e, r in zip(expected, result.periods)],
            [r.p90 - e for e, r in zip(expected, result.periods)],
        ],
        marker="o",
        capsize=4,
        label="relgraph (p10-p90)",
    )
    ax.plot(x, [r.weighted_pipeline for r in result.periods], marker="s", label="CRM-weighted pipeline")
    ax.plot(x, [r.commit for r in result.periods], marker="^", label="commit (negotiation)")
    _finish(ax, fig, [r.period.label for r in result.periods], "expected bookings", path)


def plot_backtest(backtest: Backtest, path: Path) -> None:
    """What was booked in each past period beside the three forecasts made at its start."""
    fig, ax = _axes()
    rows = backtest.rows
    x = range(len(rows))
    ax.fill_between(x, [r.p10 for r in rows], [r.p90 for r in rows], alpha=0.2, label="relgraph p10-p90")
    ax.plot(x, [r.booked for r in rows], color="black", marker="o", label="booked")
    ax.plot(x, [r.expected for r in rows], marker="o", label="relgraph")
    ax.plot(x, [r.weighted_pipeline for r in rows], marker="s", label="CRM-weighted pipeline")
    ax.plot(x, [r.commit for r in rows], marker="^", label="commit")
    _finish(ax, fig, [r.period.label for r in rows], "bookings of the deals open at the period's start", path)


def _finish(ax: Any, fig: Any, labels: list[str], ylabel: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render_backtest(report: dict[str, Any]) -> str:
    s = report["summary"]
    lines = [f"backtest of {report['tenant']}'s {report['period']}ly forecasts over {s['periods']} past periods"]
    if s["periods"]:
        e = s["mean_absolute_error"]
        lines.append(
            f"mean absolute error: relgraph {e['relgraph']:,.0f}, CRM-weighted pipeline {e['weighted_pipeline']:,.0f} "
            f"(relgraph/weighted {s['relgraph_error_vs_weighted']:.2f}), commit {e['commit']:,.0f}; "
            f"p10-p90 covered {s['interval_coverage']:.0%} of periods"
        )
        columns = ("booked", "expected", "p10", "p90", "weighted_pipeline", "commit")
        header = ("booked", "relgraph", "p10", "p90", "weighted", "commit")
        lines.append(f"{'period':<9} {'open':>5} " + " ".join(f"{h:>10}" for h in header))
        for r in report["rows"]:
            values = " ".join(f"{r[c]:>10,.0f}" for c in columns)
            lines.append(f"{r['period']:<9} {r['open_deals']:>5} {values}" + ("" if r["covered"] else "  outside"))
    lines += [f"skipped {line}" for line in report["skipped"]]
    return "\n".join(lines)
