"""The deal and buyer-process models end to end on real parts: deals read from the real Neo4j, the
deal model trained on a real local Ray, the registry on disk, and the buyer-intelligence RPCs
answered by the real server over a real channel."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

from core.config import Config
from gnn.deal_scoring import DealScorer
from gnn.model_kinds import BUYER, DEAL
from gnn.registry import ModelRegistry
from graph.deal_bundle import DealBundle
from graph.ingest import ingest
from graph.neo4j_reader import Neo4jReader
from graph.pseudonymize import Pseudonymizer
from graph.reader import ALL_TENANTS
from graph.schema import migrate
from graph.store import GraphStore, Query, connect
from jobs.generate import AS_OF, GeneratorConfig, generate
from jobs.promotion import PROMOTED
from jobs.runner import RunSettings
from jobs.train_buyer import train_buyer_model
from jobs.train_deals import DealReport, DealSettings, GroundTruth, train_deal_model
from jobs.trainers import TRAINERS
from relgraph.client import Client
from relgraph.v1 import buyer_intelligence_pb2 as pb
from server.app import RelgraphServer, create_server
from server.auth import create_api_key

pytestmark = pytest.mark.neo4j
PEPPER = "test-pepper-0123456789"


@dataclass
class Trained:
    store: GraphStore
    data: DealBundle
    network: Path
    home: Path
    registry: ModelRegistry
    report: DealReport
    truth: list[dict]


@pytest.fixture(scope="module")
def trained(neo4j_config: Config, pseudo: Pseudonymizer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    network = tmp_path_factory.mktemp("deal-network")
    generate(GeneratorConfig(people=3000, tenants=4, seed=11, hygiene=0.4, deals_per_100_people=20), network)
    with connect(neo4j_config) as store:
        migrate(store)
        store.write(Query("test.clear", "MATCH (n) WHERE NOT n:SchemaMigration DETACH DELETE n"))
        ingest(store, [network / "ingest"], pseudo, progress=False)
        home = tmp_path_factory.mktemp("deal-home")
        registry = ModelRegistry(home / "models")
        data = Neo4jReader(store).deal_bundle(ALL_TENANTS)
        report = train_deal_model(
            data,
            DealSettings(run=RunSettings(epochs=30, hidden=32)),
            as_of=AS_OF,
            runs_dir=home / "runs",
            registry=registry,
            scope={"test": True},
            truth=GroundTruth.load(network / "ingest"),
        )
        assert report.version is not None
        registry.promote("deal", report.version.name)
        registry.promote("buyer", train_buyer_model(data, as_of=AS_OF, registry=registry, scope={"test": True}).name)
        truth = [json.loads(line) for line in (network / "ground_truth" / "deals.jsonl").read_text().splitlines()]
        yield Trained(store, data, network, home, registry, report, truth)


@dataclass
class Served:
    server: RelgraphServer
    port: int
    tenant: str
    key: str

    def client(self, key: str | None = None) -> Client:
        return Client(f"127.0.0.1:{self.port}", key or self.key)


def _serve(trained: Trained, neo4j_config: Config, **server_settings: object) -> Served:
    config = dataclasses.replace(
        neo4j_config,
        home=trained.home,
        api_key_pepper=PEPPER,
        server=dataclasses.replace(
            neo4j_config.server, port=0, metrics_port=0, as_of=AS_OF, refresh_interval_s=3600, **server_settings
        ),
    )
    tenant = trained.data.deals[0].tenant
    key = create_api_key(trained.store, PEPPER, tenant=tenant, role="member", scopes=[])[0]
    server, port = create_server(config, store=connect(neo4j_config))
    server.start()
    return Served(server, port, tenant, key)


@pytest.fixture(scope="module")
def served(trained: Trained, neo4j_config: Config) -> Iterator[Served]:
    s = _serve(trained, neo4j_config)
    try:
        yield s
    finally:
        s.server.stop()


def test_deal_export_matches_neo4j(trained: Trained) -> None:
    rows = trained.store.read(
        Query(
            "test.deals",
            """
        MATCH (d:Deal)
        OPTIONAL MATCH (a:Interaction)-[:ON]->(d)
        WITH d, count(a) AS interactions
        RETURN d.tenant_id AS tenant, d.deal_id AS deal, interactions,
               COUNT { (:Person)-[:ON_DEAL]->(d) } AS contacts""",
        )
    )
    assert len(rows) == len(trained.data.deals) == len(trained.truth)
    by_key = {(d.tenant, d.deal_id): d for d in trained.data.deals}
    for row in rows:
        deal = by_key[(row["tenant"], row["deal"])]
        assert deal.ts.size == row["interactions"] and len(deal.contacts) == row["contacts"]
        assert list(deal.ts) == sorted(deal.ts)


def test_report_has_every_baseline_and_calibration_within_tolerance(trained: Trained) -> None:
    m = trained.report.manifest
    win = m["metrics"]["win"]
    assert set(win) == {"snapshots", "won_share", "model", "gradient_boosting", "no_skill"}
    assert win["model"]["brier"] < win["no_skill"]["brier"] and win["model"]["auc"] > 0.5
    assert m["metrics"]["stage"]["source"] == "ground truth" and m["metrics"]["warnings"] == []
    accuracy = m["metrics"]["stage_open_deals"]["accuracy"]
    assert set(accuracy) == {"model", "gradient_boosting", "majority_stage", "crm_reported"}
    assert accuracy["model"] > accuracy["majority_stage"]
    assert m["calibration"]["ece"] < 0.1  # calibrated win probability on the held-out (later) deals
    version = trained.registry.version("deal", trained.report.version.name)  # type: ignore[union-attr]
    plots = ("reliability.png", "curves.png", "stage_confusion.png", "interval_coverage.png")
    for artifact in ("model.pt", "manifest.json", "card.md", *plots):
        assert (version.path / artifact).is_file()
    rendered = TRAINERS["deal"].render(trained.report.to_dict())
    assert "no_skill" in rendered and "promotion gate: " in rendered
    # Reading engagement beats reading the CRM where reps keep it badly (hygiene 0.4).
    stage = m["metrics"]["stage"]["accuracy"]
    assert stage["model"] > stage["crm_reported"] + 0.1


def test_a_new_version_is_scored_beside_the_serving_one_on_its_own_split(trained: Trained, tmp_path: Path) -> None:
    """The serving version, scored on the new run's test split (the same data and time here), gives
    the numbers its own report gave; the gate's verdict names it."""
    report = train_deal_model(
        trained.data,
        DealSettings(run=RunSettings(epochs=2, hidden=16)),
        as_of=AS_OF,
        runs_dir=tmp_path,
        registry=trained.registry,
        scope={"test": True},
        truth=GroundTruth.load(trained.network / "ingest"),
    )
    mine, served = report.manifest["metrics"], trained.report.manifest["metrics"]
    assert mine["win"][PROMOTED]["auc"] == pytest.approx(served["win"]["model"]["auc"], abs=1e-6)
    assert mine["stage_open_deals"]["accuracy"][PROMOTED] == served["stage_open_deals"]["accuracy"]["model"]
    gate = report.manifest["promotion_gate"]
    assert gate["incumbent"]["version"] == trained.report.version.name  # type: ignore[union-attr]
    assert trained.registry.promoted_name("deal") == trained.report.version.name  # type: ignore[union-attr]


