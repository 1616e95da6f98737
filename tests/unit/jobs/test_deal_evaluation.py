"""The deal report's leakage check, on hand-built training snapshots."""

from __future__ import annotations

import numpy as np

from gnn.deal_model import stack
from gnn.deals import COMPANY_FEATURES, PERSON_FEATURES, TABULAR_FEATURES, DealFeatures
from jobs.train_deals import Snapshots, _leakage_warnings


def _snapshots(amounts: list[float], won: list[float]) -> Snapshots:
    rng = np.random.default_rng(0)
    features = []
    for amount in amounts:
        tabular = rng.normal(size=len(TABULAR_FEATURES)).astype(np.float32)
        tabular[TABULAR_FEATURES.index("log_amount")] = np.log1p(amount)
        persons = np.zeros((1, len(PERSON_FEATURES)), np.float32)
        features.append(DealFeatures(tabular, persons, ["p"], np.zeros(len(COMPANY_FEATURES), np.float32)))
    return Snapshots([], [], stack(features, win_y=won))


def test_a_feature_that_alone_separates_the_outcome_is_reported() -> None:
    won = [1.0, 0.0] * 50
    leaky = _snapshots([50_000.0 if w else 0.0 for w in won], won)  # lost deals exported with amount 0
    (warning,) = _leakage_warnings(leaky)
    assert "log_amount alone separates won from lost" in warning
    honest = _snapshots(list(np.random.default_rng(1).uniform(1e3, 1e5, size=100)), won)
    assert _leakage_warnings(honest) == []
