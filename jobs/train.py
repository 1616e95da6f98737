"""Train the relationship-strength (link) model on Ray, evaluate it against the baselines on a
chronological split, and store the run in the model registry.

The same code runs locally (`ray.init()` sized for this machine) and on a cluster (`RAY_ADDRESS`
set, e.g. a KubeRay RayJob): the driver prepares the training tensors, puts them in Ray's object
store, and Ray Train's `TorchTrainer` runs `gnn.training.train_worker` on each worker with DDP.
Runs and their checkpoints live under `runs_dir/<run name>`; `resume=True` continues the newest
unfinished run from its last checkpoint (Ray Train restores a run started again under the same
name and storage path)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gnn.calibration import apply_platt, fit_platt, plot_reliability, reliability
from gnn.features import feature_schema, graph_at, schema_hash, two_way_pairs
from gnn.interactions import InteractionLog
from gnn.linkpred import (LinkTask, Split, baselines, chronological_split, edge_population, model_scorer,
                          ranking_metrics, ranking_queries, training_pairs, validation_pairs)
from gnn.models import LinkModelConfig, LinkStrengthModel
from gnn.registry import ModelRegistry, ModelVersion
from gnn.training import CHECKPOINT_FILE, train_worker, validation_logits
from relgraph.errors import ConfigError, InvalidInputError

MODEL_NAME = "link"
_DONE = "DONE"  # marks a run directory whose training finished (not resumable)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Settings of one training run; keyword-only and validated, errors name the setting."""

    workers: int = 1
    epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 3e-3
    hidden: int = 64
    num_neighbors: tuple[int, ...] = (10, 5)
    validation_share: float = 0.2
    seed: int = 0
    max_failures: int = 1  # a worker that dies is restarted from the last checkpoint this many times
    task: LinkTask = field(default_factory=LinkTask)

    def __post_init__(self) -> None:
        check_settings(self, counts=("workers", "epochs", "batch_size", "hidden"), shares=("validation_share",))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_settings(config: object, *, counts: tuple[str, ...], shares: tuple[str, ...]) -> None:
    """Training settings: each of `counts` at least 1, each of `shares` in (0, 0.5); errors name the setting."""
    for name in counts:
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(config, name)}")
    for name in shares:
        if not 0.0 < getattr(config, name) < 0.5:
            raise ConfigError(f"{name} must be in (0, 0.5), got {getattr(config, name)}")


@dataclass(frozen=True)
class TrainReport:
    run: str
    seconds: float  # all of it: preparation, Ray start-up, training, evaluation
    train_seconds: float  # Ray Train's fit(), start-up included
    samples_per_second: float  # training pairs per second of the epochs themselves, all workers together
    manifest: dict[str, Any]
    version: ModelVersion | None

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "version": self.version.name if self.version else None, "seconds": self.seconds,
                "train_seconds": self.train_seconds, "samples_per_second": self.samples_per_second,
                **{k: self.manifest[k] for k in ("headline", "metrics", "sizes", "data_window", "calibration")}}


