"""Calibration of the link model's scores into probabilities (Platt scaling), and the reliability
numbers and plot every training run records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from core.errors import InvalidInputError


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(a, b) such that sigmoid(a * logit + b) is calibrated on (logits, labels)."""
    if np.unique(labels).shape[0] < 2:
        raise InvalidInputError("calibration needs both positive and negative examples")
    fit = LogisticRegression(C=1e6).fit(logits.reshape(-1, 1), labels)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def apply_platt(logits: np.ndarray, a: float, b: float) -> np.ndarray:
    probability: np.ndarray = 1.0 / (1.0 + np.exp(-(a * logits + b)))
    return probability


def reliability(probability: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict[str, object]:
    """Brier score, expected calibration error and the per-bin curve (mean predicted vs observed)."""
    which = np.minimum((probability * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    predicted = np.bincount(which, weights=probability, minlength=bins) / np.maximum(count, 1)
    observed = np.bincount(which, weights=labels, minlength=bins) / np.maximum(count, 1)
    ece = float(np.sum(count * np.abs(predicted - observed)) / max(1, probability.shape[0]))
    return {
        "brier": float(np.mean((probability - labels) ** 2)),
        "ece": ece,
        "count": count.tolist(),
        "predicted": predicted.tolist(),
        "observed": observed.tolist(),
    }


def plot_reliability(curve: dict[str, object], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = np.asarray(curve["count"])
    used = count > 0
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.plot(
        np.asarray(curve["predicted"])[used],
        np.asarray(curve["observed"])[used],
        marker="o",
        label=f"model (Brier {curve['brier']:.3f}, ECE {curve['ece']:.3f})",
    )
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
