"""Tracked runs: every training and evaluation run is recorded in MLflow, so ML engineers compare
runs in the tool they already use. A run lands in the experiment `relgraph-<model>`, with its
settings as parameters, its per-epoch history (step = epoch) and final metrics, its manifest, card
and plots as artifacts, and tags naming the task, the registered version and the promotion gate's
verdict.

The store is `Config.tracking_store`: `MLFLOW_TRACKING_URI` (a team's server), else SQLite under
`RELGRAPH_HOME/mlflow` with artifacts beside it. The model registry stays the source of truth for
serving: tracking is a record, and a store that fails never fails the run (a warning says so)."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("relgraph.jobs")

# What of a manifest becomes parameters (the run's settings) and final metrics (its results).
_PARAMS = ("hyperparameters", "model_config", "seed", "data_window", "sizes", "stages")
_METRICS = ("headline", "metrics", "calibration")
_MAX_PARAM_CHARS = 6000  # MLflow's limit on a parameter's value
_BATCH = 100  # parameters per MLflow batch (its limit), and metrics per batch alike
# A tracking server that is down must not hold up training for minutes (MLflow's own defaults: 7
# retries with backoff, 120 s per request); the environment may set others.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}
_USER_INFO = re.compile(r"(?<=://)[^/@\s]*@")


def record_run(
    store: str,
    *,
    model: str,
    task: str,
    manifest: Mapping[str, Any],
    artifacts: Sequence[Path] = (),
    version: str | None = None,
) -> dict[str, str] | None:
    """Record one `task` run ("train" or "evaluate") of the `model` kind in the MLflow store at
    `store`: `manifest` as parameters and metrics, `artifacts` as files. Returns where it went
    ({"store", "experiment", "run_id"}), or None when the store failed, with a warning."""
    for name, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    try:
        return _record(store, model, task, manifest, artifacts, version)
    except Exception as exc:  # a record, never a reason to lose a trained model
        log.warning("the %s run was not tracked in %s: %s", model, redacted(store), redacted(str(exc)))
        return None


def _record(
    store: str, model: str, task: str, manifest: Mapping[str, Any], artifacts: Sequence[Path], version: str | None
) -> dict[str, str]:
    from mlflow.entities import Metric, Param, RunStatus
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):  # their set-up chatter (creating the SQLite tables) is not the run's
        logging.getLogger(name).setLevel(logging.WARNING)
    artifact_location = _local_artifacts(store)
    client = MlflowClient(tracking_uri=store)
    name = f"relgraph-{model}"
    experiment = client.get_experiment_by_name(name)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(name, artifact_location=artifact_location)
    )
    gate = manifest.get("promotion_gate") or {}
    tags = {
        "relgraph.task": task,
        "relgraph.model": model,
        "relgraph.version": version or "",
        "relgraph.ray_run": str(manifest.get("run", "")),
        "relgraph.promotion_gate": "" if not gate else ("passed" if gate.get("passed") else "failed"),
    }
    run = client.create_run(experiment_id, run_name=f"{task}-{version or time.strftime('%Y%m%d-%H%M%S')}", tags=tags)
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    params = [Param(key, _param_value(value)) for key, value in _flat({k: manifest.get(k) for k in _PARAMS})]
    metrics = [Metric(key, value, now, 0) for key, value in _numbers({k: manifest.get(k) for k in _METRICS})]
    metrics += [
        Metric(f"epoch.{key}", value, now, int(row.get("epoch", step + 1)))
        for step, row in enumerate(manifest.get("history") or [])
        for key, value in _numbers(row)
        if key != "epoch"
    ]
    for start in range(0, max(len(params), len(metrics)), _BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + _BATCH], params=params[start : start + _BATCH])
    with tempfile.TemporaryDirectory(prefix="relgraph-track-") as tmp:
        whole = Path(tmp) / "manifest.json"
        whole.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        for path in (whole, *artifacts):
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    return {"store": redacted(store), "experiment": name, "run_id": run_id}


def _flat(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, leaf) of nested mappings; lists and scalars are leaves; None is left out."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield from _flat(inner, f"{prefix}.{_key(str(key))}" if prefix else _key(str(key)))
    elif value is not None and prefix:
        yield prefix, value


def _numbers(value: Any) -> Iterator[tuple[str, float]]:
    """The finite numeric leaves of `value` (booleans are not numbers here)."""
    for key, leaf in _flat(value):
        if isinstance(leaf, int | float) and not isinstance(leaf, bool) and math.isfinite(leaf):
            yield key, float(leaf)


def _key(name: str) -> str:
    """A name MLflow accepts: letters, digits and _ - . / : and spaces."""
    return re.sub(r"[^\w\-./: ]", "_", name)


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:_MAX_PARAM_CHARS]


def _local_artifacts(store: str) -> str | None:
    """For a SQLite store (its folder made here), artifacts in a folder beside its file (MLflow's
    default is the working directory); a server decides for itself (None)."""
    if not store.startswith("sqlite:///"):
        return None
    database = Path(store.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    return (database.parent / "artifacts").resolve().as_uri()


def redacted(text: str) -> str:
    """`text` (a store's URI, a message naming one) without the credentials of any URI in it
    (scheme://user:password@host:port/... keeps all but user:password@)."""
    return _USER_INFO.sub("", text)
