"""Deal features, labels, tensors, the buyer-process cohort rule and signal ranking, on small
hand-built data (the Neo4j reads and the served answers are tested in tests/integration)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from core.errors import CohortTooSmallError
from gnn.buyer_process import BuyerProcessAnswer, BuyerProcessModel, CohortMinimum
from gnn.deal_model import DealModel, DealModelConfig, loss, stack
from gnn.deals import (
    COMPANY_FEATURES,
    DAY,
    PERSON_FEATURES,
    TABULAR_FEATURES,
    deal_features,
    snapshot_times,
    stage_label,
    trusted_history,
)
from gnn.signals import rank_signals
from graph.deal_bundle import Deal, DealBundle, Job, Signal

STAGES = ("discovery", "evaluation", "proposal", "negotiation")
T0 = 1_750_000_000


def _deal(events: list[tuple[int, str, str, bool]], **overrides: object) -> Deal:
    """A deal created at T0 with (day, kind, buyer, inbound) interactions."""
    events = sorted(events)
    base = Deal(
        tenant="t1",
        deal_id="D1",
        cid="acme.example",
        industry="fintech",
        size_band="201-1000",
        owner="rep",
        amount=50_000.0,
        created=T0,
        product="platform",
        stage_names=list(STAGES),
        stage_ts=[T0, T0 + 10 * DAY, T0 + 20 * DAY, T0 + 30 * DAY],
        closed=T0 + 40 * DAY,
        outcome="won",
        close_date=-1,
        contacts={"champ": "champion", "boss": "economic_buyer"},
        ts=np.array([T0 + d * DAY for d, *_ in events], dtype=np.int64),
        kind=np.array([k for _, k, *_ in events], dtype=object),
        buyer=np.array([b for _, _, b, _ in events], dtype=object),
        seller=np.array(["rep"] * len(events), dtype=object),
        inbound=np.array([i for *_, i in events], dtype=bool),
        activity=np.array([f"a{i}" for i in range(len(events))], dtype=object),
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def _data(deal: Deal) -> DealBundle:
    return DealBundle(
        deals=[deal],
        jobs={
            "champ": [Job("acme.example", T0 - 400 * DAY, -1, "manager", "operations")],
            "boss": [Job("acme.example", T0 - 900 * DAY, -1, "vp", "finance")],
            "legal1": [Job("acme.example", T0 - 900 * DAY, -1, "director", "legal")],
            "ops": [Job("acme.example", T0 - 900 * DAY, -1, "director", "operations")],
        },
        staff={"acme.example": ["champ", "boss", "legal1", "ops"]},
        signals={
            ("t1", "ops"): [Signal("s1", "ops", "poll_answer", "contract_expiry", "10-12_months", T0 + 25 * DAY)],
            ("t1", "champ"): [Signal("s2", "champ", "webinar_attended", "industry_trends", "attended", T0 + 26 * DAY)],
        },
        ties={("t1", "champ"): [("rep", np.array([T0 - 60 * DAY, T0 - 30 * DAY, T0 + 5 * DAY]))]},
    )


EVENTS = [
    (1, "email", "champ", False),
    (2, "email", "champ", True),
    (12, "meeting", "boss", False),
    (14, "email", "boss", True),
    (22, "meeting", "legal1", False),
]


def test_features_at_t_use_nothing_after_t() -> None:
    deal = _deal(EVENTS)
    data = _data(deal)
    t = T0 + 15 * DAY
    before = deal_features(data, deal, t)
    assert before.tabular.shape == (len(TABULAR_FEATURES),) and before.company.shape == (len(COMPANY_FEATURES),)
    assert before.persons.shape == (2, len(PERSON_FEATURES))  # champion and economic buyer: legal joins later
    # Everything after t: interactions, a signal, a new job at the account, a later tie event.
    later = _deal([*EVENTS, (16, "meeting", "legal1", False), (18, "email", "ops", True)])
    data_later = _data(later)
    data_later.signals[("t1", "boss")] = [Signal("s3", "boss", "page_visit", "pricing", "pricing_page", t + DAY)]
    data_later.jobs["ops"].append(Job("acme.example", t + 2 * DAY, -1, "vp", "operations"))
    after = deal_features(data_later, later, t)
    np.testing.assert_array_equal(before.tabular, after.tabular)
    np.testing.assert_array_equal(before.persons, after.persons)
    assert before.person_pids == after.person_pids
    # ... while anything before t does change them.
    earlier = _deal([*EVENTS, (13, "email", "ops", True)])
    assert not np.array_equal(deal_features(_data(earlier), earlier, t).tabular, before.tabular)


def test_features_read_engagement_and_prior_ties() -> None:
    deal = _deal(EVENTS)
    f = deal_features(_data(deal), deal, T0 + 27 * DAY)
    tab = dict(zip(TABULAR_FEATURES, f.tabular.tolist()))
    assert np.expm1(tab["log_interactions"]) == pytest.approx(5)
    assert tab["reply_rate"] == pytest.approx(1.0)  # both outbound emails were answered within a week
    assert tab["senior_engaged"] == 1.0 and tab["gatekeeper_engaged"] == 1.0 and tab["economic_buyer_engaged"] == 1.0
    assert tab["contract_polls_90d"] == 1.0  # the ops director's poll answer, though not on the deal
    champ = dict(zip(PERSON_FEATURES, f.persons[f.person_pids.index("champ")].tolist()))
    assert np.expm1(champ["log_prior_tie_events"]) == pytest.approx(2)  # only the ties from before the deal
    assert champ["prior_tie_with_owner"] == 1.0 and champ["role_champion"] == 1.0


def test_stage_labels_come_only_from_trusted_histories() -> None:
    deal = _deal(EVENTS)
    assert trusted_history(deal, STAGES)
    assert [stage_label(deal, T0 + d * DAY, STAGES) for d in (5, 15, 25, 35)] == [0, 1, 2, 3]
    lagging = dataclasses.replace(deal, stage_names=list(STAGES[:2]), stage_ts=deal.stage_ts[:2])
    jumped = dataclasses.replace(deal, stage_names=["discovery", "negotiation"], stage_ts=[T0, T0 + 15 * DAY])
    lost = dataclasses.replace(deal, outcome="lost")
    assert all(stage_label(d, T0 + 25 * DAY, STAGES) == -1 for d in (lagging, jumped, lost))
    assert deal.crm_stage_at(T0 + 25 * DAY) == "proposal" and jumped.crm_stage_at(T0 + 25 * DAY) == "negotiation"


def test_every_closed_deal_is_looked_at_the_fastest_too() -> None:
    """A week in, then every two weeks; a deal that closes within a week halfway through."""
    assert snapshot_times(_deal([]), as_of=T0 + 100 * DAY) == [T0 + 7 * DAY, T0 + 21 * DAY, T0 + 35 * DAY]
    assert snapshot_times(_deal([], closed=T0 + 4 * DAY), as_of=T0 + 100 * DAY) == [T0 + 2 * DAY]
    assert snapshot_times(_deal([], closed=T0), as_of=T0 + 100 * DAY) == []


def test_deal_model_batches_and_learns() -> None:
    torch.manual_seed(0)
    deal = _deal(EVENTS)
    data = _data(deal)
    times = [T0 + d * DAY for d in (3, 11, 21, 31)]
    features = [deal_features(data, deal, t) for t in times]
    tensors = stack(features, [0, 1, 2, 3], [1.0] * 4, [float(np.log1p((deal.closed - t) / DAY)) for t in times])
    part = tensors.batch(torch.tensor([2, 0]))
    assert torch.equal(part.tabular, tensors.tabular[[2, 0]])
    assert torch.equal(
        part.persons, torch.cat([torch.from_numpy(features[2].persons), torch.from_numpy(features[0].persons)])
    )
    model = DealModel(
        DealModelConfig(
            tabular=len(TABULAR_FEATURES),
            person=len(PERSON_FEATURES),
            company=len(COMPANY_FEATURES),
            stages=4,
            hidden=16,
            dropout=0.0,
        )
    )
    model.fit_scaling(tensors)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = loss(model, tensors).item()
    for _ in range(100):
        optimizer.zero_grad()
        value = loss(model, tensors)
        value.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    assert loss(model, tensors).item() < first / 3
    stage_logits, _, _ = model(tensors)
    assert stage_logits.argmax(1).tolist() == [0, 1, 2, 3]


def _buyer_model(min_deals: int, min_tenants: int) -> tuple[BuyerProcessModel, CohortMinimum]:
    """12 fintech 201-1000 deals from 3 tenants (8 with stage histories), 6 retail deals from 2."""
    rows = [("fintech", "201-1000", i % 3, i < 8) for i in range(12)] + [
        ("retail", "51-200", i % 2, True) for i in range(6)
    ]
    facts = {
        "tenant": [r[2] for r in rows],
        "industry": [r[0] for r in rows],
        "size_band": [r[1] for r in rows],
        "amount_band": ["10k-50k"] * len(rows),
        "product": ["platform"] * len(rows),
        "won": [i % 2 == 0 for i in range(len(rows))],
        "days_to_close": [30.0 + i for i in range(len(rows))],
        "stage_days": [[5.0 + i, 10.0, 8.0, 4.0] if r[3] else [] for i, r in enumerate(rows)],
        **{
            k: [i % 2 for i in range(len(rows))]
            for k in (
                "economic_buyer_before_proposal",
                "warm_introduction",
                "multithreaded",
                "legal_or_procurement_engaged",
            )
        },
    }
    return BuyerProcessModel({"stages": list(STAGES), "facts": facts}), CohortMinimum(min_deals, min_tenants)


def _predict(
    model: tuple[BuyerProcessModel, CohortMinimum], cohort: dict[str, str], **options: bool
) -> BuyerProcessAnswer:
    return model[0].predict(cohort, minimum=model[1], **options)


def test_buyer_process_refuses_a_cohort_just_under_the_minimum() -> None:
    cohort = {"industry": "fintech", "size_band": "201-1000", "amount_band": "", "product": ""}
    answer = _predict(_buyer_model(8, 3), cohort, roll_up=False)  # 8 deals with a stage history: just enough
    assert (answer.cohort_deals, answer.cohort_tenants, answer.rolled_up) == (12, 3, False)
    assert [s.stage for s in answer.stages] == list(STAGES)
    assert answer.stages[0].p10 <= answer.stages[0].p50 <= answer.stages[0].p90
    assert answer.drivers == []  # no driver arm has 8 deals: none is shown
    with pytest.raises(CohortTooSmallError, match="12 closed deals from 3 tenants"):
        _predict(_buyer_model(9, 3), cohort, roll_up=False)
    with pytest.raises(CohortTooSmallError):
        _predict(_buyer_model(8, 4), cohort, roll_up=False)


def test_buyer_process_rolls_a_company_cohort_up_and_says_so() -> None:
    retail = {"industry": "retail", "size_band": "51-200", "amount_band": "10k-50k", "product": "platform"}
    answer = _predict(_buyer_model(8, 3), retail, roll_up=True)  # retail has 2 tenants: up to the whole network
    assert answer.rolled_up and answer.cohort == dict.fromkeys(retail, "") and answer.cohort_deals == 18
    with pytest.raises(CohortTooSmallError):
        _predict(_buyer_model(8, 3), retail, roll_up=False)


def test_a_contract_expiry_answer_by_someone_off_the_deal_ranks_first() -> None:
    deal = _deal(EVENTS, closed=-1, outcome="open")
    ranked = rank_signals(_data(deal), deal, T0 + 30 * DAY, limit=10, visible=lambda pid: True)
    assert [(s.kind, s.pid) for s in ranked[:2]] == [("poll_answer", "ops"), ("webinar_attended", "champ")]
    assert "not on the deal" in ranked[0].why and 0 < ranked[1].relevance < ranked[0].relevance <= 1
    # Weeks without a word from the buyer: the deal went silent.
    quiet = rank_signals(_data(deal), deal, T0 + 60 * DAY, limit=10, visible=lambda pid: True)
    assert any(s.kind == "went_silent" for s in quiet)
    # The champion leaving the account is a signal too.
    data = _data(deal)
    data.jobs["champ"] = [Job("acme.example", T0 - 400 * DAY, T0 + 28 * DAY, "manager", "operations")]
    left = rank_signals(data, deal, T0 + 30 * DAY, limit=10, visible=lambda pid: True)
    assert ("job_change", "left_account") in {(s.kind, s.topic) for s in left}


def test_signals_about_people_the_tenant_may_not_see_are_left_out() -> None:
    deal = _deal(EVENTS, closed=-1, outcome="open")
    ranked = rank_signals(_data(deal), deal, T0 + 30 * DAY, limit=10, visible=lambda pid: pid != "ops")
    assert ranked and all(s.pid != "ops" for s in ranked)