def train_link_model(log: InteractionLog, config: TrainConfig, *, runs_dir: Path, registry: ModelRegistry | None,
                     scope: dict[str, Any], resume: bool = False, progress: bool = False) -> TrainReport:
    """Train, evaluate and (with a registry) store a link model trained on `log`."""
    began = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    split = chronological_split(log, config.task)
    data = _training_data(log, split, config, rng)
    train_size, val_y = int(data["train_y"].shape[0]), data["val_y"]
    model_config = LinkModelConfig(node_features=int(data["node_x"].shape[1]),
                                   pair_features=int(data["train_x"].shape[1]), hidden=config.hidden)
    run, state, train_seconds = _fit_on_ray(data, model_config, config, runs_dir, resume, progress)

    model = LinkStrengthModel(model_config)
    model.load_state_dict(state["model"])
    a, b = fit_platt(validation_logits(model, data), val_y.numpy())
    evaluation, curve = _evaluate(log, split, config.task, model, (a, b), rng)
    trained_epochs = len(state["history"])
    manifest = {
        "model": MODEL_NAME, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "run": run,
        "feature_schema": feature_schema(), "schema_hash": schema_hash(), "model_config": model_config.to_dict(),
        "hyperparameters": config.to_dict(), "seed": config.seed,
        "data_window": {**scope, **split.to_dict()},
        "sizes": {"people": log.people, "interactions": log.interactions, "train_pairs": train_size,
                  "validation_pairs": int(val_y.shape[0]), "train_positives": int(data["train_y"].sum()),
                  "test_queries": evaluation["queries"], "served_pairs_scored": evaluation["served_pairs"]},
        "calibration": {"method": "platt", "a": a, "b": b, **{k: curve[k] for k in ("brier", "ece")}},
        "reliability": curve, "history": state["history"], "metrics": evaluation["metrics"],
        "headline": evaluation["headline"]}
    version = None
    if registry is not None:
        def extras(folder: Path) -> None:
            (folder / "card.md").write_text(model_card(manifest))
            plot_reliability(curve, folder / "reliability.png",
                             "link model reliability (test horizon, existing relationships)")
            plot_curves(state["history"], folder / "curves.png")

        version = registry.write(MODEL_NAME, manifest,
                                 {"config": model_config.to_dict(), "weights": model.state_dict(), "platt": [a, b]},
                                 extras)
    epoch_seconds = sum(h["seconds"] for h in state["history"])
    return TrainReport(run=run, seconds=time.perf_counter() - began, train_seconds=train_seconds,
                       samples_per_second=trained_epochs * train_size / max(epoch_seconds, 1e-9),
                       manifest=manifest, version=version)


def _fit_on_ray(data: dict[str, Any], model_config: LinkModelConfig, config: TrainConfig, runs_dir: Path,
                resume: bool, progress: bool) -> tuple[str, dict[str, Any], float]:
    """Run `train_worker` on Ray Train; (run name, the last checkpoint's state, seconds)."""
    import ray

    init_ray(config.workers)
    loop_config = {"data": ray.put(data), "model": model_config.to_dict(), "seed": config.seed,
                   "epochs": config.epochs, "batch_size": config.batch_size, "learning_rate": config.learning_rate,
                   "num_neighbors": list(config.num_neighbors), "progress": progress}
    return fit_on_ray(train_worker, loop_config, run_prefix=MODEL_NAME, workers=config.workers,
                      max_failures=config.max_failures, runs_dir=runs_dir, resume=resume)


