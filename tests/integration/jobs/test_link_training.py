"""The link model end to end on real parts: export from the real Neo4j, training on a real local
Ray (2 workers, DDP), the registry on disk, the server picking up a promotion over a real channel,
and the `relgraph` commands."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from mlflow.tracking import MlflowClient

from core.config import Config
from gnn.features import graph_at
from gnn.model_kinds import LINK
from gnn.registry import ModelRegistry
from graph.export_cache import cached_interaction_log
from graph.ingest import ingest
from graph.interaction_log import ExportScope, InteractionLog
from graph.neo4j_reader import Neo4jReader
from graph.pseudonymize import Pseudonymizer
from graph.reader import ALL_TENANTS, TenantScope
from graph.schema import migrate
from graph.store import GraphStore, Query, connect
from graph.tenancy import set_sharing
from jobs.promotion import PROMOTED
from jobs.runner import RunSettings
from jobs.train_link import LinkSettings, TrainReport, train_link_model
from jobs.trainers import TRAINERS
from relgraph.client import Client
from relgraph.v1 import admin_pb2, warm_paths_pb2
from server.app import create_server
from server.auth import create_api_key

pytestmark = pytest.mark.neo4j
FAST = {"epochs": 2, "batch_size": 128, "hidden": 16}
MODEL_NAME = "link"
NETWORK = ExportScope(tenants=ALL_TENANTS)


def _settings(**run: int) -> LinkSettings:
    return LinkSettings(run=RunSettings(**{**FAST, **run}))


@dataclass
class Trained:
    store: GraphStore
    log: InteractionLog
    home: Path  # a relgraph home whose models/ holds the run
    registry: ModelRegistry
    report: TrainReport
    network: Path


@pytest.fixture(scope="module")
def trained(
    neo4j_config: Config, small_network: Path, pseudo: Pseudonymizer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Trained]:
    with connect(neo4j_config) as store:
        migrate(store)
        store.write(Query("test.clear", "MATCH (n) WHERE NOT n:SchemaMigration DETACH DELETE n"))
        ingest(store, [small_network / "ingest"], pseudo, progress=False)
        home = tmp_path_factory.mktemp("home")
        log = cached_interaction_log(Neo4jReader(store), NETWORK, home / "cache")
        registry = ModelRegistry(home / "models")
        report = train_link_model(
            log, _settings(workers=2), runs_dir=home / "runs", registry=registry, scope=NETWORK.to_dict()
        )
        yield Trained(store, log, home, registry, report, small_network)


def test_export_matches_neo4j(trained: Trained) -> None:
    rows = trained.store.read(
        Query(
            "test.knows",
            """
        MATCH (a:Person)-[k:KNOWS]->(b:Person)
        RETURN a.pid AS lo, b.pid AS hi, k.tenant_id AS tenant, k.events AS events, k.count AS count,
               k.two_way AS two_way, k.last_ts AS last_ts""",
        )
    )
    distinct = {(r["lo"], r["hi"], code) for r in rows for code in r["events"]}
    assert trained.log.interactions == len(distinct)
    people = trained.store.read(
        Query(
            "test.people",
            """
        MATCH (p:Person) WHERE (p)-[:KNOWS]-() OR (p)-[:WORKED_AT]->() RETURN count(p) AS n""",
        )
    )[0]["n"]
    assert trained.log.people == people
    # Per-pair evidence equals what Neo4j holds, for pairs only one tenant logged.
    by_pair: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        by_pair.setdefault((r["lo"], r["hi"]), []).append(r)
    graph = graph_at(trained.log, int(trained.log.ts[-1]) + 1)
    single = [rs[0] for rs in by_pair.values() if len(rs) == 1][:200]
    u = np.searchsorted(trained.log.pids, np.array([r["lo"] for r in single], dtype="S32"))
    v = np.searchsorted(trained.log.pids, np.array([r["hi"] for r in single], dtype="S32"))
    pos, found = graph.lookup(u * graph.n + v)
    assert found.all()
    assert graph.count[pos].tolist() == [r["count"] for r in single]
    assert graph.one_way_min[pos].tolist() == [r["two_way"] for r in single]
    assert graph.last_ts[pos].tolist() == [r["last_ts"] for r in single]


def test_export_is_cached_scoped_and_respects_opt_outs(trained: Trained, tmp_path: Path) -> None:
    reader = Neo4jReader(trained.store)
    first = cached_interaction_log(reader, NETWORK, tmp_path)
    cached = list(tmp_path.iterdir())
    again = cached_interaction_log(reader, NETWORK, tmp_path)
    assert list(tmp_path.iterdir()) == cached and np.array_equal(first.ts, again.ts)

    tenant = str(first.tenants[0])
    own = reader.interaction_log(ExportScope(tenants=TenantScope.of(tenant)))
    assert own.tenants.tolist() == [tenant] and 0 < own.interactions < first.interactions
    middle = int(first.ts[first.interactions // 2])
    window = reader.interaction_log(ExportScope(tenants=ALL_TENANTS, start=middle))
    assert window.ts.min() >= middle and window.interactions < first.interactions

    set_sharing(trained.store, tenant, network_opt_out=True)
    try:
        network = cached_interaction_log(reader, NETWORK, tmp_path)
        assert tenant not in network.tenants.tolist()
        exports = list(tmp_path.iterdir())  # the graph changed: a new export, and the stale one went
        assert len(exports) == len(cached) and exports != cached
    finally:
        set_sharing(trained.store, tenant, network_opt_out=False)


def test_two_worker_run_writes_a_complete_loadable_artifact(trained: Trained) -> None:
    version = trained.report.version
    assert version is not None and version.name == "v0001"
    for name in ("model.pt", "manifest.json", "card.md", "reliability.png", "curves.png"):
        assert (version.path / name).stat().st_size > 0, name
    manifest = json.loads((version.path / "manifest.json").read_text())
    assert manifest["hyperparameters"]["workers"] == 2 and len(manifest["history"]) == 2
    assert set(manifest["metrics"]) == {
        "model",
        "edgebank",
        "recency_weighted_count",
        "adamic_adar",
        "common_neighbors",
    }
    split = manifest["data_window"]
    assert split["train_cutoff"] < split["test_cutoff"] < split["end"]
    assert "MRR" in (version.path / "card.md").read_text()
    assert "promotion gate: " in TRAINERS["link"].render(trained.report.to_dict())
    trained.registry.promote(MODEL_NAME, "v0001")
    _, state = trained.registry.promoted(MODEL_NAME, LINK.schema_hash)
    assert set(state) == {"config", "weights", "platt"}


def test_one_worker_runs_are_deterministic_and_resume_from_their_checkpoint(trained: Trained, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    settings = _settings(workers=1, seed=3, epochs=1)
    reports = [
        train_link_model(trained.log, settings, runs_dir=tmp_path / "runs", registry=registry, scope={})
        for _ in range(2)
    ]
    weights = [torch.load(r.version.path / "model.pt", weights_only=True)["weights"] for r in reports if r.version]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])

    # Once one serves, the next run scores it on its own test queries: the same model, the same numbers.
    registry.promote(MODEL_NAME, reports[0].version.name)  # type: ignore[union-attr]
    again = train_link_model(trained.log, settings, runs_dir=tmp_path / "runs", registry=registry, scope={})
    assert again.manifest["metrics"][PROMOTED] == again.manifest["metrics"]["model"]
    assert again.manifest["promotion_gate"]["incumbent"] == {"version": "v0001", "scored": True, "why_not": ""}

    # An interrupted run (no DONE marker) continues from its last checkpoint: epoch 1 is not redone.
    (tmp_path / "runs" / reports[1].run / "DONE").unlink()
    resumed = train_link_model(
        trained.log,
        _settings(workers=1, seed=3, epochs=2),
        runs_dir=tmp_path / "runs",
        registry=None,
        scope={},
        resume=True,
    )
    assert resumed.run == reports[1].run
    assert resumed.manifest["history"][0] == reports[1].manifest["history"][0]
    assert len(resumed.manifest["history"]) == 2


def test_a_killed_training_worker_restarts_from_its_last_checkpoint(trained: Trained, tmp_path: Path) -> None:
    """Ray Train's worker is killed (SIGKILL) mid-run: Ray starts a new one, which continues from the
    last checkpoint Ray Train had taken in (it collects them at its health checks, every 2 s), so
    epoch 1 is never trained again, and the run finishes."""
    runs, epochs = tmp_path / "runs", 12
    killed_at: list[int] = []  # how many epochs had finished when the worker was killed

    def finished() -> list[int]:
        return [json.loads(line)["epoch"] for p in runs.glob("*/epochs.jsonl") for line in p.read_text().splitlines()]

    def kill_the_worker() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and len(finished()) < 2:
            time.sleep(0.02)
        time.sleep(2.5)  # past a health check: the checkpoints so far are Ray Train's
        for process in psutil.process_iter(["cmdline"]):
            if "RayTrainWorker" in " ".join(process.info["cmdline"] or ()):
                killed_at.append(len(finished()))
                process.kill()

    killer = threading.Thread(target=kill_the_worker, daemon=True)
    killer.start()
    report = train_link_model(
        trained.log,
        _settings(workers=1, epochs=epochs, batch_size=32, max_failures=1),
        runs_dir=runs,
        registry=None,
        scope={},
    )
    killer.join(timeout=1)
    assert killed_at and killed_at[0] < epochs, killed_at  # killed mid-run: finishing needed a new worker
    done = finished()
    assert done.count(1) == 1 and set(done) == set(range(1, epochs + 1)), done
    assert [h["epoch"] for h in report.manifest["history"]] == list(range(1, epochs + 1))


def test_server_serves_the_promoted_model_and_refuses_another_schema(trained: Trained, neo4j_config: Config) -> None:
    trained.registry.promote(MODEL_NAME, "v0001")
    pepper = "test-pepper-0123456789"
    tenant = str(trained.log.tenants[0])
    key = create_api_key(trained.store, pepper, tenant=tenant, role="admin", scopes=[])[0]
    config = dataclasses.replace(
        neo4j_config,
        home=trained.home,
        api_key_pepper=pepper,
        server=dataclasses.replace(neo4j_config.server, port=0, metrics_port=0, refresh_interval_s=3600),
    )
    server, port = create_server(config, store=connect(neo4j_config))
    server.start()
    try:
        client = Client(f"127.0.0.1:{port}", key)
        snap = server.holder.current.snapshot
        assert snap.strength_source == "link-model-v0001" and snap.edge_strength is not None
        assert float(snap.edge_strength.min()) >= 0.0 and float(snap.edge_strength.max()) <= 1.0
        answered = 0
        for line in (trained.network / "ingest" / "deal_contacts.jsonl").read_text().splitlines():
            contact = json.loads(line)
            if contact["tenant"] != tenant:
                continue
            response = client.call(
                client.warm_paths.FindWarmPaths,
                warm_paths_pb2.FindWarmPathsRequest(target_email=contact["email"], k=5, max_hops=2),
            )
            assert response.strength_source == "link-model-v0001"
            for path in response.paths:
                product = float(np.prod([hop.evidence.strength for hop in path.hops]))
                assert path.strength == pytest.approx(product, rel=1e-5)
            answered += bool(response.paths)
        assert answered > 0
        listed = client.call(client.admin.ListModelVersions, admin_pb2.ListModelVersionsRequest())
        assert [(v.version, v.promoted) for v in listed.versions] == [("v0001", True)]

        manifest = {**trained.report.manifest, "schema_hash": "another-feature-schema"}
        other = trained.registry.write(MODEL_NAME, manifest, {}, lambda folder: None)
        trained.registry.promote(MODEL_NAME, other.name)
        server.holder.refresh()
        assert server.holder.current.snapshot.strength_source == "link-model-v0001"  # refused: the old one serves
    finally:
        server.stop()
        trained.registry.promote(MODEL_NAME, "v0001")


def test_models_commands(trained: Trained, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "RELGRAPH_HOME": str(trained.home)}

    def relgraph(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["relgraph", *args], env=env, capture_output=True, text=True, timeout=120)

    listed = relgraph("models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert next(v["version"] for v in json.loads(listed.stdout)) == "v0001"
    shown = relgraph("models", "show", "v0001")
    assert shown.returncode == 0 and "Link model" in shown.stdout and "recency_weighted_count" in shown.stdout
    missing = relgraph("models", "promote", "v0099")
    assert missing.returncode == 1 and "no link model version 'v0099'" in missing.stderr
    gate = trained.registry.version(MODEL_NAME, "v0001").manifest["promotion_gate"]
    assert set(gate) == {"passed", "reasons", "incumbent"} and gate["reasons"]
    try:  # the verdict each way: a refused version is promoted only by the override, which is recorded
        trained.registry.amend(MODEL_NAME, "v0001", promotion_gate={**gate, "passed": True, "reasons": ["fine"]})
        promoted = relgraph("models", "promote", "v0001")
        assert promoted.returncode == 0, promoted.stderr
        trained.registry.amend(MODEL_NAME, "v0001", promotion_gate={**gate, "passed": False, "reasons": ["worse"]})
        refused = relgraph("models", "promote", "v0001")
        assert refused.returncode == 1 and "did not pass the promotion gate (worse)" in refused.stderr
        assert "forced_promotions" not in trained.registry.version(MODEL_NAME, "v0001").manifest
        forced = relgraph("models", "promote", "v0001", "--force")
        assert forced.returncode == 0, forced.stderr
        assert trained.registry.version(MODEL_NAME, "v0001").manifest["forced_promotions"]
    finally:
        trained.registry.amend(MODEL_NAME, "v0001", promotion_gate=gate)


def test_export_command_writes_hetero_data(trained: Trained, cli_env: dict[str, str], tmp_path: Path) -> None:
    at = int(trained.log.ts[-1]) + 1
    run = subprocess.run(
        ["relgraph", "export", "graph", "--out", str(tmp_path / "g.pt"), "--at", str(at), "--json"],
        env={**cli_env, "RELGRAPH_HOME": str(trained.home)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    saved = torch.load(tmp_path / "g.pt", weights_only=False)
    data = saved["data"]
    pairs = trained.store.read(
        Query("test.pairs", "MATCH (a:Person)-[:KNOWS]->(b:Person) RETURN count(DISTINCT [a.pid, b.pid]) AS n")
    )[0]["n"]
    jobs = trained.store.read(
        Query("test.jobs", "MATCH (p:Person)-[:WORKED_AT]->(c:Company) RETURN count(DISTINCT [p.pid, c.cid]) AS n")
    )[0]["n"]
    assert data["person"].x.shape[0] == len(saved["pids"]) == trained.log.people
    assert data["person", "knows", "person"].edge_index.shape[1] == 2 * pairs
    assert data["person", "knows", "person"].edge_attr.shape[0] == 2 * pairs
    assert data["person", "worked_at", "company"].edge_index.shape[1] == jobs


def test_evaluate_ranks_planted_strong_ties_first(cli_env: dict[str, str], tmp_path: Path) -> None:
    """A dataset in the public ingest format: sparse one-way noise, plus pairs that email each
    other every few days. The evaluation must rank those ties first, and report the baselines."""
    rng = np.random.default_rng(5)
    start, day = 1_700_000_000, 86400
    records = []
    for _ in range(3000):
        a, b = rng.choice(300, 2, replace=False)
        records.append((int(start + rng.uniform(0, 300) * day), int(a), int(b)))
    for a in range(0, 60, 2):
        for t in np.arange(rng.uniform(0, 2), 300, 2.5):
            a_first = rng.random() < 0.5
            records.append((int(start + t * day), a if a_first else a + 1, a + 1 if a_first else a))
    with open(tmp_path / "interactions.jsonl", "w") as f:
        for ts, a, b in sorted(records):
            f.write(
                json.dumps(
                    {
                        "kind": "interaction",
                        "tenant": "planted",
                        "type": "email",
                        "ts": ts,
                        "from": f"p{a}@planted.example",
                        "to": [f"p{b}@planted.example"],
                    }
                )
                + "\n"
            )
    command = ["relgraph", "evaluate", "links", "--dataset", str(tmp_path), "--epochs", "3", "--json"]
    runs = [
        subprocess.run(
            [*command, "--out", str(tmp_path / f"plots{i}")],
            env={**cli_env, "RELGRAPH_HOME": str(tmp_path / "home")},
            capture_output=True,
            text=True,
            timeout=900,
        )
        for i in range(2)
    ]
    assert all(run.returncode == 0 for run in runs), runs[0].stderr[-3000:] + runs[1].stderr[-3000:]
    report, again = (json.loads(run.stdout) for run in runs)
    model = report["metrics"]["model"]
    assert model["hits@1_historical"] > 0.8 and model["mrr_random"] > 0.8
    assert report["metrics"]["common_neighbors"]["mrr_historical"] < model["mrr_historical"]
    assert report["version"] is None  # an evaluation registers nothing
    # The same dataset, seed and settings: the same numbers.
    assert again["metrics"] == report["metrics"] and again["calibration"] == report["calibration"]
    assert sorted(p.name for p in (tmp_path / "plots0").iterdir()) == ["curves.png", "reliability.png"]
    # Both runs are tracked in the home's MLflow store, each with its epochs and plots.
    tracking = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'home' / 'mlflow' / 'mlflow.db'}")
    for tracked in (report["tracked"], again["tracked"]):
        run = tracking.get_run(tracked["run_id"])
        assert run.data.tags["relgraph.task"] == "evaluate" and run.data.params["hyperparameters.epochs"] == "3"
        assert len(tracking.get_metric_history(tracked["run_id"], "epoch.train_loss")) == 3
        assert run.data.metrics["metrics.model.mrr_historical"] == model["mrr_historical"]
        files = sorted(a.path for a in tracking.list_artifacts(tracked["run_id"]))
        assert files == ["curves.png", "manifest.json", "reliability.png"]


def test_bad_dataset_is_refused_with_the_reason(cli_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "interactions.jsonl").write_text(
        json.dumps(
            {
                "kind": "interaction",
                "tenant": "x",
                "type": "email",
                "ts": 1,
                "from": "not-an-email",
                "to": ["a@b.example"],
            }
        )
    )
    run = subprocess.run(
        ["relgraph", "evaluate", "links", "--dataset", str(tmp_path)],
        env={**cli_env, "RELGRAPH_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1
    assert "dataset files were refused" in run.stderr and "interactions.jsonl:1" in run.stderr


def test_training_refuses_bad_settings(trained: Trained, tmp_path: Path) -> None:
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="workers"):
        RunSettings(workers=0)
    with pytest.raises(ConfigError, match="--resume"):
        train_link_model(trained.log, _settings(), runs_dir=tmp_path, registry=None, scope={}, resume=True)