def test_served_estimate_matches_the_offline_prediction(trained: Trained, served: Served) -> None:
    version, state = trained.registry.promoted("deal", DEAL.schema_hash)
    scorer = DealScorer(state, version.name)
    open_deals = [d for d in trained.data.deals if d.tenant == served.tenant and d.closed < 0][:5]
    assert open_deals
    with served.client() as client:
        for deal in open_deals:
            answer = client.call(
                client.buyer_intelligence.EstimateDealStage, pb.EstimateDealStageRequest(deal_id=deal.deal_id)
            )
            offline = scorer.estimate(trained.data, deal, AS_OF)
            assert answer.model_version == f"deal/{version.name}"
            assert answer.win_probability == pytest.approx(offline.win_probability, abs=1e-5)
            assert {s.stage: s.probability for s in answer.stages} == pytest.approx(offline.stages, abs=1e-5)
            assert sum(s.probability for s in answer.stages) == pytest.approx(1.0, abs=1e-5)
            assert answer.crm_stage == offline.crm_stage
            assert answer.disagrees_with_crm == (answer.crm_stage != answer.estimated_stage)
            assert bool(answer.suggested_stage) == answer.disagrees_with_crm
            assert answer.close_p10.seconds <= answer.expected_close.seconds <= answer.close_p90.seconds
            assert answer.evidence