def fit_on_ray(worker: Callable[[dict[str, Any]], None], loop_config: dict[str, Any], *, run_prefix: str,
               workers: int, max_failures: int, runs_dir: Path, resume: bool) -> tuple[str, dict[str, Any], float]:
    """Run `worker` on `workers` Ray Train workers (Ray started: `init_ray`); returns (run name,
    the last checkpoint's state, seconds). A failed worker restarts from the last checkpoint up to
    `max_failures` times; `resume` continues the newest unfinished `run_prefix` run instead."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    runs_dir.mkdir(parents=True, exist_ok=True)
    run = _resumable_run(runs_dir, run_prefix) if resume else None
    if resume and run is None:
        raise ConfigError(f"--resume: no unfinished {run_prefix} run under {runs_dir}")
    run = run or f"{run_prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    cpus = int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
    threads = max(1, cpus // workers)
    trainer = TorchTrainer(
        worker, train_loop_config={**loop_config, "threads": threads},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=False, resources_per_worker={"CPU": threads}),
        run_config=RunConfig(name=run, storage_path=str(runs_dir.resolve()),
                             failure_config=FailureConfig(max_failures=max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)))
    began = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - began
    if result.checkpoint is None:
        raise RuntimeError(f"training run {run} finished without a checkpoint: {result.error}")
    with result.checkpoint.as_directory() as folder:
        state: dict[str, Any] = torch.load(Path(folder) / CHECKPOINT_FILE, weights_only=True)
    (runs_dir / run / _DONE).write_text("")
    return run, state, seconds


def _training_data(log: InteractionLog, split: Split, config: TrainConfig, rng: np.random.Generator) -> dict[str, Any]:
    """The tensors every worker trains on: the graph at the training cutoff, its labelled pairs,
    and the held-out validation pairs."""
    graph = graph_at(log, split.train_cutoff)
    positive = two_way_pairs(log, split.train_cutoff, split.test_cutoff)
    held, val = validation_pairs(graph, positive, config.validation_share, rng)
    train = training_pairs(graph, positive, config.task, rng, held)
    if int(train.y.sum()) == 0 or int(val.y.sum()) == 0:
        raise InvalidInputError("too few two-way interactions between the training and test cutoffs to train on: "
                                "use a longer log or a longer horizon_days")
    return {"node_x": graph.node_x, "edge_index": graph.edge_index(), "train_pairs": train.pairs,
            "train_x": train.x, "train_y": train.y, "val_pairs": val.pairs, "val_x": val.x, "val_y": val.y}


def _evaluate(log: InteractionLog, split: Split, task: LinkTask, model: LinkStrengthModel, platt: tuple[float, float],
              rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, Any]]:
    """Model and baselines on the same test queries; calibration on every relationship at the cutoff."""
    test_graph = graph_at(log, split.test_cutoff)
    queries = ranking_queries(log, test_graph, split.end, task, rng)
    score = model_scorer(model, test_graph)
    metrics = {"model": ranking_metrics(queries, score)}
    for name, scorer in baselines(test_graph).items():
        metrics[name] = ranking_metrics(queries, scorer)
    best = max((m for m in metrics if m != "model"), key=lambda m: metrics[m]["mrr_historical"])
    headline = {"mrr_historical": metrics["model"]["mrr_historical"], "best_baseline": best,
                "best_baseline_mrr_historical": metrics[best]["mrr_historical"],
                "margin_mrr_historical": metrics["model"]["mrr_historical"] - metrics[best]["mrr_historical"],
                "beats_every_baseline": all(metrics["model"]["mrr_historical"] > metrics[m]["mrr_historical"]
                                            for m in metrics if m != "model")}
    u, v, labels = edge_population(log, test_graph, split.end)
    curve = reliability(apply_platt(score(u, v), *platt), labels)
    return {"metrics": metrics, "headline": headline, "queries": int(queries.source.shape[0]),
            "served_pairs": int(u.shape[0])}, curve


def model_card(manifest: dict[str, Any]) -> str:
    """A short markdown model card: what it predicts, on what data, how well against the baselines."""
    h, sizes, window = manifest["headline"], manifest["sizes"], manifest["data_window"]
    lines = [f"# Link model (run {manifest['run']})", "",
             "Predicts whether two people have a two-way interaction (contact both ways, or a meeting or call) "
             f"within {manifest['hyperparameters']['task']['horizon_days']:g} days; the calibrated probability is "
             "the relationship strength warm paths rank by.", "",
             f"- Data: {sizes['people']:,} people, {sizes['interactions']:,} interactions; scope {window.get('tenant') or 'network-wide'}; "
             f"training cutoff {_day(window['train_cutoff'])}, test cutoff {_day(window['test_cutoff'])}, end {_day(window['end'])}.",
             f"- Trained on {sizes['train_pairs']:,} pairs ({sizes['train_positives']:,} positive), seed {manifest['seed']}, "
             f"feature schema `{manifest['schema_hash']}`.",
             f"- Calibration (Platt, on held-out training pairs): Brier {manifest['calibration']['brier']:.4f}, "
             f"ECE {manifest['calibration']['ece']:.4f} on {sizes['served_pairs_scored']:,} test-time relationships.",
             "", f"## Test split ({sizes['test_queries']:,} queries)", "",
             "| scorer | MRR hist. | Hits@10 hist. | MRR random | Hits@10 random | AUC |", "|---|---|---|---|---|---|"]
    for name, m in manifest["metrics"].items():
        lines.append(f"| {name} | {m['mrr_historical']:.4f} | {m['hits@10_historical']:.4f} | {m['mrr_random']:.4f} "
                     f"| {m['hits@10_random']:.4f} | {m['auc']:.4f} |")
    verdict = "beats every baseline" if h["beats_every_baseline"] else "does NOT beat every baseline"
    lines += ["", f"The model {verdict} in MRR with historical negatives: {h['mrr_historical']:.4f} against "
              f"{h['best_baseline_mrr_historical']:.4f} for {h['best_baseline']} (margin {h['margin_mrr_historical']:+.4f}).", ""]
    return "\n".join(lines)


def _day(ts: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def ray_output_to_stderr() -> contextlib.AbstractContextManager[Any]:
    """Ray forwards its workers' output to the driver's stdout: send it to stderr while training,
    so stdout holds only the caller's own output (and `--json` stays parseable)."""
    return contextlib.redirect_stdout(sys.stderr)


