"""Gradient-boosted trees as plain arrays: a fitted scikit-learn HistGradientBoosting model (a binary
classifier or a regressor, numeric features) as the registry stores it (tensors, no pickle), and its
raw prediction in NumPy: the log-odds of a classifier, the value of a regressor. The deal model's
served win and days heads blend the graph model with such trees (`DealBlend`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class BoostedTrees:
    """Every tree's nodes, concatenated; `roots` holds each tree's first node."""

    baseline: float
    feature: np.ndarray  # int64: the feature a split node tests
    threshold: np.ndarray  # float64: left when the value is at most this
    missing_left: np.ndarray  # bool: where a missing (NaN) value goes
    left: np.ndarray  # int64: node indices into these arrays
    right: np.ndarray
    leaf: np.ndarray  # bool
    value: np.ndarray  # float64: a leaf's contribution
    roots: np.ndarray  # int64

    @classmethod
    def of(cls, fitted: Any) -> BoostedTrees:
        """The trees of a fitted HistGradientBoostingClassifier (binary) or HistGradientBoostingRegressor."""
        trees = [predictors[0].nodes for predictors in fitted._predictors]
        if any(len(predictors) != 1 for predictors in fitted._predictors):
            raise ValueError("only binary classifiers and regressors: one tree per iteration")
        if any(nodes["is_categorical"].any() for nodes in trees):
            raise ValueError("categorical splits are not supported: the features are numeric")
        offsets = np.cumsum([0] + [nodes.shape[0] for nodes in trees[:-1]]).astype(np.int64)
        nodes = np.concatenate(trees) if trees else np.zeros(0, dtype=[("value", "f8")])

        def children(name: str) -> np.ndarray:
            return np.concatenate([t[name].astype(np.int64) + o for t, o in zip(trees, offsets)]) if trees else offsets

        return cls(
            baseline=float(np.ravel(fitted._baseline_prediction)[0]),
            feature=nodes["feature_idx"].astype(np.int64),
            threshold=nodes["num_threshold"].astype(np.float64),
            missing_left=nodes["missing_go_to_left"].astype(bool),
            left=children("left"),
            right=children("right"),
            leaf=nodes["is_leaf"].astype(bool),
            value=nodes["value"].astype(np.float64),
            roots=offsets,
        )

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The raw prediction for each row of `x` (n, features): the baseline plus every tree's leaf."""
        x = np.asarray(x, dtype=np.float64)
        node = np.broadcast_to(self.roots, (x.shape[0], self.roots.shape[0])).copy()
        rows = np.arange(x.shape[0])[:, None]
        while not self.leaf[node].all():  # one level of every tree per pass
            value = x[rows, self.feature[node]]
            left = np.where(np.isnan(value), self.missing_left[node], value <= self.threshold[node])
            node = np.where(self.leaf[node], node, np.where(left, self.left[node], self.right[node]))
        out: np.ndarray = self.baseline + self.value[node].sum(axis=1)
        return out

    def to_state(self) -> dict[str, Any]:
        return {
            f.name: (getattr(self, f.name) if f.name == "baseline" else torch.from_numpy(getattr(self, f.name)))
            for f in fields(self)
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BoostedTrees:
        arrays = {k: v.numpy() for k, v in state.items() if k != "baseline"}
        return cls(baseline=float(state["baseline"]), **arrays)


# How a blended deal version's served heads are made (its manifest's "heads", part of its schema hash).
BLEND_HEADS = "graph+gradient-boosting-v1"


@dataclass(frozen=True)
class DealBlend:
    """The deal model's served win and days heads: the graph model's win logit and log days, each
    blended with gradient boosting's on the same deal-level tabular features, with weights chosen on
    the validation deals (weight 1: the graph model alone; 0: the trees alone). On data the graph
    adds nothing to (a CRM export without interactions), the trees carry the answer."""

    win_trees: BoostedTrees
    days_trees: BoostedTrees
    win_weight: float
    days_weight: float

    def win_logit(self, graph_logit: np.ndarray, tabular: np.ndarray) -> np.ndarray:
        blended: np.ndarray = self.win_weight * graph_logit + (1 - self.win_weight) * self.win_trees.raw(tabular)
        return blended

    def log_days(self, graph_log_days: np.ndarray, tabular: np.ndarray) -> np.ndarray:
        blended: np.ndarray = self.days_weight * graph_log_days + (1 - self.days_weight) * self.days_trees.raw(tabular)
        return blended

    def to_state(self) -> dict[str, Any]:
        return {
            "win_trees": self.win_trees.to_state(),
            "days_trees": self.days_trees.to_state(),
            "win_weight": self.win_weight,
            "days_weight": self.days_weight,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DealBlend:
        return cls(
            BoostedTrees.from_state(state["win_trees"]),
            BoostedTrees.from_state(state["days_trees"]),
            float(state["win_weight"]),
            float(state["days_weight"]),
        )