def test_a_deal_without_interactions_gets_a_wide_honest_answer(trained: Trained, served: Served) -> None:
    crm_only = {r["deal"] for r in trained.truth if r["crm_only"] and r["open"] and r["tenant"] == served.tenant}
    engaged = [d.deal_id for d in trained.data.deals if d.tenant == served.tenant and d.closed < 0 and d.ts.size][:20]
    assert crm_only and engaged
    with served.client() as client:

        def width(deal_id: str) -> tuple[float, pb.EstimateDealStageResponse]:
            """The p10-p90 interval of days to close, on the log scale the model predicts on."""
            r = client.call(client.buyer_intelligence.EstimateDealStage, pb.EstimateDealStageRequest(deal_id=deal_id))
            days = [max(0.0, (ts.seconds - AS_OF) / 86400) for ts in (r.close_p10, r.close_p90)]
            return float(np.log1p(days[1]) - np.log1p(days[0])), r

        bare_width, bare = width(sorted(crm_only)[0])
        assert any("no interactions recorded" in m for m in bare.missing_evidence)
        typical = float(np.median([width(d)[0] for d in engaged]))
        assert bare_width > typical
        assert 0.0 < bare.win_probability < 1.0 and len(bare.stages) == 4


def test_planted_signals_rank_first(trained: Trained, served: Served) -> None:
    planted: dict[str, set[str]] = {}
    for line in (trained.network / "ground_truth" / "signals.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["tenant"] == served.tenant:
            planted.setdefault(row["deal"], set()).add(row["kind"])
    with_poll = [deal for deal, kinds in planted.items() if "poll_answer" in kinds]
    assert with_poll
    with served.client() as client:
        for deal in with_poll:
            answer = client.call(client.buyer_intelligence.ListDealSignals, pb.ListDealSignalsRequest(deal_id=deal))
            kinds = [s.kind for s in answer.signals]
            assert kinds[0] in planted[deal], (deal, kinds)
            poll = next(i for i, s in enumerate(answer.signals) if s.topic == "contract_expiry")
            unplanted = [
                i for i, s in enumerate(answer.signals) if s.kind not in planted[deal] and s.kind != "went_silent"
            ]
            assert all(poll < i for i in unplanted)
            assert "not on the deal" in answer.signals[poll].why and answer.signals[poll].who.identified
            assert all(0.0 <= s.relevance <= 1.0 for s in answer.signals)


def test_cohort_threshold_refuses_just_under_and_serves_just_over(trained: Trained, neo4j_config: Config) -> None:
    """An explicit cohort is answered only when its deals (and those with a stage history) number at
    least k from at least m tenants."""
    _version, state = trained.registry.promoted("buyer", BUYER.schema_hash)
    facts = state["facts"]
    counts: dict[tuple[str, str], list[int]] = {}
    for industry, band, tenant, stages in zip(
        facts["industry"], facts["size_band"], facts["tenant"], facts["stage_days"]
    ):
        counts.setdefault((industry, band), []).append(tenant if stages else -1)
    (industry, band), tenants = max(counts.items(), key=lambda kv: sum(t >= 0 for t in kv[1]))
    with_history = sum(t >= 0 for t in tenants)
    request = pb.PredictBuyerProcessRequest(cohort=pb.Cohort(industry=industry, size_band=band))
    for k, served_ok in ((with_history, True), (with_history + 1, False)):
        s = _serve(trained, neo4j_config, min_cohort_deals=k, min_cohort_tenants=2)
        try:
            with s.client() as client:
                if served_ok:
                    answer = client.call(client.buyer_intelligence.PredictBuyerProcess, request)
                    assert answer.cohort_deals == len(tenants) and not answer.rolled_up
                    assert [st.stage for st in answer.stages] == ["discovery", "evaluation", "proposal", "negotiation"]
                    assert all(st.days.p10 <= st.days.p50 <= st.days.p90 for st in answer.stages)
                else:
                    with pytest.raises(grpc.RpcError) as refused:
                        client.call(client.buyer_intelligence.PredictBuyerProcess, request)
                    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                    assert f"{len(tenants)} closed deals" in refused.value.details()
        finally:
            s.server.stop()


def test_company_request_rolls_up_and_says_so(trained: Trained, served: Served) -> None:
    deal = next(d for d in trained.data.deals if d.tenant == served.tenant)
    with served.client() as client:
        answer = client.call(
            client.buyer_intelligence.PredictBuyerProcess,
            pb.PredictBuyerProcessRequest(
                company_domain=deal.cid, profile=pb.DealProfile(amount=deal.amount, engaged_roles=["economic_buyer"])
            ),
        )
    assert answer.cohort_deals >= 10 and answer.cohort_tenants >= 3
    assert answer.rolled_up  # amount band narrows a cohort of a few hundred deals too far
    assert answer.expected_close.seconds > AS_OF and answer.model_version == "buyer/v0001"
    for driver in answer.drivers:
        assert driver.description and -1.0 <= driver.effect_win_probability <= 1.0


def test_bad_requests_and_partner_keys_are_refused(trained: Trained, served: Served) -> None:
    partner = create_api_key(trained.store, PEPPER, tenant=served.tenant, role="partner", scopes=[])[0]
    served.server.keys.reload()  # stored by another process: the server would see it at its next re-read
    with served.client(partner) as client:
        with pytest.raises(grpc.RpcError) as denied:
            client.call(client.buyer_intelligence.EstimateDealStage, pb.EstimateDealStageRequest(deal_id="D0000001"))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    other_tenant_deal = next(d.deal_id for d in trained.data.deals if d.tenant != served.tenant)
    cases = [
        (
            lambda c: c.buyer_intelligence.EstimateDealStage,
            pb.EstimateDealStageRequest(),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda c: c.buyer_intelligence.EstimateDealStage,
            pb.EstimateDealStageRequest(deal_id=other_tenant_deal),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            lambda c: c.buyer_intelligence.ListDealSignals,
            pb.ListDealSignalsRequest(deal_id="x", limit=101),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda c: c.buyer_intelligence.PredictBuyerProcess,
            pb.PredictBuyerProcessRequest(company_domain="unknown-company.example"),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            lambda c: c.buyer_intelligence.PredictBuyerProcess,
            pb.PredictBuyerProcessRequest(
                cohort=pb.Cohort(industry="fintech"), profile=pb.DealProfile(engaged_roles=["boss"])
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ]
    with served.client() as client:
        for method, request, code in cases:
            with pytest.raises(grpc.RpcError) as failed:
                client.call(method(client), request)
            assert failed.value.code() == code, request


def test_query_commands(trained: Trained, served: Served, cli_env: dict[str, str]) -> None:
    deal = next(d for d in trained.data.deals if d.tenant == served.tenant and d.closed < 0)
    env = {**cli_env, "RELGRAPH_SERVER": f"127.0.0.1:{served.port}", "RELGRAPH_KEY": served.key}

    def relgraph(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["relgraph", "query", *args], env=env, capture_output=True, text=True, timeout=60)

    stage = relgraph("deal-stage", "--deal", deal.deal_id, "--json")
    assert stage.returncode == 0, stage.stderr
    assert json.loads(stage.stdout)["crm_stage"] == deal.crm_stage_at(AS_OF)
    signals = relgraph("signals", "--deal", deal.deal_id)
    assert signals.returncode == 0 and "ranked by signal-rules-v1" in signals.stdout
    process = relgraph("buyer-process", "--company", deal.cid)
    assert process.returncode == 0 and "p50" in process.stdout, process.stderr
    missing = relgraph("deal-stage", "--deal", "NO-SUCH-DEAL")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


def test_evaluate_deals_on_a_crm_export_without_interactions(
    trained: Trained, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """A CRM export: deals only (account, owner, amount, dates, stage history), no activity at all,
    with one impossible record and stage codes no record follows: the bad record is left out
    (--no-strict) and counted first, and win and days are evaluated without a stage head."""
    export = tmp_path / "crm"
    export.mkdir()
    deals = (trained.network / "ingest" / "deals.jsonl").read_text().splitlines()
    impossible = {**json.loads(deals[0]), "id": "D-IMPOSSIBLE", "created": "2026-03-01", "closed": "2026-02-01"}
    impossible["outcome"] = "lost"
    (export / "deals.jsonl").write_text("\n".join([*deals, json.dumps(impossible)]) + "\n")
    command = ["relgraph", "evaluate", "deals", "--dataset", str(export), "--epochs", "5", "--json"]
    plots = tmp_path / "plots"
    run = subprocess.run(
        [*command, "--no-strict", "--stages", "qualify,close", "--out", str(plots)],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"{len(deals)} accepted, 1 rejected" in run.stderr and "'closed' is before 'created'" in run.stderr
    report = json.loads(run.stdout)
    assert "stage head skipped" in report["metrics"]["stage"]["skipped"]
    win = report["metrics"]["win"]
    assert 0.0 <= win["model"]["auc"] <= 1.0 and win["no_skill"]["auc"] == 0.5
    assert report["metrics"]["days_to_close"]["mae_days"]["model"] > 0
    assert report["version"] is None
    # No stage confusion without a stage head.
    assert sorted(p.name for p in plots.iterdir()) == ["curves.png", "interval_coverage.png", "reliability.png"]
