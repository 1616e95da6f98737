"""`relgraph bench deals`: the deal model across CRM hygiene levels, and the latency of each
buyer-intelligence RPC through the real server.

The sweep generates the same-sized network at each hygiene level (only how well reps keep the CRM
differs), ingests it into a throwaway Neo4j, trains the deal model and measures it against the
generator's ground truth beside the CRM-reported stage and the gradient-boosted baseline."""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from core.config import Config
from gnn.pipeline_health import DEFAULT_STALE_DAYS
from gnn.registry import ModelRegistry
from graph.deal_bundle import DealBundle
from graph.neo4j_reader import Neo4jReader
from graph.pseudonymize import Pseudonymizer
from graph.reader import ALL_TENANTS
from jobs.bench_common import BenchGraph, free_port, generated_graph
from jobs.generate import AS_OF, GeneratorConfig
from jobs.pipeline import audit_tenant
from jobs.train_buyer import train_buyer_model
from jobs.train_deals import DealSettings, GroundTruth, train_deal_model

DEALS_PER_100_PEOPLE = 20.0


def run_deals_benchmark(
    config: Config,
    *,
    people: int,
    hygiene: list[float],
    network_key: str,
    settings: DealSettings,
    requests: int = 200,
    plot: Path | None = None,
    seed: int = 7,
) -> dict[str, Any]:
    import ray

    pseudo = Pseudonymizer(network_key)
    rows, latency = [], {}
    for i, level in enumerate(hygiene):
        generator = GeneratorConfig(
            people=people, tenants=4, seed=seed, hygiene=level, deals_per_100_people=DEALS_PER_100_PEOPLE
        )
        with generated_graph(config, generator, pseudo) as graph:
            registry = ModelRegistry(graph.config.models_dir)
            data = Neo4jReader(graph.store).deal_bundle(ALL_TENANTS)
            report = train_deal_model(
                data,
                settings,
                as_of=AS_OF,
                runs_dir=graph.config.runs_dir,
                registry=registry,
                scope={"bench": people, "hygiene": level},
                truth=GroundTruth.load(graph.data / "ingest"),
            )
            assert report.version is not None
            registry.promote("deal", report.version.name)
            rows.append({**_sweep_row(level, report.manifest), "hygiene_score": _audit_score(graph, registry, data)})
            if i == len(hygiene) - 1:  # latency through the real server, on the last network
                buyer = train_buyer_model(data, as_of=AS_OF, registry=registry, scope={"bench": people})
                registry.promote("buyer", buyer.name)
                latency = _rpc_latency(graph, data, network_key, requests)
        ray.shutdown()
    if plot is not None:
        plot_sweep(rows, plot)
    levels, scores = [r["hygiene"] for r in rows], [r["hygiene_score"] for r in rows]
    return {
        "people": people,
        "deals_per_100_people": DEALS_PER_100_PEOPLE,
        "seed": seed,
        "sweep": rows,
        # How well the audit's score tracks the generator's hygiene (Pearson, across the levels).
        "hygiene_score_correlation": float(np.corrcoef(levels, scores)[0, 1]) if len(rows) > 1 else None,
        "rpc_latency_ms": latency,
        "plot": str(plot) if plot else None,
    }


def _sweep_row(level: float, manifest: dict[str, Any]) -> dict[str, Any]:
    m = manifest["metrics"]
    open_acc = m.get("stage_open_deals", {}).get("accuracy", {})
    snap_acc = m["stage"].get("accuracy", {})
    return {
        "hygiene": level,
        "open_deals": m.get("stage_open_deals", {}).get("evaluated", 0),
        "stage_accuracy": open_acc.get("model"),
        "gbm_stage_accuracy": open_acc.get("gradient_boosting"),
        "crm_stage_accuracy": open_acc.get("crm_reported"),
        "snapshot_stage_accuracy": snap_acc.get("model"),
        "snapshot_crm_accuracy": snap_acc.get("crm_reported"),
        "win_auc": m["win"]["model"]["auc"],
        "gbm_win_auc": m["win"]["gradient_boosting"]["auc"],
        "win_brier": m["win"]["model"]["brier"],
        "gbm_win_brier": m["win"]["gradient_boosting"]["brier"],
        "days_mae": m["days_to_close"]["mae_days"]["model"],
        "gbm_days_mae": m["days_to_close"]["mae_days"]["gradient_boosting"],
        "train_stage_labels": manifest["sizes"]["train_stage_labels"],
    }


def _audit_score(graph: BenchGraph, registry: ModelRegistry, data: DealBundle) -> float:
    """The hygiene audit's score (`relgraph audit hygiene`) at the generated world's time, averaged
    over the tenants."""
    tenants = sorted({d.tenant for d in data.deals})
    audits = [
        audit_tenant(graph.store, registry, t, AS_OF, stale_days=DEFAULT_STALE_DAYS, sample=0)[0] for t in tenants
    ]
    return statistics.fmean(a.score for a in audits)


