"""Train the relationship-strength (link) model on Ray (jobs/runner.py), evaluate it against the
baselines on a chronological split, and store the run in the model registry.

The driver prepares the training tensors and puts them in Ray's object store; each Ray Train
worker takes an equal random shard of the training pairs, samples neighbourhoods with
`TorchNeighborSampler` through PyG's `LinkNeighborLoader`, and trains with DDP; rank 0 validates
and writes a checkpoint each epoch (model, optimizer, epoch, history), which a restarted worker or
a resumed run continues from."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch_geometric.data import Data
from torch_geometric.loader import LinkNeighborLoader

from core.errors import InvalidInputError
from gnn.calibration import apply_platt, fit_platt, plot_reliability, reliability
from gnn.features import graph_at, link_feature_schema, link_schema_hash, two_way_pairs
from gnn.link_model import LinkModelConfig, LinkScorer, LinkStrengthModel, validation_logits
from gnn.linkpred import (
    LinkTask,
    Split,
    baselines,
    chronological_split,
    edge_population,
    model_scorer,
    ranking_metrics,
    ranking_queries,
    training_pairs,
    validation_pairs,
)
from gnn.model_kinds import LINK as MODEL_KIND
from gnn.registry import ModelRegistry
from gnn.sampler import TorchNeighborSampler
from graph.interaction_log import InteractionLog
from jobs.promotion import PROMOTED, Incumbent, link_verdict, render_gate
from jobs.runner import RunReport, RunSettings, fit_on_ray, plot_curves, report, restore_checkpoint, start_worker


@dataclass(frozen=True, kw_only=True)
class LinkSettings:
    """A link-model training run: how it runs, and the prediction task and sampling."""

    run: RunSettings = field(default_factory=RunSettings)
    task: LinkTask = field(default_factory=LinkTask)
    num_neighbors: tuple[int, ...] = (10, 5)

    def to_dict(self) -> dict[str, Any]:
        return {**self.run.to_dict(), "task": asdict(self.task), "num_neighbors": list(self.num_neighbors)}


@dataclass(frozen=True, kw_only=True)
class TrainReport(RunReport):
    train_seconds: float  # Ray Train's fit(), start-up included
    samples_per_second: float  # training pairs per second of the epochs themselves, all workers together


def train_link_model(
    log: InteractionLog,
    settings: LinkSettings,
    *,
    runs_dir: Path,
    registry: ModelRegistry | None,
    scope: dict[str, Any],
    resume: bool = False,
    progress: bool = False,
) -> TrainReport:
    """Train, evaluate and (with a registry) store a link model trained on `log`."""
    began = time.perf_counter()
    config = settings.run
    rng = np.random.default_rng(config.seed)
    split = chronological_split(log, settings.task)
    data = _training_data(log, split, settings, rng)
    train_size, val_y = int(data["train_y"].shape[0]), data["val_y"]
    model_config = LinkModelConfig(
        node_features=int(data["node_x"].shape[1]), pair_features=int(data["train_x"].shape[1]), hidden=config.hidden
    )
    loop_config = {
        "model": model_config.to_dict(),
        "num_neighbors": list(settings.num_neighbors),
    }
    run, state, train_seconds = fit_on_ray(
        _train_worker,
        loop_config,
        data=data,
        run_prefix=MODEL_KIND.name,
        settings=config,
        runs_dir=runs_dir,
        resume=resume,
        progress=progress,
    )

    model = LinkStrengthModel(model_config)
    model.load_state_dict(state["model"])
    a, b = fit_platt(validation_logits(model, data), val_y.numpy())
    incumbent = Incumbent.of(MODEL_KIND, registry)
    evaluation, curve = _evaluate(log, split, settings.task, model, (a, b), rng, incumbent)
    trained_epochs = len(state["history"])
    manifest = {
        "model": MODEL_KIND.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run": run,
        "feature_schema": link_feature_schema(),
        "schema_hash": link_schema_hash(),
        "model_config": model_config.to_dict(),
        "hyperparameters": settings.to_dict(),
        "seed": config.seed,
        "data_window": {**scope, **split.to_dict()},
        "sizes": {
            "people": log.people,
            "interactions": log.interactions,
            "train_pairs": train_size,
            "validation_pairs": int(val_y.shape[0]),
            "train_positives": int(data["train_y"].sum()),
            "test_queries": evaluation["queries"],
            "served_pairs_scored": evaluation["served_pairs"],
        },
        "calibration": {"method": "platt", "a": a, "b": b, **{k: curve[k] for k in ("brier", "ece")}},
        "reliability": curve,
        "history": state["history"],
        "metrics": evaluation["metrics"],
        "headline": evaluation["headline"],
        "promotion_gate": link_verdict(evaluation["metrics"], incumbent).to_dict(),
    }
    version = None
    if registry is not None:

        def extras(folder: Path) -> None:
            (folder / "card.md").write_text(model_card(manifest))
            write_plots(manifest, folder)

        version = registry.write(
            MODEL_KIND.name,
            manifest,
            {"config": model_config.to_dict(), "weights": model.state_dict(), "platt": [a, b]},
            extras,
        )
    epoch_seconds = sum(h["seconds"] for h in state["history"])
    return TrainReport(
        run=run,
        seconds=time.perf_counter() - began,
        train_seconds=train_seconds,
        samples_per_second=trained_epochs * train_size / max(epoch_seconds, 1e-9),
        manifest=manifest,
        version=version,
    )


def _train_worker(config: dict[str, Any]) -> None:
    """Ray Train's `train_loop_per_worker` for the link model."""
    import ray.train.torch

    worker = start_worker(config)
    data = worker.data
    model = LinkStrengthModel(LinkModelConfig(**config["model"]))
    model.fit_scaling(data["node_x"], data["train_x"])
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
    start, history = 0, []
    state = restore_checkpoint(model, optimizer)
    if state is not None:
        start, history = state["epoch"] + 1, state["history"]
    trained = ray.train.torch.prepare_model(model)  # DDP when world > 1

    graph = Data(x=data["node_x"], edge_index=data["edge_index"], num_nodes=data["node_x"].shape[0])
    sampler = TorchNeighborSampler(graph, list(config["num_neighbors"]), seed=config["seed"] + worker.rank)
    shard = worker.shard(data["train_y"].shape[0])  # the pairs are stored positives first: shuffled
    pairs, pair_x, labels = data["train_pairs"][:, shard], data["train_x"][shard], data["train_y"][shard]
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for epoch in range(start, config["epochs"]):
        loader = LinkNeighborLoader(
            graph,
            num_neighbors=list(config["num_neighbors"]),
            edge_label_index=pairs,
            edge_label=labels,
            batch_size=config["batch_size"],
            shuffle=True,
            neighbor_sampler=sampler,
            generator=torch.Generator().manual_seed(config["seed"] * 1000 + epoch),
        )
        model.train()
        losses = []
        began = time.perf_counter()
        for batch in loader:
            optimizer.zero_grad()
            logits = trained(batch.x, batch.edge_index, batch.edge_label_index, pair_x[batch.input_id])
            loss = loss_fn(logits, batch.edge_label)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        metrics = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "seconds": time.perf_counter() - began}
        if worker.rank == 0:  # validation and the checkpoint are rank 0's: the other ranks would repeat them
            metrics.update(_validate(model, data))
            history.append(metrics)
            worker.record_epoch(metrics)
            report(metrics, model, optimizer, {"epoch": epoch, "history": history})
        else:
            report(metrics)


