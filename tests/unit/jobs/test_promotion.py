"""The promotion gate: its comparisons, and promotion through it or past it, on a real registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gnn.registry import ModelRegistry
from jobs.promotion import (
    MRR_MARGIN,
    PROMOTED,
    Incumbent,
    deal_verdict,
    link_verdict,
    promote_forced,
    promote_through_gate,
)

NOBODY: Incumbent[Any] = Incumbent(None, None, "no link model promoted yet")


def _mrr(historical: float, random: float) -> dict[str, float]:
    return {"mrr_historical": historical, "mrr_random": random}


def test_a_link_model_must_not_lose_to_any_baseline_or_the_serving_version_beyond_the_margin() -> None:
    metrics = {"model": _mrr(0.30, 0.40), "recency_weighted_count": _mrr(0.25, 0.40 + MRR_MARGIN / 2)}
    passed = link_verdict(metrics, NOBODY)
    assert passed.passed and "no link model promoted yet" in passed.reasons[-1]
    metrics["recency_weighted_count"] = _mrr(0.25, 0.42)
    refused = link_verdict(metrics, NOBODY)
    assert not refused.passed
    assert refused.reasons[0] == "mrr_random: 0.4000 against 0.4200 for recency_weighted_count (margin 0.005)"
    metrics = {"model": _mrr(0.30, 0.40), PROMOTED: _mrr(0.32, 0.40)}
    assert not link_verdict(metrics, Incumbent(object(), "v0001")).passed


def test_a_deal_model_is_held_to_win_probability_and_stage_accuracy_but_not_to_the_crm() -> None:
    def metrics(model_stage: float) -> dict[str, Any]:
        return {
            "win": {
                "snapshots": 100,
                "won_share": 0.4,
                "model": {"auc": 0.70, "brier": 0.20},
                "gradient_boosting": {"auc": 0.68, "brier": 0.21},
                "no_skill": {"auc": 0.5, "brier": 0.24},
            },
            "stage": {"accuracy": {"model": model_stage, "gradient_boosting": 0.80, "crm_reported": 0.99}},
        }

    assert deal_verdict(metrics(0.80), NOBODY).passed
    refused = deal_verdict(metrics(0.55), NOBODY)
    assert not refused.passed and refused.reasons[0].startswith("accuracy: 0.5500 against 0.8000 for gradient_boosting")
    without_stage_head = {**metrics(0.0), "stage": {"skipped": "stage head skipped: ..."}}
    assert deal_verdict(without_stage_head, NOBODY).passed


def test_a_refused_version_is_registered_not_promoted_and_the_override_is_recorded(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    gates = ({"passed": True, "reasons": ["fine"]}, {"passed": False, "reasons": ["auc: worse"]})
    good, bad = (registry.write("deal", {"promotion_gate": g}, {}, lambda folder: None) for g in gates)
    assert promote_through_gate(registry, "deal", good.name) == f"promoted deal model {good.name}"
    said = promote_through_gate(registry, "deal", bad.name)
    assert "NOT promoted: auc: worse" in said and "--force" in said
    assert registry.promoted_name("deal") == good.name
    promote_forced(registry, "deal", bad.name)
    assert registry.promoted_name("deal") == bad.name
    assert len(registry.version("deal", bad.name).manifest["forced_promotions"]) == 1
