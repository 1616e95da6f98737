"""Tracked runs in a real MLflow store (SQLite in a temporary folder): what a run's manifest becomes
there, and a store that fails leaves the run untouched with a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from jobs.tracking import record_run, redacted

MANIFEST = {
    "run": "link-20261207-101010-1",
    "hyperparameters": {"epochs": 2, "task": {"horizon_days": 30.0}},
    "seed": 3,
    "history": [{"epoch": 1, "train_loss": 0.7, "val_auc": 0.6}, {"epoch": 2, "train_loss": 0.5, "val_auc": 0.7}],
    "metrics": {"model": {"mrr_hist": 0.42, "auc": float("nan")}, "recency": {"mrr_hist": 0.31}},
    "promotion_gate": {"passed": False, "reasons": ["loses to recency"], "incumbent": {}},
}


def test_a_run_is_recorded_with_its_settings_history_metrics_and_files(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    card = tmp_path / "card.md"
    card.write_text("# link model v0007\n")
    tracked = record_run(store, model="link", task="train", manifest=MANIFEST, artifacts=[card], version="v0007")
    assert tracked is not None and tracked["experiment"] == "relgraph-link"

    client = MlflowClient(tracking_uri=store)
    run = client.get_run(tracked["run_id"])
    assert run.data.params == {"hyperparameters.epochs": "2", "hyperparameters.task.horizon_days": "30.0", "seed": "3"}
    assert run.data.metrics == {  # NaN left out; an epoch metric's latest value, and its history by epoch
        "metrics.model.mrr_hist": 0.42,
        "metrics.recency.mrr_hist": 0.31,
        "epoch.train_loss": 0.5,
        "epoch.val_auc": 0.7,
    }
    history = client.get_metric_history(run.info.run_id, "epoch.val_auc")
    assert [(m.step, m.value) for m in history] == [(1, 0.6), (2, 0.7)]
    assert run.data.tags["relgraph.version"] == "v0007" and run.data.tags["relgraph.promotion_gate"] == "failed"
    assert run.data.tags["relgraph.task"] == "train" and run.info.status == "FINISHED"
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == ["card.md", "manifest.json"]
    assert (tmp_path / "mlflow" / "artifacts").is_dir()  # beside the store, not in the working directory

    again = record_run(store, model="link", task="evaluate", manifest=MANIFEST)
    assert again is not None and again["run_id"] != tracked["run_id"]  # the same experiment, a new run
    assert len(client.search_runs([run.info.experiment_id])) == 2


def test_a_store_that_fails_is_a_warning_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="relgraph.jobs"):
        assert record_run("nosuch://user:secret@host/x", model="deal", task="train", manifest=MANIFEST) is None
    assert "the deal run was not tracked in nosuch://host/x" in caplog.text and "secret" not in caplog.text


def test_credentials_are_never_shown_but_the_rest_of_the_address_is() -> None:
    assert redacted("https://u:p@mlflow.ml:5000/x and http://a@b/") == "https://mlflow.ml:5000/x and http://b/"
    assert redacted("sqlite:////home/me/mlflow.db") == "sqlite:////home/me/mlflow.db"