def _validate(model: LinkStrengthModel, data: dict[str, Any]) -> dict[str, float]:
    """Loss and AUC on the held-out validation pairs."""
    logits = validation_logits(model, data)
    labels = data["val_y"].numpy()
    loss = float(torch.nn.functional.binary_cross_entropy_with_logits(torch.from_numpy(logits), data["val_y"]))
    return {"val_loss": loss, "val_auc": float(roc_auc_score(labels, logits))}


def _training_data(
    log: InteractionLog, split: Split, settings: LinkSettings, rng: np.random.Generator
) -> dict[str, Any]:
    """The tensors every worker trains on: the graph at the training cutoff, its labelled pairs,
    and the held-out validation pairs."""
    graph = graph_at(log, split.train_cutoff)
    positive = two_way_pairs(log, split.train_cutoff, split.test_cutoff)
    held, val = validation_pairs(graph, positive, settings.run.validation_share, rng)
    train = training_pairs(graph, positive, settings.task, rng, held)
    if int(train.y.sum()) == 0 or int(val.y.sum()) == 0:
        raise InvalidInputError(
            "too few two-way interactions between the training and test cutoffs to train on: "
            "use a longer log or a longer horizon_days"
        )
    return {
        "node_x": graph.node_x,
        "edge_index": graph.edge_index(),
        "train_pairs": train.pairs,
        "train_x": train.x,
        "train_y": train.y,
        "val_pairs": val.pairs,
        "val_x": val.x,
        "val_y": val.y,
    }


