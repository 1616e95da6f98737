"""`relgraph demo`: the main job end to end on one machine. Starts the managed Neo4j (unless
NEO4J_URI points elsewhere), generates a small multi-tenant network, ingests it, prints what was
built (read back from Neo4j), trains the relationship-strength and deal models on a local Ray and
the buyer-process model, evaluates them against their baselines and promotes them through their
gates (a deal model the gate refuses is promoted with the override, and the demo says so), then
starts the gRPC server and prints real answers through a real client: warm paths ranked by the
serving strengths (the link model's where its gate passed, else the heuristic's), deal-stage
estimates, deal signals and a buyer-process prediction."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from core.config import Config
from core.secrets import api_key_pepper
from gnn.buyer_process import CohortMinimum
from gnn.registry import ModelRegistry
from graph.ingest import ingest
from graph.neo4j_reader import Neo4jReader
from graph.neo4j_server import ManagedNeo4j
from graph.operations import deals_by_crm_stage, stats, strongest_ties
from graph.pseudonymize import Pseudonymizer
from graph.schema import current_version, migrate
from graph.store import GraphStore, connect
from jobs.generate import AS_OF, GeneratorConfig, generate
from jobs.promotion import promote_forced, promote_through_gate
from jobs.runner import RunSettings
from jobs.train_deals import DealSettings, GroundTruth
from jobs.trainers import TRAINERS, TrainingRequest
from relgraph.client import ApiError, Client
from relgraph.query import (
    render_buyer_process,
    render_deal_stage,
    render_forecast,
    render_pipeline_health,
    render_proposed_updates,
    render_signals,
    render_warm_paths,
)
from relgraph.v1 import buyer_intelligence_pb2, pipeline_pb2, warm_paths_pb2
from server.app import create_server
from server.auth import create_api_key


def _section(title: str) -> None:
    print(f"\n== {title} ==")


def run_demo(config: Config, *, people: int, tenants: int, seed: int, key: str) -> int:
    _section("Neo4j")
    if config.uses_managed_neo4j:
        status = ManagedNeo4j(config).start()
        print(f"managed Neo4j {status.version} on {status.uri} (loopback only, auth on), home {status.home}")
    else:
        print(f"using NEO4J_URI={config.neo4j.uri}")
    with connect(config) as store:
        migrate(store)
        print(f"schema version {current_version(store)}")

        _section(f"generate: {people} people, {tenants} tenants, seed {seed}")
        out = config.home / "demo"
        shutil.rmtree(out, ignore_errors=True)
        report = generate(GeneratorConfig(people=people, tenants=tenants, seed=seed, deals_per_100_people=20), out)
        print(f"{report.seconds} s into {out}")
        for name, n in report.counts.items():
            print(f"  {name:<26} {n:>8}")

        _section("ingest (pseudonymized at the edge; re-running the demo changes nothing)")
        summary = ingest(store, [out / "ingest"], Pseudonymizer(key), batch_size=config.ingest.batch_size)
        print(
            f"{summary.accepted} records accepted, {summary.rejected} rejected; {summary.nodes_created} nodes and "
            f"{summary.relationships_created} relationships created; {summary.events_added} events added "
            f"({summary.events_already_present} already present); {summary.seconds} s, "
            f"{summary.events_per_s:.0f} events/s"
        )

        _section("graph in Neo4j")
        result = stats(store)
        print("nodes:         " + ", ".join(f"{k} {v}" for k, v in result.nodes.items()))
        print("relationships: " + ", ".join(f"{k} {v}" for k, v in result.relationships.items()))
        for tenant, counts in result.tenants.items():
            print(
                f"  {tenant:<16} members {counts.get('members', 0):>5}, deals {counts.get('Deal', 0):>4}, "
                f"KNOWS {counts.get('KNOWS', 0):>6}, signals {counts.get('Signal', 0):>3}"
            )

        tenant = next(iter(result.tenants))
        _section(f"tenant {tenant}: strongest ties (pseudonymous ids; no email or name is stored)")
        for tie in strongest_ties(store, tenant):
            last = datetime.fromtimestamp(tie["last_ts"], UTC).date()
            print(
                f"  {tie['a'][:10]}… ↔ {tie['b'][:10]}…  {tie['count']:>3} interactions, "
                f"{tie['two_way']:>3} two-way, last {last}"
            )
        _section(f"tenant {tenant}: deals by CRM-reported stage")
        for row in deals_by_crm_stage(store, tenant):
            print(
                f"  {row['outcome']:<5} {row['crm_stage'] or '-':<12} {row['deals']:>4} deals, {row['amount']:>12,.0f}"
            )
        _train_and_promote(config, store, out)
        _serve_and_ask(config, store, out, tenant)
    print("\nGround truth (true stages, outcomes, planted ties and signals) is in", out / "ground_truth")
    print(
        "Run the server yourself: `RELGRAPH_AS_OF=" + str(AS_OF) + " relgraph serve`, make a key with "
        f"`relgraph keys create --tenant {tenant} --role member`, then `relgraph query warm-paths --key KEY "
        "--target-company DOMAIN` or `relgraph query deal-stage --key KEY --deal DEAL`."
    )
    return 0


def _train_and_promote(config: Config, store: GraphStore, out: Path) -> None:
    """Train every model kind on the whole network (Ray, one worker), register each and promote it
    through its gate."""
    registry = ModelRegistry(config.models_dir)
    request = TrainingRequest(
        reader=Neo4jReader(store),
        registry=registry,
        runs_dir=config.runs_dir,
        cache_dir=config.export_cache_dir,
        until=AS_OF,
        deal=DealSettings(run=RunSettings(epochs=30)),
        truth=GroundTruth.load(out / "ingest"),
        cohort_minimum=CohortMinimum(config.server.min_cohort_deals, config.server.min_cohort_tenants),
        progress=True,
        tracking_store=config.tracking_store,
    )
    for kind, title in (
        ("link", "the relationship-strength model (Ray Train, PyG; network-wide, pseudonymous)"),
        ("deal", "the deal model (Ray Train, heterogeneous GNN)"),
        ("buyer", "the buyer-process model (closed deals, minimum cohort)"),
    ):
        _section(f"train {title}")
        trainer = TRAINERS[kind]
        report = trainer.run(request)
        print(trainer.render(report))
        if report.get("tracked"):
            print(f"tracked in MLflow: run {report['tracked']['run_id']} ({report['tracked']['store']})")
        print(promote_through_gate(registry, kind, report["version"]))
        if kind != "link" and registry.promoted_name(kind) != report["version"]:
            # Warm paths fall back to the heuristic; deal answers need a model, so the demo shows the
            # operator's override rather than no answers.
            promote_forced(registry, kind, report["version"])
            print(f"promoted {kind} model {report['version']} with --force for the demo (recorded in its manifest)")


def _serve_and_ask(config: Config, store: GraphStore, out: Path, tenant: str) -> None:
    """Start the gRPC server on a free port and ask it a few questions as `tenant`."""
    key, _ = create_api_key(
        store, api_key_pepper(config, create_local=True), tenant=tenant, role="member", scopes=[], label="demo"
    )
    # Answers are computed at the time the generated world is observed (RELGRAPH_AS_OF).
    server_config = dataclasses.replace(
        config, server=dataclasses.replace(config.server, port=0, metrics_port=0, as_of=AS_OF)
    )
    server, port = create_server(server_config)
    server.start()
    _section(f"gRPC relgraph.v1 on 127.0.0.1:{port} (snapshot: {server.holder.current.snapshot!r})")
    deals = [json.loads(line) for line in (out / "ingest" / "deals.jsonl").read_text().splitlines()]
    open_deals = [d for d in deals if d["tenant"] == tenant and "outcome" not in d]
    ties = [json.loads(line) for line in (out / "ground_truth" / "strong_ties.jsonl").read_text().splitlines()]
    elsewhere = next(t["b"] for t in ties if t["tenant"] != tenant)
    questions = [
        (
            f"economic buyer at {open_deals[0]['account']} (account of open deal {open_deals[0]['id']})",
            warm_paths_pb2.FindWarmPathsRequest(
                target_company=warm_paths_pb2.CompanyTarget(
                    domain=open_deals[0]["account"], role=warm_paths_pb2.RoleFilter(economic_buyer=True)
                ),
                k=3,
                allow_cross_tenant=True,
            ),
        ),
        (
            "VPs and above at the same account, through this tenant's own data only",
            warm_paths_pb2.FindWarmPathsRequest(
                target_company=warm_paths_pb2.CompanyTarget(
                    domain=open_deals[0]["account"],
                    role=warm_paths_pb2.RoleFilter(min_title_level=warm_paths_pb2.TITLE_LEVEL_VP),
                ),
                k=3,
            ),
        ),
        (
            "a person another tenant knows well (connectors outside this tenant are masked)",
            warm_paths_pb2.FindWarmPathsRequest(target_email=elsewhere, k=3, allow_cross_tenant=True),
        ),
    ]
    try:
        with Client(f"127.0.0.1:{port}", key) as client:
            for title, request in questions:
                print(f"\n-- warm paths: {title}")
                print(render_warm_paths(client.find_warm_paths(request)))
            truth = {
                r["deal"]: r for r in map(json.loads, (out / "ground_truth" / "deals.jsonl").read_text().splitlines())
            }
            wrong_crm = next(d["id"] for d in open_deals if not truth[d["id"]]["crm_correct"])
            no_activity = next((d["id"] for d in open_deals if truth[d["id"]]["crm_only"]), open_deals[1]["id"])
            for deal_id in (wrong_crm, no_activity):
                print(f"\n-- deal-stage estimate for {deal_id} (true stage: {truth[deal_id]['true_stage']})")
                print(
                    render_deal_stage(
                        client.estimate_deal_stage(buyer_intelligence_pb2.EstimateDealStageRequest(deal_id=deal_id))
                    )
                )
            planted = [json.loads(line) for line in (out / "ground_truth" / "signals.jsonl").read_text().splitlines()]
            flared = next(p["deal"] for p in planted if p["tenant"] == tenant and p["kind"] == "poll_answer")
            print(f"\n-- signals around deal {flared} (planted: a contract-expiry poll answer by someone not on it)")
            print(
                render_signals(
                    client.list_deal_signals(buyer_intelligence_pb2.ListDealSignalsRequest(deal_id=flared, limit=5))
                )
            )
            account = open_deals[0]["account"]
            print(f"\n-- how buyers like {account} buy (network-wide, minimum cohort enforced)")
            try:
                print(
                    render_buyer_process(
                        client.predict_buyer_process(
                            buyer_intelligence_pb2.PredictBuyerProcessRequest(company_domain=account)
                        )
                    )
                )
            except ApiError as error:
                print(error)
            print(f"\n-- how far {tenant}'s CRM can be trusted (the hygiene audit of its open deals)")
            health = pipeline_pb2.GetPipelineHealthRequest(sample_size=8)
            print(render_pipeline_health(client.get_pipeline_health(health)))
            print(f"\n-- {tenant}'s bookings forecast by team, beside the CRM-weighted pipeline and the commit")
            forecast = pipeline_pb2.ForecastBookingsRequest(periods=3, by_team=True)
            print(render_forecast(client.forecast_bookings(forecast)))
            print(f"\n-- CRM updates the evidence supports, for {tenant}'s reps to approve (never written)")
            proposed = pipeline_pb2.ListProposedUpdatesRequest(limit=6)
            print(render_proposed_updates(client.list_proposed_updates(proposed)))
    finally:
        server.stop()
