"""Train the deal model on Ray, evaluate it on a time split beside its baselines (a gradient-boosted
model on the same tabular features, the CRM-reported stage, the median), and register it.

Labels come from what happened after each snapshot time t: win or loss and the close date of deals
closed by then, and the stage at t from CRM histories that can be trusted (`gnn.deals.trusted_history`);
features come only from before t. Time split: deals that closed in the last `test_share` of the
closing times are the test set; the model never sees their outcomes. When the dataset carries the
generator's ground truth (`ground_truth/deals.jsonl`), stage accuracy is measured against the true
stage, for test snapshots and for the deals still open at the end."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import roc_auc_score

from core.errors import ConfigError, InvalidInputError
from gnn.boosted_trees import BLEND_HEADS, BoostedTrees, DealBlend
from gnn.calibration import apply_platt, fit_platt, plot_reliability, reliability
from gnn.deal_model import DealModel, DealModelConfig, DealTensors, loss, predict, stack
from gnn.deal_scoring import DealScorer, clamp_log_days, interval
from gnn.deals import (
    COMPANY_FEATURES,
    DAY,
    DEFAULT_STAGES,
    PERSON_FEATURES,
    TABULAR_FEATURES,
    deal_feature_schema,
    deal_features,
    deal_schema_hash,
    snapshot_times,
    stage_label,
)
from gnn.model_kinds import DEAL as MODEL_KIND
from gnn.registry import ModelRegistry
from graph.deal_bundle import Deal, DealBundle
from jobs.promotion import PROMOTED, Incumbent, deal_verdict, render_gate
from jobs.runner import (
    RunReport,
    RunSettings,
    check_settings,
    fit_on_ray,
    plot_curves,
    report,
    restore_checkpoint,
    start_worker,
)

log = logging.getLogger("relgraph.train")

MIN_CLOSED_DEALS = 20
# A single feature whose AUC for the outcome is this far from 0.5 is reported as likely leakage
# (e.g. lost deals recorded with amount 0): a model that "learns" it predicts nothing useful.
LEAKAGE_AUC = 0.98
# Epochs are short (a second or less), and a Ray checkpoint costs about as much: one every few epochs.
CHECKPOINT_EVERY = 5
# The graph model's share in the served win and days heads is chosen among these on the validation deals.
_BLEND_WEIGHTS = np.linspace(0.0, 1.0, 21)


@dataclass(frozen=True, kw_only=True)
class DealSettings:
    """A deal-model training run: how it runs, and the model's own settings."""

    run: RunSettings = field(default_factory=lambda: RunSettings(epochs=60))
    dropout: float = 0.1
    weight_decay: float = 1e-5
    test_share: float = 0.3  # the latest-closing share of closed deals, held out
    stages: tuple[str, ...] = DEFAULT_STAGES

    def __post_init__(self) -> None:
        check_settings(self, counts=(), shares=("test_share",))
        if len(self.stages) < 2 or len(set(self.stages)) != len(self.stages):
            raise ConfigError(f"stages must name at least two distinct stages in order, got {list(self.stages)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.run.to_dict(),
            "dropout": self.dropout,
            "weight_decay": self.weight_decay,
            "test_share": self.test_share,
            "stages": list(self.stages),
        }