def _evaluate(
    log: InteractionLog,
    split: Split,
    task: LinkTask,
    model: LinkStrengthModel,
    platt: tuple[float, float],
    rng: np.random.Generator,
    incumbent: Incumbent[LinkScorer],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Model, baselines and the serving version on the same test queries; calibration on every
    relationship at the cutoff."""
    test_graph = graph_at(log, split.test_cutoff)
    queries = ranking_queries(log, test_graph, split.end, task, rng)
    score = model_scorer(model, test_graph)
    metrics = {"model": ranking_metrics(queries, score)}
    for name, scorer in baselines(test_graph).items():
        metrics[name] = ranking_metrics(queries, scorer)
    baseline_names = [m for m in metrics if m != "model"]
    if incumbent.model is not None:
        metrics[PROMOTED] = ranking_metrics(queries, model_scorer(incumbent.model.model, test_graph))
    best = max(baseline_names, key=lambda m: metrics[m]["mrr_historical"])
    headline = {
        "mrr_historical": metrics["model"]["mrr_historical"],
        "best_baseline": best,
        "best_baseline_mrr_historical": metrics[best]["mrr_historical"],
        "margin_mrr_historical": metrics["model"]["mrr_historical"] - metrics[best]["mrr_historical"],
        "beats_every_baseline": all(
            metrics["model"]["mrr_historical"] > metrics[m]["mrr_historical"] for m in baseline_names
        ),
    }
    u, v, labels = edge_population(log, test_graph, split.end)
    curve = reliability(apply_platt(score(u, v), *platt), labels)
    return {
        "metrics": metrics,
        "headline": headline,
        "queries": int(queries.source.shape[0]),
        "served_pairs": int(u.shape[0]),
    }, curve


def model_card(manifest: dict[str, Any]) -> str:
    """A short markdown model card: what it predicts, on what data, how well against the baselines."""
    h, sizes, window = manifest["headline"], manifest["sizes"], manifest["data_window"]
    lines = [
        f"# Link model (run {manifest['run']})",
        "",
        "Predicts whether two people have a two-way interaction (contact both ways, or a meeting or call) "
        f"within {manifest['hyperparameters']['task']['horizon_days']:g} days; the calibrated probability is "
        "the relationship strength warm paths rank by.",
        "",
        f"- Data: {sizes['people']:,} people, {sizes['interactions']:,} interactions; "
        f"scope {', '.join(window.get('tenants') or []) or 'network-wide'}; training cutoff "
        f"{_day(window['train_cutoff'])}, test cutoff {_day(window['test_cutoff'])}, end {_day(window['end'])}.",
        f"- Trained on {sizes['train_pairs']:,} pairs ({sizes['train_positives']:,} positive), "
        f"seed {manifest['seed']}, "
        f"feature schema `{manifest['schema_hash']}`.",
        f"- Calibration (Platt, on held-out training pairs): Brier {manifest['calibration']['brier']:.4f}, "
        f"ECE {manifest['calibration']['ece']:.4f} on {sizes['served_pairs_scored']:,} test-time relationships.",
        "",
        f"## Test split ({sizes['test_queries']:,} queries)",
        "",
        "| scorer | MRR hist. | Hits@10 hist. | MRR random | Hits@10 random | AUC |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in manifest["metrics"].items():
        lines.append(
            f"| {name} | {m['mrr_historical']:.4f} | {m['hits@10_historical']:.4f} | {m['mrr_random']:.4f} "
            f"| {m['hits@10_random']:.4f} | {m['auc']:.4f} |"
        )
    verdict = "beats every baseline" if h["beats_every_baseline"] else "does NOT beat every baseline"
    lines += [
        "",
        f"The model {verdict} in MRR with historical negatives: {h['mrr_historical']:.4f} against "
        f"{h['best_baseline_mrr_historical']:.4f} for {h['best_baseline']} (margin {h['margin_mrr_historical']:+.4f}).",
        "",
        render_gate(manifest["promotion_gate"]),
        "",
    ]
    return "\n".join(lines)


def write_plots(report: dict[str, Any], folder: Path) -> list[Path]:
    """A link report's plots: reliability of the served strength and the training curves."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "reliability.png", folder / "curves.png"]
    plot_reliability(report["reliability"], written[0], "link model reliability (test horizon, existing relationships)")
    plot_curves(report["history"], written[1])
    return written


def _day(ts: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def render_report(r: dict[str, Any]) -> str:
    """A training report as a table: the model beside every baseline, and the verdict."""
    lines = [
        f"run {r['run']}"
        + (f" -> registered as {r['version']}" if r.get("version") else "")
        + f" ({r['seconds']:.0f} s, {r['samples_per_second']:.0f} samples/s)",
        f"{'scorer':<24} {'MRR hist':>9} {'H@10 hist':>9} {'MRR rand':>9} {'H@10 rand':>9} {'AUC':>7}",
    ]
    for name, m in r["metrics"].items():
        lines.append(
            f"{name:<24} {m['mrr_historical']:>9.4f} {m['hits@10_historical']:>9.4f} "
            f"{m['mrr_random']:>9.4f} {m['hits@10_random']:>9.4f} {m['auc']:>7.4f}"
        )
    h = r["headline"]
    lines.append(
        f"model {'beats every baseline' if h['beats_every_baseline'] else 'does NOT beat every baseline'}"
        f" (MRR hist. margin over {h['best_baseline']}: {h['margin_mrr_historical']:+.4f}); "
        f"calibration Brier {r['calibration']['brier']:.4f}"
    )
    lines.append(render_gate(r["promotion_gate"]))
    return "\n".join(lines)