def _rpc_latency(graph: BenchGraph, data: DealBundle, network_key: str, requests: int) -> dict[str, dict[str, float]]:
    """p50/p99 milliseconds of each buyer-intelligence RPC over a real channel, sequentially."""
    from relgraph.v1 import buyer_intelligence_pb2 as pb
    from relgraph.v1 import buyer_intelligence_pb2_grpc
    from server.app import create_server
    from server.auth import create_api_key

    tenant = data.deals[0].tenant
    deal_ids = [d.deal_id for d in data.deals if d.tenant == tenant and d.closed < 0][:50] or [
        d.deal_id for d in data.deals if d.tenant == tenant
    ][:50]
    domains = sorted({d.cid for d in data.deals})[:50]
    server_config = dataclasses.replace(
        graph.config,
        network_key=network_key,
        api_key_pepper="bench-pepper-0123456789",
        server=dataclasses.replace(graph.config.server, port=free_port(), metrics_port=0, as_of=AS_OF),
    )
    secret, _ = create_api_key(
        graph.store, "bench-pepper-0123456789", tenant=tenant, role="member", scopes=[], label="bench"
    )
    server, port = create_server(server_config)
    server.start()
    try:
        metadata = (("authorization", f"Bearer {secret}"),)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = buyer_intelligence_pb2_grpc.BuyerIntelligenceServiceStub(channel)
            calls = {
                "EstimateDealStage": lambda i: stub.EstimateDealStage(
                    pb.EstimateDealStageRequest(deal_id=deal_ids[i % len(deal_ids)]), metadata=metadata
                ),
                "ListDealSignals": lambda i: stub.ListDealSignals(
                    pb.ListDealSignalsRequest(deal_id=deal_ids[i % len(deal_ids)]), metadata=metadata
                ),
                "PredictBuyerProcess": lambda i: _buyer_call(stub, domains[i % len(domains)], metadata),
            }
            return {name: _timed(call, requests) for name, call in calls.items()}
    finally:
        server.stop()


def _buyer_call(stub: Any, domain: str, metadata: tuple[tuple[str, str], ...]) -> None:
    from relgraph.v1 import buyer_intelligence_pb2 as pb

    try:
        stub.PredictBuyerProcess(pb.PredictBuyerProcessRequest(company_domain=domain), metadata=metadata)
    except grpc.RpcError as exc:  # a cohort too small is an answer too (FAILED_PRECONDITION)
        if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
            raise


def _timed(call: Any, requests: int) -> dict[str, float]:
    call(0)  # warm-up
    times = []
    for i in range(requests):
        began = time.perf_counter()
        call(i)
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    return {
        "requests": requests,
        "p50_ms": round(statistics.median(times), 2),
        "p99_ms": round(times[min(len(times) - 1, int(0.99 * len(times)))], 2),
    }


def plot_sweep(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["hygiene"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (
        ("stage_accuracy", "deal model (engagement)"),
        ("gbm_stage_accuracy", "gradient boosting"),
        ("crm_stage_accuracy", "CRM-reported stage"),
        ("hygiene_score", "hygiene audit score"),
    ):
        ax.plot(x, [r[key] for r in rows], marker="o", label=label)
    ax.axhline(0.85, color="grey", linestyle="--", linewidth=1, label="target 0.85")
    ax.set_xlabel("CRM hygiene (share of deals whose CRM stage is right and current)")
    ax.set_ylabel("stage accuracy (open deals); audit score")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render_deals_benchmark(r: dict[str, Any]) -> str:
    lines = [
        f"deal model, {r['people']:,} people, {r['deals_per_100_people']:g} deals per 100 people, seed {r['seed']}",
        f"{'hygiene':>7} {'open':>5} {'stage':>6} {'GBM':>6} {'CRM':>6} {'win AUC':>8} {'GBM AUC':>8} "
        f"{'Brier':>6} {'GBM Br':>6} {'MAE d':>6} {'audit':>6}",
    ]
    for row in r["sweep"]:
        lines.append(
            f"{row['hygiene']:>7.1f} {row['open_deals']:>5} {row['stage_accuracy']:>6.3f} "
            f"{row['gbm_stage_accuracy']:>6.3f} {row['crm_stage_accuracy']:>6.3f} {row['win_auc']:>8.4f} "
            f"{row['gbm_win_auc']:>8.4f} {row['win_brier']:>6.4f} {row['gbm_win_brier']:>6.4f} "
            f"{row['days_mae']:>6.1f} {row['hygiene_score']:>6.3f}"
        )
    if r.get("hygiene_score_correlation") is not None:
        lines.append(f"audit score against generator hygiene: Pearson r = {r['hygiene_score_correlation']:.3f}")
    for name, t in r["rpc_latency_ms"].items():
        lines.append(f"{name}: p50 {t['p50_ms']:.1f} ms, p99 {t['p99_ms']:.1f} ms ({t['requests']} requests)")
    if r.get("plot"):
        lines.append(f"plot: {r['plot']}")
    return "\n".join(lines)