class GroundTruth:
    """The generator's true stage history of each deal (DESIGN §6), used only to evaluate."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self._starts = {
            (r["tenant"], r["deal"]): (
                [s["stage"] for s in r["true_stage_starts"]],
                np.array([s["ts"] for s in r["true_stage_starts"]], dtype=np.int64),
            )
            for r in rows
        }

    def stage_at(self, deal: Deal, t: int) -> str | None:
        known = self._starts.get((deal.tenant, deal.deal_id))
        if known is None:
            return None
        names, starts = known
        i = int(np.searchsorted(starts, t, side="right")) - 1
        return names[i] if i >= 0 else None

    @staticmethod
    def load(dataset: Path) -> GroundTruth | None:
        """The ground truth beside a generated dataset (`out/ingest` -> `out/ground_truth/deals.jsonl`)."""
        folder = dataset if dataset.is_dir() else dataset.parent
        for path in (folder / "ground_truth" / "deals.jsonl", folder.parent / "ground_truth" / "deals.jsonl"):
            if path.is_file():
                return GroundTruth([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
        return None


@dataclass(frozen=True)
class Snapshots:
    deals: list[Deal]
    times: list[int]
    tensors: DealTensors


def _snapshots(data: DealBundle, pairs: list[tuple[Deal, int]], stages: tuple[str, ...]) -> Snapshots:
    features = [deal_features(data, d, t) for d, t in pairs]
    stage_y = [stage_label(d, t, stages) for d, t in pairs]
    win_y = [float(d.outcome == "won") if d.closed >= 0 else -1.0 for d, _ in pairs]
    log_days = [float(np.log1p((d.closed - t) / DAY)) if d.closed >= 0 else float("nan") for d, t in pairs]
    if not features:
        raise InvalidInputError("no deal snapshots to learn from: the deals close within a week of being created")
    return Snapshots([d for d, _ in pairs], [t for _, t in pairs], stack(features, stage_y, win_y, log_days))


@dataclass(frozen=True)
class DealSplit:
    cutoff: int
    train: list[Deal]
    validation: list[Deal]
    test: list[Deal]
    open: list[Deal]


def split_deals(data: DealBundle, settings: DealSettings, as_of: int) -> DealSplit:
    closed = sorted((d for d in data.deals if 0 <= d.closed <= as_of), key=lambda d: (d.closed, d.tenant, d.deal_id))
    if len(closed) < MIN_CLOSED_DEALS:
        raise InvalidInputError(
            f"the deal model needs at least {MIN_CLOSED_DEALS} closed deals (won or lost, with "
            f"'closed'); this data has {len(closed)}"
        )
    cut = round(len(closed) * (1 - settings.test_share))
    cutoff = closed[cut].closed
    learn, test = closed[:cut], closed[cut:]
    # Validation (early stopping, calibration, intervals) is the latest-closing part of the rest, so
    # it looks like the test deals: closed later, often after a longer road.
    n_val = max(1, int(len(learn) * settings.run.validation_share))
    train, validation = learn[:-n_val], learn[-n_val:]
    if not any(d.outcome == "won" for d in train) or not any(d.outcome == "lost" for d in train):
        raise InvalidInputError("the training deals need both won and lost outcomes")
    return DealSplit(cutoff, train, validation, test, [d for d in data.deals if d.closed < 0 or d.closed > as_of])


class DealReport(RunReport):
    """A deal training run: nothing beyond what every run reports."""


def train_deal_model(
    data: DealBundle,
    settings: DealSettings,
    *,
    as_of: int,
    runs_dir: Path,
    registry: ModelRegistry | None,
    scope: dict[str, Any],
    truth: GroundTruth | None = None,
    resume: bool = False,
    progress: bool = False,
) -> DealReport:
    """Train, evaluate and (with a registry) store a deal model on `data` observed at `as_of`."""
    began = time.perf_counter()
    config = settings.run
    split = split_deals(data, settings, as_of)
    stages = settings.stages

    def at(deals: list[Deal]) -> list[tuple[Deal, int]]:
        return [(d, t) for d in deals for t in snapshot_times(d, as_of)]

    train, val, test = (_snapshots(data, at(ds), stages) for ds in (split.train, split.validation, split.test))
    stage_skipped = _why_no_stage_head(train, stages)
    if stage_skipped:
        log.warning("%s", stage_skipped)
    model_config = DealModelConfig(
        tabular=len(TABULAR_FEATURES),
        person=len(PERSON_FEATURES),
        company=len(COMPANY_FEATURES),
        stages=len(stages),
        hidden=config.hidden,
        dropout=settings.dropout,
    )
    loop_config = {
        "model": model_config.to_dict(),
        "weight_decay": settings.weight_decay,
    }
    run, state, train_seconds = fit_on_ray(
        _train_worker,
        loop_config,
        data={"train": asdict(train.tensors), "val": asdict(val.tensors)},
        run_prefix=MODEL_KIND.name,
        settings=config,
        runs_dir=runs_dir,
        resume=resume,
        progress=progress,
    )
    model = DealModel(model_config)
    model.load_state_dict(state["best"]["model"])

    # The served win and days heads: the graph model's blended with gradient boosting's, weights
    # chosen on the validation deals, then calibrated and given intervals there as served.
    gbm = _GradientBoosted(train, config.seed)
    _, val_logits, val_days = predict(model, val.tensors)
    blend = _choose_blend(gbm, val, val_logits, val_days)
    val_tabular = val.tensors.tabular.numpy()
    closed_val = val.tensors.win_y.numpy() >= 0
    platt = fit_platt(blend.win_logit(val_logits, val_tabular)[closed_val], val.tensors.win_y.numpy()[closed_val])
    intervals = _interval_residuals(train, val, blend.log_days(val_days, val_tabular))
    gbm.calibrate(val)
    served_state = {
        "config": model_config.to_dict(),
        "weights": model.state_dict(),
        "platt": list(platt),
        "blend": blend.to_state(),
        "intervals": intervals,
        "stages": list(stages),
        "stage_head": stage_skipped is None,
        "tabular_range": [
            train.tensors.tabular.min(0).values.tolist(),
            train.tensors.tabular.max(0).values.tolist(),
        ],
    }
    candidate = DealScorer(served_state, "candidate")
    incumbent = Incumbent.of(MODEL_KIND, registry)
    metrics, curve = _evaluate(candidate, gbm, incumbent.model, train, val, test, data, split, stages, as_of, truth)
    if stage_skipped:
        metrics["stage"] = {"skipped": stage_skipped}
        metrics.pop("stage_open_deals", None)
    headline = _headline(metrics)
    manifest = {
        "model": MODEL_KIND.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run": run,
        "feature_schema": deal_feature_schema(stages, BLEND_HEADS),
        "schema_hash": deal_schema_hash(stages, BLEND_HEADS),
        "heads": BLEND_HEADS,
        "stages": list(stages),
        "stage_head": stage_skipped is None,
        "model_config": model_config.to_dict(),
        "hyperparameters": settings.to_dict(),
        "seed": config.seed,
        "best_epoch": state["best"]["epoch"],
        "data_window": {**scope, "as_of": as_of, "test_cutoff": split.cutoff},
        "sizes": {
            "deals": len(data.deals),
            "train_deals": len(split.train),
            "validation_deals": len(split.validation),
            "test_deals": len(split.test),
            "open_deals": len(split.open),
            "train_snapshots": len(train.tensors),
            "train_stage_labels": int((train.tensors.stage_y >= 0).sum()),
            "test_snapshots": len(test.tensors),
            "closed_deals_by_tenant": _by_tenant(split.train + split.validation + split.test),
        },
        "calibration": {"method": "platt", "a": platt[0], "b": platt[1], "brier": curve["brier"], "ece": curve["ece"]},
        "intervals": intervals,
        "reliability": curve,
        "history": state["history"],
        "metrics": metrics,
        "headline": headline,
        "train_seconds": train_seconds,
        "promotion_gate": deal_verdict(metrics, incumbent).to_dict(),
    }
    version = None
    if registry is not None:

        def extras(folder: Path) -> None:
            (folder / "card.md").write_text(model_card(manifest))
            write_plots(manifest, folder)

        version = registry.write(MODEL_KIND.name, manifest, served_state, extras)
    return DealReport(run=run, seconds=time.perf_counter() - began, manifest=manifest, version=version)


def _why_no_stage_head(train: Snapshots, stages: tuple[str, ...]) -> str | None:
    """Why the stage head cannot be trained (None when it can): no trusted stage history."""
    if int((train.tensors.stage_y >= 0).sum()):
        return None
    return (
        f"stage head skipped: no won training deal records every stage ({', '.join(stages)}) in order, so "
        "there is no stage history to learn from (pass the CRM's own stages in order with --stages); "
        "win probability and days to close are trained and evaluated without it"
    )


def _train_worker(config: dict[str, Any]) -> None:
    """Ray Train's `train_loop_per_worker` for the deal model: mini-batches of this rank's shard of
    the training snapshots (DDP keeps the replicas equal); rank 0 computes the validation loss each
    epoch and, every CHECKPOINT_EVERY epochs and at the end, checkpoints the model, the optimizer
    and the best state so far, which is what the run returns (early stopping by validation loss,
    without cutting the run short)."""
    import ray.train.torch

    worker = start_worker(config)
    train, val = DealTensors(**worker.data["train"]), DealTensors(**worker.data["val"])
    model = DealModel(DealModelConfig(**config["model"]))
    model.fit_scaling(train)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"], weight_decay=config["weight_decay"])
    best: dict[str, Any] = {"val_loss": float("inf"), "epoch": 0, "model": model.state_dict()}
    start, history = 0, []
    state = restore_checkpoint(model, optimizer)
    if state is not None:
        start, history, best = state["epoch"] + 1, state["history"], state["best"]
    trained = ray.train.torch.prepare_model(model)
    shard = worker.shard(len(train))
    for epoch in range(start, config["epochs"]):
        began = time.perf_counter()
        model.train()
        generator = torch.Generator().manual_seed(config["seed"] * 1000 + epoch)
        shuffled = shard[torch.randperm(shard.shape[0], generator=generator)]
        losses = []
        for i in range(0, shuffled.shape[0], config["batch_size"]):
            optimizer.zero_grad()
            value = loss(trained, train.batch(shuffled[i : i + config["batch_size"]]))
            value.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            losses.append(value.item())
        metrics = {
            "epoch": epoch + 1,
            "train_loss": sum(losses) / max(len(losses), 1),
            "seconds": time.perf_counter() - began,
        }
        if worker.rank != 0:
            report(metrics)
            continue
        model.eval()
        with torch.no_grad():
            metrics["val_loss"] = float(loss(model, val))
        history.append(metrics)
        worker.record_epoch(metrics)
        if metrics["val_loss"] < best["val_loss"]:
            best = {
                "val_loss": metrics["val_loss"],
                "epoch": epoch + 1,
                "model": {k: v.clone() for k, v in model.state_dict().items()},
            }
        if (epoch + 1) % CHECKPOINT_EVERY and epoch + 1 < config["epochs"]:
            report(metrics)
            continue
        report(metrics, model, optimizer, {"epoch": epoch, "history": history, "best": best})


def _by_tenant(deals: list[Deal]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for d in deals:
        counts[d.tenant] = counts.get(d.tenant, 0) + 1
    return dict(sorted(counts.items()))


def _interval_residuals(train: Snapshots, val: Snapshots, predicted_log_days: np.ndarray) -> dict[str, list[float]]:
    """Split-conformal p10/p90 residuals of log days on the validation deals, for deals with
    interactions and without (a group with too few examples uses all of them), plus the p10/p90 of
    log days to close over all training snapshots: a deal with no interactions gets at least that
    wide an interval, since all that is known of it is its dates and amount. Predictions are clamped
    to the longest time to close seen in training (`clamp_log_days`)."""
    train_days = train.tensors.log_days_y.numpy()
    out = {
        "marginal_log_days": [float(np.quantile(train_days[~np.isnan(train_days)], q)) for q in (0.1, 0.9)],
        "max_log_days": [float(np.nanmax(train_days))],
    }
    truth = val.tensors.log_days_y.numpy()
    known = ~np.isnan(truth)
    engaged = val.tensors.tabular[:, TABULAR_FEATURES.index("has_interactions")].numpy() > 0
    residual = truth - clamp_log_days(out, predicted_log_days)
    pooled = [float(np.quantile(residual[known], q)) for q in (0.1, 0.9)]
    for group, mask in (("engaged", engaged), ("no_interactions", ~engaged)):
        use = known & mask
        out[group] = [float(np.quantile(residual[use], q)) for q in (0.1, 0.9)] if use.sum() >= 20 else pooled
    return out


class _GradientBoosted:
    """The baseline: scikit-learn gradient boosting on the same deal-level tabular features."""

    def __init__(self, train: Snapshots, seed: int) -> None:
        x = train.tensors.tabular.numpy()
        win, stage = train.tensors.win_y.numpy(), train.tensors.stage_y.numpy()
        days = train.tensors.log_days_y.numpy()
        self.win = HistGradientBoostingClassifier(random_state=seed).fit(x[win >= 0], win[win >= 0])
        self.stage = (
            HistGradientBoostingClassifier(random_state=seed).fit(x[stage >= 0], stage[stage >= 0])
            if (stage >= 0).any()
            else None
        )
        self.days = HistGradientBoostingRegressor(loss="absolute_error", random_state=seed).fit(
            x[~np.isnan(days)], days[~np.isnan(days)]
        )
        self.platt = (1.0, 0.0)

    def win_logit(self, x: np.ndarray) -> np.ndarray:
        p = np.clip(self.win.predict_proba(x)[:, 1], 1e-6, 1 - 1e-6)
        logit: np.ndarray = np.log(p / (1 - p))
        return logit

    def calibrate(self, val: Snapshots) -> None:
        """Platt on the same validation deals as the GNN, so both are calibrated alike."""
        y = val.tensors.win_y.numpy()
        self.platt = fit_platt(self.win_logit(val.tensors.tabular.numpy()[y >= 0]), y[y >= 0])

    def win_probability(self, x: np.ndarray) -> np.ndarray:
        return apply_platt(self.win_logit(x), *self.platt)

    def stage_index(self, x: np.ndarray) -> np.ndarray:
        """Stage indices (classes the baseline never saw cannot be predicted; -1 without stage labels)."""
        if self.stage is None:
            return np.full(x.shape[0], -1)
        predicted: np.ndarray = self.stage.predict(x).astype(int)
        return predicted


def _choose_blend(gbm: _GradientBoosted, val: Snapshots, graph_logits: np.ndarray, graph_days: np.ndarray) -> DealBlend:
    """The blend weights on the validation deals: for win, the lowest log loss once calibrated; for
    days, the lowest mean absolute error in days. With too little to choose on, the graph model alone."""
    x, y = val.tensors.tabular.numpy(), val.tensors.win_y.numpy()
    win_trees, days_trees = BoostedTrees.of(gbm.win), BoostedTrees.of(gbm.days)
    tree_logits, tree_days = win_trees.raw(x), days_trees.raw(x)
    closed, days = y >= 0, val.tensors.log_days_y.numpy()
    known = ~np.isnan(days)

    def win_loss(weight: float) -> float:
        z = weight * graph_logits[closed] + (1 - weight) * tree_logits[closed]
        p = np.clip(apply_platt(z, *fit_platt(z, y[closed])), 1e-6, 1 - 1e-6)
        return float(-np.mean(y[closed] * np.log(p) + (1 - y[closed]) * np.log(1 - p)))

    def days_error(weight: float) -> float:
        blended = weight * graph_days[known] + (1 - weight) * tree_days[known]
        return float(np.mean(np.abs(np.expm1(blended) - np.expm1(days[known]))))

    two_outcomes = closed.sum() >= 2 and 0 < y[closed].sum() < closed.sum()
    return DealBlend(
        win_trees,
        days_trees,
        float(min(_BLEND_WEIGHTS, key=win_loss)) if two_outcomes else 1.0,
        float(min(_BLEND_WEIGHTS, key=days_error)) if known.any() else 1.0,
    )


def _evaluate(
    candidate: DealScorer,
    gbm: _GradientBoosted,
    incumbent: DealScorer | None,
    train: Snapshots,
    val: Snapshots,
    test: Snapshots,
    data: DealBundle,
    split: DealSplit,
    stages: tuple[str, ...],
    as_of: int,
    truth: GroundTruth | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    x = test.tensors.tabular.numpy()
    intervals = candidate.intervals
    stage_probs, model_win, raw_log_days = candidate.served(test.tensors)
    log_days = clamp_log_days(intervals, raw_log_days)
    win_y = test.tensors.win_y.numpy()
    gbm_win = gbm.win_probability(x)
    curve = reliability(model_win, win_y)
    gbm_curve = reliability(gbm_win, win_y)
    train_win = train.tensors.win_y.numpy()
    base_rate = float(train_win[train_win >= 0].mean())
    metrics: dict[str, Any] = {
        "win": {
            "snapshots": int(win_y.size),
            "won_share": float(win_y.mean()),
            "model": {"auc": float(roc_auc_score(win_y, model_win)), "brier": curve["brier"], "ece": curve["ece"]},
            "gradient_boosting": {
                "auc": float(roc_auc_score(win_y, gbm_win)),
                "brier": gbm_curve["brier"],
                "ece": gbm_curve["ece"],
            },
            # The constant predictor: the training win rate for every deal (no skill).
            "no_skill": {
                "auc": 0.5,
                "brier": float(np.mean((base_rate - win_y) ** 2)),
                "ece": abs(base_rate - float(win_y.mean())),
            },
        },
        "warnings": _leakage_warnings(train),
    }
    metrics["blend"] = _blend_parts(candidate, val, test)
    if incumbent is not None:  # the version serving now, on the same snapshots, as it serves
        served = incumbent.served(test.tensors)[1]
        served_curve = reliability(served, win_y)
        metrics["win"][PROMOTED] = {
            "auc": float(roc_auc_score(win_y, served)),
            "brier": served_curve["brier"],
            "ece": served_curve["ece"],
        }
    # Its stages too, where it estimates the same ones.
    served_stages = incumbent.model if incumbent and incumbent.stage_head and incumbent.stages == stages else None

    def stage_predictions(tensors: DealTensors, probs: np.ndarray) -> dict[str, np.ndarray]:
        predictions = {"model": np.argmax(probs, 1), "gradient_boosting": gbm.stage_index(tensors.tabular.numpy())}
        if served_stages is not None:
            predictions[PROMOTED] = np.argmax(predict(served_stages, tensors)[0], 1)
        return predictions

    true_days = np.expm1(test.tensors.log_days_y.numpy())
    engaged = x[:, TABULAR_FEATURES.index("has_interactions")] > 0
    low, high = zip(*(interval(intervals, p, e) for p, e in zip(log_days, engaged)))
    truth_log = test.tensors.log_days_y.numpy()
    covered = (truth_log >= np.array(low)) & (truth_log <= np.array(high))
    metrics["days_to_close"] = {
        "snapshots": int(true_days.size),
        "mae_days": {
            "model": float(np.mean(np.abs(np.expm1(log_days) - true_days))),
            "gradient_boosting": float(np.mean(np.abs(np.expm1(gbm.days.predict(x)) - true_days))),
            "median": float(np.mean(np.abs(np.nanmedian(np.expm1(train.tensors.log_days_y.numpy())) - true_days))),
        },
        "p10_p90_coverage": float(np.mean(covered)),
        "p10_p90_coverage_by_group": {
            group: float(np.mean(covered[mask])) if mask.any() else None
            for group, mask in (("engaged", engaged), ("no_interactions", ~engaged))
        },
    }

    predictions = stage_predictions(test.tensors, stage_probs)
    train_stages = train.tensors.stage_y.numpy()
    majority = int(np.bincount(train_stages[train_stages >= 0]).argmax()) if (train_stages >= 0).any() else -1
    if truth is not None:
        true = np.array([_index(truth.stage_at(d, t), stages) for d, t in zip(test.deals, test.times)])
        crm = np.array([_index(test.deals[i].crm_stage_at(t), stages) for i, t in enumerate(test.times)])
        metrics["stage"] = {"source": "ground truth", **_accuracies(true, predictions, majority, crm)}
    else:  # the labels are the CRM's own histories: scoring the CRM against them would score it against itself
        true = test.tensors.stage_y.numpy()
        metrics["stage"] = {"source": "trusted CRM histories", **_accuracies(true, predictions, majority)}
    metrics["stage"]["confusion"] = _confusion(true, predictions["model"], len(stages))
    if truth is not None and split.open:
        open_tensors = stack([deal_features(data, d, as_of) for d in split.open])
        true_open = np.array([_index(truth.stage_at(d, as_of), stages) for d in split.open])
        crm_open = np.array([_index(d.crm_stage_at(as_of), stages) for d in split.open])
        open_predictions = stage_predictions(open_tensors, predict(candidate.model, open_tensors)[0])
        metrics["stage_open_deals"] = {
            "source": "ground truth",
            **_accuracies(true_open, open_predictions, majority, crm_open),
            "confusion": _confusion(true_open, open_predictions["model"], len(stages)),
        }
    return metrics, curve


def _blend_parts(candidate: DealScorer, val: Snapshots, test: Snapshots) -> dict[str, Any]:
    """What each part of the served heads contributes on the test snapshots: the blend's weights
    (1: the graph model alone) and the graph model alone (calibrated on the same validation deals)."""
    assert candidate.blend is not None
    _, val_logits, _ = predict(candidate.model, val.tensors)
    _, test_logits, test_days = predict(candidate.model, test.tensors)
    val_y, win_y = val.tensors.win_y.numpy(), test.tensors.win_y.numpy()
    alone = apply_platt(test_logits, *fit_platt(val_logits[val_y >= 0], val_y[val_y >= 0]))
    true_days = np.expm1(test.tensors.log_days_y.numpy())
    return {
        "win_weight": candidate.blend.win_weight,
        "days_weight": candidate.blend.days_weight,
        "graph_model_alone": {
            "auc": float(roc_auc_score(win_y, alone)) if 0 < win_y.sum() < win_y.size else None,
            "brier": float(np.mean((alone - win_y) ** 2)),
            "mae_days": float(np.mean(np.abs(np.expm1(clamp_log_days(candidate.intervals, test_days)) - true_days))),
        },
    }


def _index(stage: str | None, stages: tuple[str, ...]) -> int:
    return stages.index(stage) if stage in stages else -1


def _accuracies(
    true: np.ndarray, predictions: dict[str, np.ndarray], majority: int, crm: np.ndarray | None = None
) -> dict[str, Any]:
    """Stage accuracy of each prediction (the model, the baseline, the serving version), of the
    majority training stage (no skill) and, against ground truth only, of the CRM-reported stage."""
    known = true >= 0
    n = int(known.sum())
    if n == 0:
        return {"evaluated": 0}
    accuracy = {name: float(np.mean(predicted[known] == true[known])) for name, predicted in predictions.items()}
    accuracy["majority_stage"] = float(np.mean(true[known] == majority))
    if crm is not None:
        accuracy["crm_reported"] = float(np.mean(crm[known] == true[known]))
    return {"evaluated": n, "accuracy": accuracy}


def _confusion(true: np.ndarray, predicted: np.ndarray, stages: int) -> list[list[int]]:
    """Counts of [true stage][predicted stage] over the snapshots whose stage is known."""
    known = true >= 0
    counts = np.zeros((stages, stages), dtype=np.int64)
    np.add.at(counts, (true[known], predicted[known]), 1)
    return counts.tolist()


def _leakage_warnings(train: Snapshots) -> list[str]:
    """A warning for each tabular feature that alone nearly separates won from lost training deals."""
    x, y = train.tensors.tabular.numpy(), train.tensors.win_y.numpy()
    closed = y >= 0
    warnings: list[str] = []
    if len(np.unique(y[closed])) < 2:
        return warnings
    for j, name in enumerate(TABULAR_FEATURES):
        column = x[closed, j]
        if np.ptp(column) == 0:
            continue
        auc = float(roc_auc_score(y[closed], column))
        if max(auc, 1 - auc) >= LEAKAGE_AUC:
            warnings.append(
                f"possible leakage: {name} alone separates won from lost training deals (AUC "
                f"{max(auc, 1 - auc):.3f}); check how the export records it (e.g. lost deals with amount 0)"
            )
    return warnings


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    win = metrics["win"]
    stage = metrics.get("stage_open_deals") or metrics["stage"]
    accuracy = stage.get("accuracy", {})
    return {
        "win_auc": win["model"]["auc"],
        "win_brier": win["model"]["brier"],
        "gbm_win_auc": win["gradient_boosting"]["auc"],
        "gbm_win_brier": win["gradient_boosting"]["brier"],
        "beats_gbm_auc_and_brier": win["model"]["auc"] > win["gradient_boosting"]["auc"]
        and win["model"]["brier"] < win["gradient_boosting"]["brier"],
        "stage_accuracy": accuracy.get("model"),
        "crm_stage_accuracy": accuracy.get("crm_reported"),
        "stage_accuracy_on": "open deals at the end" if "stage_open_deals" in metrics else "test snapshots",
        "stage_head_skipped": "skipped" in metrics["stage"],
        "days_mae": metrics["days_to_close"]["mae_days"]["model"],
    }


def model_card(manifest: dict[str, Any]) -> str:
    h, m, sizes, window = manifest["headline"], manifest["metrics"], manifest["sizes"], manifest["data_window"]
    win = m["win"]
    lines = [
        f"# Deal model (run {manifest['run']})",
        "",
        "Estimates, for an open deal at a time t, the probability of each stage, the calibrated probability of "
        "winning and the days to close with a p10-p90 interval, from engagement before t (who engages, how "
        "senior, how often, replies, meetings, signals from the account) and the people and ties around the "
        "deal. It never reads the CRM stage.",
        "",
        f"- Data: {sizes['deals']:,} deals; trained on {sizes['train_deals']:,} closed deals "
        f"({sizes['train_snapshots']:,} snapshots, {sizes['train_stage_labels']:,} with a trusted stage), "
        f"tested on the {sizes['test_deals']:,} deals closed from {_day(window['test_cutoff'])} on.",
        f"- Feature schema `{manifest['schema_hash']}`, seed {manifest['seed']}, best epoch {manifest['best_epoch']}.",
        "",
        "## Win probability (test split)",
        "",
        "| model | AUC | Brier | ECE |",
        "|---|---|---|---|",
    ]
    for name in _win_rows(m):
        lines.append(f"| {name} | {win[name]['auc']:.4f} | {win[name]['brier']:.4f} | {win[name]['ece']:.4f} |")
    lines += [
        "",
        "## Stage accuracy",
        "",
        *([m["stage"]["skipped"], ""] if "skipped" in m["stage"] else []),
        "| on | evaluated | model | gradient boosting | majority stage | CRM-reported |",
        "|---|---|---|---|---|---|",
    ]
    for on, source, evaluated, a in _stage_accuracies(m):
        crm = f"{a['crm_reported']:.3f}" if "crm_reported" in a else "- (its own labels)"
        lines.append(
            f"| {on} ({source}) | {evaluated:,} | {a['model']:.3f} | {a['gradient_boosting']:.3f} "
            f"| {a['majority_stage']:.3f} | {crm} |"
        )
    d = m["days_to_close"]
    lines += [
        "",
        f"## Days to close: MAE {d['mae_days']['model']:.1f} days (gradient boosting "
        f"{d['mae_days']['gradient_boosting']:.1f}, median {d['mae_days']['median']:.1f}); p10-p90 interval "
        f"covers {d['p10_p90_coverage']:.0%} of test snapshots.",
        "",
        f"The model {'beats' if h['beats_gbm_auc_and_brier'] else 'does NOT beat'} gradient boosting in both AUC "
        f"and Brier score for win probability.",
        "",
        *([_blend_line(m["blend"]), ""] if "blend" in m else []),
        render_gate(manifest["promotion_gate"]),
        "",
        *(f"**Warning:** {w}" for w in m["warnings"]),
    ]
    return "\n".join(lines)


def write_plots(report: dict[str, Any], folder: Path) -> list[Path]:
    """A deal report's plots: win-probability reliability, training curves, the stage confusion
    matrix (when stages were evaluated) and the close-date interval's coverage; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "reliability.png", folder / "curves.png"]
    plot_reliability(report["reliability"], written[0], "deal model: win probability (test split)")
    plot_curves(report["history"], written[1])
    m = report["metrics"]
    stage = m.get("stage_open_deals") or m["stage"]
    if stage.get("evaluated"):
        stages = report["hyperparameters"]["stages"]
        counts = np.asarray(stage["confusion"])
        fig, ax = plt.subplots(figsize=(5.5, 5))
        ax.imshow(counts, cmap="Blues")
        for (i, j), n in np.ndenumerate(counts):
            ax.text(j, i, str(n), ha="center", va="center", color="white" if n > counts.max() / 2 else "black")
        ax.set_xticks(range(len(stages)), stages, rotation=30, ha="right")
        ax.set_yticks(range(len(stages)), stages)
        ax.set_xlabel("estimated stage")
        ax.set_ylabel(f"true stage ({stage['source']})")
        ax.set_title(f"stage confusion, accuracy {stage['accuracy']['model']:.3f}")
        fig.tight_layout()
        written.append(folder / "stage_confusion.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    days = m["days_to_close"]
    groups = [g for g, c in days["p10_p90_coverage_by_group"].items() if c is not None]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(groups, [days["p10_p90_coverage_by_group"][g] for g in groups], color="tab:blue")
    ax.axhline(0.8, linestyle="--", color="grey", label="nominal 80%")
    ax.set_ylim(0, 1)
    ax.set_ylabel("test snapshots inside p10-p90")
    ax.set_title(f"close-date interval coverage ({days['p10_p90_coverage']:.0%} overall)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    written.append(folder / "interval_coverage.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)
    return written


def _win_rows(metrics: dict[str, Any]) -> list[str]:
    return [name for name in ("model", "gradient_boosting", "no_skill", PROMOTED) if name in metrics["win"]]


def _stage_accuracies(metrics: dict[str, Any]) -> Iterator[tuple[str, str, int, dict[str, float]]]:
    """(what was evaluated, label source, count, accuracies) for each stage evaluation that ran."""
    for key in ("stage", "stage_open_deals"):
        if key in metrics and metrics[key].get("evaluated"):
            m = metrics[key]
            yield key.replace("_", " "), m["source"], m["evaluated"], m["accuracy"]


def _day(ts: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _blend_line(blend: dict[str, Any]) -> str:
    """What each part of the served heads contributes (`_blend_parts`)."""
    alone = blend["graph_model_alone"]
    auc = "-" if alone["auc"] is None else f"{alone['auc']:.4f}"
    return (
        f"served heads (weights chosen on validation): win {blend['win_weight']:.2f} x graph model + "
        f"{1 - blend['win_weight']:.2f} x gradient boosting, days {blend['days_weight']:.2f} x graph model; "
        f"the graph model alone: AUC {auc}, Brier {alone['brier']:.4f}, days MAE {alone['mae_days']:.1f}"
    )


def render_report(r: dict[str, Any]) -> str:
    m, h = r["metrics"], r["headline"]
    lines = [
        f"run {r['run']}"
        + (f" -> registered as {r['version']}" if r.get("version") else "")
        + f" ({r['seconds']:.0f} s)",
        f"{'win probability':<22} {'AUC':>7} {'Brier':>7} {'ECE':>7}",
    ]
    for name in _win_rows(m):
        w = m["win"][name]
        lines.append(f"{name:<22} {w['auc']:>7.4f} {w['brier']:>7.4f} {w['ece']:>7.4f}")
    if "skipped" in m["stage"]:
        lines.append(m["stage"]["skipped"])
    for on, source, evaluated, a in _stage_accuracies(m):
        lines.append(
            f"stage accuracy, {on} ({evaluated}, {source}): model {a['model']:.3f}, "
            f"gradient boosting {a['gradient_boosting']:.3f}, majority stage {a['majority_stage']:.3f}"
            + (f", CRM {a['crm_reported']:.3f}" if "crm_reported" in a else "")
            + (f", promoted {a[PROMOTED]:.3f}" if PROMOTED in a else "")
        )
    d = m["days_to_close"]
    lines.append(
        f"days-to-close MAE: model {d['mae_days']['model']:.1f}, gradient boosting "
        f"{d['mae_days']['gradient_boosting']:.1f}, median {d['mae_days']['median']:.1f}; "
        f"p10-p90 coverage {d['p10_p90_coverage']:.0%}"
    )
    lines.append(
        f"model {'beats' if h['beats_gbm_auc_and_brier'] else 'does NOT beat'} gradient boosting in AUC and "
        f"Brier; calibration Brier {r['calibration']['brier']:.4f}, ECE {r['calibration']['ece']:.4f}"
    )
    if "blend" in m:
        lines.append(_blend_line(m["blend"]))
    lines.append(render_gate(r["promotion_gate"]))
    lines += [f"WARNING: {w}" for w in m["warnings"]]
    return "\n".join(lines)
