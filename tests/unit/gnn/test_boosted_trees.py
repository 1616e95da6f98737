"""Gradient-boosted trees as the registry stores them predict exactly what scikit-learn's fitted
model predicts (missing values included), after a round trip through `torch.save` with
`weights_only`; and a blend's weights mean what they say."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from gnn.boosted_trees import BLEND_HEADS, BoostedTrees, DealBlend
from gnn.deals import DEFAULT_STAGES, deal_schema_hash
from gnn.model_kinds import DEAL


def _data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1500, 5))
    x[rng.random(x.shape) < 0.1] = np.nan
    signal = np.nan_to_num(x[:, 0]) - 0.5 * np.nan_to_num(x[:, 3]) + rng.normal(scale=0.5, size=1500)
    return x, signal


def _stored(trees: BoostedTrees) -> BoostedTrees:
    buffer = io.BytesIO()
    torch.save(trees.to_state(), buffer)
    buffer.seek(0)
    return BoostedTrees.from_state(torch.load(buffer, weights_only=True))


@pytest.mark.parametrize("seed", [0, 1])
def test_the_stored_trees_predict_what_scikit_learn_predicts(seed: int) -> None:
    x, signal = _data(seed)
    classifier = HistGradientBoostingClassifier(random_state=seed).fit(x, signal > 0)
    regressor = HistGradientBoostingRegressor(loss="absolute_error", random_state=seed).fit(x, signal)
    unseen = _data(seed + 10)[0]
    np.testing.assert_allclose(_stored(BoostedTrees.of(classifier)).raw(unseen), classifier.decision_function(unseen))
    np.testing.assert_allclose(_stored(BoostedTrees.of(regressor)).raw(unseen), regressor.predict(unseen))


def test_a_blend_weighs_the_graph_model_against_the_trees() -> None:
    x, signal = _data(2)
    trees = BoostedTrees.of(HistGradientBoostingRegressor(random_state=0).fit(x, signal))
    graph = np.full(x.shape[0], 3.0)
    for weight, expected in ((1.0, graph), (0.0, trees.raw(x)), (0.25, 0.25 * graph + 0.75 * trees.raw(x))):
        blend = DealBlend(trees, trees, weight, weight)
        np.testing.assert_allclose(blend.win_logit(graph, x), expected)
        np.testing.assert_allclose(blend.log_days(graph, x), expected)


def test_a_blended_version_has_its_own_schema_so_code_without_the_blend_refuses_it() -> None:
    """Its calibration is fitted to the blend: read by code that serves the graph model alone, it
    would be wrong. Versions trained before the blend keep the hash they had."""
    stages = list(DEFAULT_STAGES)
    blended, before = {"stages": stages, "heads": BLEND_HEADS}, {"stages": stages}
    assert DEAL.schema_hash(blended) == deal_schema_hash(DEFAULT_STAGES, BLEND_HEADS)
    assert DEAL.schema_hash(before) == deal_schema_hash(DEFAULT_STAGES) != DEAL.schema_hash(blended)
