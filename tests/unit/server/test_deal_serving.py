"""Deal answers over the in-memory graph and the serving state's promoted deal model (untrained:
these tests hold the serving path, tenancy and the clock, not the model's quality)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.clock import FixedClock
from core.errors import InvalidRequestError, NoModelError, NotFoundError
from gnn import deal_scoring
from gnn.deal_scoring import DealScorer
from gnn.deals import DEFAULT_STAGES, TABULAR_FEATURES, deal_features
from gnn.model_kinds import DEAL
from gnn.registry import ModelRegistry
from graph.deal_bundle import Deal, DealBundle
from graph.reader import ALL_TENANTS
from relgraph.v1 import buyer_intelligence_pb2 as pb
from tests.support.serving import AS_OF, BUYER, OPS, Serving, serving, untrained_models, world


@pytest.fixture
def served(tmp_path: Path) -> Serving:
    return serving(world(), FixedClock(AS_OF), untrained_models(tmp_path))


def test_an_open_deal_is_estimated_against_what_the_crm_says(served: Serving) -> None:
    answer = served.call("acme", "EstimateDealStage", pb.EstimateDealStageRequest(deal_id="D-1"))
    assert [s.stage for s in answer.stages] == list(DEFAULT_STAGES)
    assert sum(s.probability for s in answer.stages) == pytest.approx(1.0, abs=1e-5)
    assert answer.crm_stage == "proposal" and answer.model_version == "deal/v0001"
    assert answer.disagrees_with_crm == (answer.estimated_stage != "proposal")
    assert AS_OF <= answer.close_p10.seconds <= answer.expected_close.seconds <= answer.close_p90.seconds
    assert 0.0 <= answer.win_probability <= 1.0 and answer.evidence


def test_a_model_trained_on_a_crms_own_stages_serves_them(tmp_path: Path) -> None:
    stages = ("qualify", "demo", "proposal", "contract")
    served = serving(world(), FixedClock(AS_OF), untrained_models(tmp_path, stages))
    answer = served.call("acme", "EstimateDealStage", pb.EstimateDealStageRequest(deal_id="D-1"))
    assert [s.stage for s in answer.stages] == list(stages) and answer.estimated_stage in stages


def test_a_model_without_a_stage_history_estimates_no_stage_and_says_why(tmp_path: Path) -> None:
    served = serving(world(), FixedClock(AS_OF), untrained_models(tmp_path, stage_head=False))
    answer = served.call("acme", "EstimateDealStage", pb.EstimateDealStageRequest(deal_id="D-1"))
    assert not answer.stages and not answer.estimated_stage and not answer.disagrees_with_crm
    assert answer.crm_stage == "proposal" and 0.0 <= answer.win_probability <= 1.0
    assert any("trained without a trusted stage history" in m for m in answer.missing_evidence)


def test_a_deal_is_answered_only_to_its_own_tenant(served: Serving) -> None:
    for tenant, deal in (("globex", "D-1"), ("acme", "D-404")):
        with pytest.raises(NotFoundError, match="no such deal in your organisation's data"):
            served.call(tenant, "EstimateDealStage", pb.EstimateDealStageRequest(deal_id=deal))
        with pytest.raises(NotFoundError):
            served.call(tenant, "ListDealSignals", pb.ListDealSignalsRequest(deal_id=deal))
    with pytest.raises(InvalidRequestError, match="closed"):
        served.call("acme", "EstimateDealStage", pb.EstimateDealStageRequest(deal_id="D-2"))


def test_signals_come_only_from_people_the_tenant_may_see(served: Serving) -> None:
    """globex recorded vp's poll answer about the same account; acme's deal never shows it."""
    signals = served.call("acme", "ListDealSignals", pb.ListDealSignalsRequest(deal_id="D-1")).signals
    assert [(s.kind, s.value, s.who.pid) for s in signals] == [
        ("poll_answer", "10-12_months", served.warm_paths._pseudo.pid(OPS))
    ]
    assert signals[0].who.identified and signals[0].who.company_domain == BUYER


def test_without_a_promoted_model_the_answer_says_how_to_get_one(tmp_path: Path) -> None:
    served = serving(world(), FixedClock(AS_OF), ModelRegistry(tmp_path))
    with pytest.raises(NoModelError, match="relgraph models promote"):
        served.call("acme", "EstimateDealStage", pb.EstimateDealStageRequest(deal_id="D-1"))
    with pytest.raises(NoModelError, match="no buyer model promoted"):
        served.call("acme", "PredictBuyerProcess", pb.PredictBuyerProcessRequest(company_domain=BUYER))


def _scorer_and_deal(tmp_path: Path, **state_changes: Any) -> tuple[DealScorer, DealBundle, Deal]:
    _, state = untrained_models(tmp_path).promoted("deal", DEAL.schema_hash)
    data = world().deal_bundle(ALL_TENANTS)
    deal = next(d for d in data.deals if d.deal_id == "D-1")
    return DealScorer({**state, **state_changes}, "v0001"), data, deal


def test_a_deal_unlike_any_in_training_is_flagged_and_its_interval_widened(tmp_path: Path) -> None:
    scorer, data, deal = _scorer_and_deal(tmp_path)
    seen = scorer.estimate(data, deal, AS_OF)
    features = deal_features(data, deal, AS_OF).tabular
    inside = [features.tolist(), features.tolist()]
    assert scorer.estimate(data, deal, AS_OF).missing_evidence == seen.missing_evidence
    assert not any(m.startswith("unlike") for m in seen.missing_evidence)
    younger = features.copy()
    younger[TABULAR_FEATURES.index("log_age_days")] -= 1.0  # every training deal was younger than this one
    scorer, _, _ = _scorer_and_deal(tmp_path / "older", tabular_range=[inside[0], younger.tolist()])
    older = scorer.estimate(data, deal, AS_OF)
    (line,) = [m for m in older.missing_evidence if m.startswith("unlike any deal the model learned from")]
    assert "days since the deal was created" in line
    assert older.close_p10 == AS_OF and older.close_p90 >= seen.close_p90


def test_evidence_never_describes_an_interaction_that_does_not_exist(tmp_path: Path) -> None:
    scorer, data, deal = _scorer_and_deal(tmp_path)
    empty = np.zeros(0, dtype=np.int64)
    quiet = dataclasses.replace(
        deal, ts=empty, kind=empty.astype(object), buyer=empty.astype(object), seller=empty.astype(object)
    )
    quiet = dataclasses.replace(quiet, inbound=np.zeros(0, dtype=bool))
    labels = [label for _, label in zip(*scorer._occlusions(deal_features(data, quiet, AS_OF)))]
    assert "days since the deal was created: 92" in labels
    assert not any("last interaction" in label or "started by the buyer" in label for label in labels)


@pytest.mark.parametrize("rows", [3, 4096])  # a pass per deal; every deal in one pass
def test_estimates_in_batches_are_the_one_by_one_estimates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: int
) -> None:
    scorer, data, _ = _scorer_and_deal(tmp_path)
    alone = [scorer.estimate(data, deal, AS_OF) for deal in data.deals]
    monkeypatch.setattr(deal_scoring, "_BATCH_ROWS", rows)
    batched = scorer.estimates(data, data.deals, AS_OF)
    assert len(data.deals) > 1 and len(batched) == len(alone)
    for a, b in zip(alone, batched, strict=True):
        assert a.win_probability == pytest.approx(b.win_probability, abs=1e-6)
        assert [d for d, _ in a.evidence] == [d for d, _ in b.evidence] and a.crm_stage == b.crm_stage
