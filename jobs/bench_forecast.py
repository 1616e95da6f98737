"""`relgraph bench forecast`: the forecast backtest on generated networks at several CRM hygiene
levels. Each level's network is generated (only how well reps keep the CRM differs), ingested into a
throwaway Neo4j, and every tenant's forecasts are backtested over the last whole periods before the
generated world's time, each from a deal model trained on what was known then."""

from __future__ import annotations

from typing import Any

from core.config import Config
from graph.neo4j_reader import Neo4jReader
from graph.pseudonymize import Pseudonymizer
from graph.reader import ALL_TENANTS
from jobs.bench_common import generated_graph
from jobs.bench_deals import DEALS_PER_100_PEOPLE
from jobs.forecast import backtest_summary, backtest_tenants
from jobs.generate import AS_OF, GeneratorConfig
from jobs.train_deals import DealSettings


def run_forecast_benchmark(
    config: Config,
    *,
    people: int,
    hygiene: list[float],
    network_key: str,
    settings: DealSettings,
    period: str,
    periods: int,
    seed: int = 7,
) -> dict[str, Any]:
    import ray

    pseudo = Pseudonymizer(network_key)
    levels = []
    for level in hygiene:
        generator = GeneratorConfig(
            people=people, tenants=3, seed=seed, hygiene=level, deals_per_100_people=DEALS_PER_100_PEOPLE
        )
        with generated_graph(config, generator, pseudo) as graph:
            tenants = sorted(t.tenant for t in Neo4jReader(graph.store).tenants(ALL_TENANTS))
            backtests = backtest_tenants(graph.store, tenants, AS_OF, period, periods, settings, progress=True)
        ray.shutdown()
        summary = backtest_summary([r for b in backtests for r in b.rows])
        skipped = backtests[0].skipped if backtests else []
        levels.append({"hygiene": level, **summary, "skipped": skipped, "tenants": [b.to_dict() for b in backtests]})
    return {"people": people, "period": period, "periods": periods, "seed": seed, "levels": levels}


def render_forecast_benchmark(r: dict[str, Any]) -> str:
    lines = [
        f"forecast backtest, {r['people']:,} people, the last {r['periods']} {r['period']}s before the data's time, "
        f"seed {r['seed']}",
        f"{'hygiene':>7} {'periods':>7} {'booked':>10} {'relgraph':>10} {'weighted':>10} {'commit':>10} "
        f"{'rel/wtd':>7} {'p10-p90':>7}",
    ]
    for row in r["levels"]:
        if not row["periods"]:
            lines.append(f"{row['hygiene']:>7.1f} no period could be backtested: {'; '.join(row['skipped'])}")
            continue
        e = row["mean_absolute_error"]
        lines.append(
            f"{row['hygiene']:>7.1f} {row['periods']:>7} {row['mean_booked']:>10,.0f} {e['relgraph']:>10,.0f} "
            f"{e['weighted_pipeline']:>10,.0f} {e['commit']:>10,.0f} {row['relgraph_error_vs_weighted']:>7.2f} "
            f"{row['interval_coverage']:>7.0%}"
        )
    lines.append("(mean absolute error per tenant-period against the bookings of the deals open at its start)")
    return "\n".join(lines)