def init_ray(workers: int) -> None:
    """Connect to RAY_ADDRESS when set, else start a local Ray sized for this machine."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
        return
    cpus = max(workers, os.cpu_count() or 1)
    # Ray Train's print patch would log each worker line twice (as a print and as a log record).
    ray.init(num_cpus=cpus, object_store_memory=512 * 1024 * 1024, include_dashboard=False, configure_logging=False,
             runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}})


def _resumable_run(runs_dir: Path, prefix: str) -> str | None:
    runs = [p for p in runs_dir.iterdir() if p.is_dir() and p.name.startswith(f"{prefix}-") and not (p / _DONE).exists()]
    return max(runs, key=lambda p: p.stat().st_mtime).name if runs else None


def plot_curves(history: list[dict[str, float]], path: Path) -> None:
    """Training and validation loss per epoch, and the validation AUC beside them when recorded."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    with_auc = "val_auc" in history[0]
    fig, axes = plt.subplots(1, 2 if with_auc else 1, figsize=(9 if with_auc else 5, 3.5), squeeze=False)
    left = axes[0][0]
    left.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss")
    left.plot(epochs, [h["val_loss"] for h in history], marker="o", label="validation loss")
    left.set_xlabel("epoch")
    left.legend()
    if with_auc:
        right = axes[0][1]
        right.plot(epochs, [h["val_auc"] for h in history], marker="o", color="tab:green")
        right.set_xlabel("epoch")
        right.set_ylabel("validation AUC")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render_report(r: dict[str, Any]) -> str:
    """A training report as a table: the model beside every baseline, and the verdict."""
    lines = [f"run {r['run']}" + (f" -> registered as {r['version']}" if r.get("version") else "")
             + f" ({r['seconds']:.0f} s, {r['samples_per_second']:.0f} samples/s)",
             f"{'scorer':<24} {'MRR hist':>9} {'H@10 hist':>9} {'MRR rand':>9} {'H@10 rand':>9} {'AUC':>7}"]
    for name, m in r["metrics"].items():
        lines.append(f"{name:<24} {m['mrr_historical']:>9.4f} {m['hits@10_historical']:>9.4f} "
                     f"{m['mrr_random']:>9.4f} {m['hits@10_random']:>9.4f} {m['auc']:>7.4f}")
    h = r["headline"]
    lines.append(f"model {'beats every baseline' if h['beats_every_baseline'] else 'does NOT beat every baseline'}"
                 f" (MRR hist. margin over {h['best_baseline']}: {h['margin_mrr_historical']:+.4f}); "
                 f"calibration Brier {r['calibration']['brier']:.4f}")
    return "\n".join(lines)
