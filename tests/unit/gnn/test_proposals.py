"""Proposed CRM updates from a deal's evidence: which fields, their stable ids, and the acceptance
rates of recorded decisions, on hand-made deals and outlooks."""

from __future__ import annotations

import dataclasses

import numpy as np

from gnn.deal_scoring import DealOutlook
from gnn.deals import DAY
from gnn.proposals import acceptance_rates, propose
from tests.unit.gnn.test_pipeline_health import T, deal


def outlook(stage: str, probability: float = 0.8) -> DealOutlook:
    mid = float(np.log1p(20))
    return DealOutlook(0.6, (mid - 0.3, mid, mid + 0.3), stage, probability)


def test_each_field_with_its_evidence() -> None:
    engaged = deal("busy", ["discovery"], contacts={"p": "champion"}, touches=[T - 3 * DAY, T - 2 * DAY, T - DAY])
    engaged = dataclasses.replace(engaged, buyer=np.asarray(["p", "q", "q"]))
    quiet = deal("quiet", ["discovery", "proposal"], touches=[T - 60 * DAY])
    found = propose([engaged, quiet], [outlook("discovery"), outlook("evaluation", 0.7)], T)
    by = {(p.deal_id, p.field): p for p in found}
    assert set(by) == {
        ("busy", "close_date"),
        ("busy", "contact"),  # q: two interactions, not listed
        ("quiet", "stage"),
        ("quiet", "close_date"),
        ("quiet", "next_step"),  # 60 days without an interaction
    }
    stage = by[("quiet", "stage")]
    assert (stage.current, stage.proposed, stage.confidence) == ("proposal", "evaluation", 0.7)
    assert by[("busy", "contact")].proposed == "q" and by[("busy", "contact")].confidence == 0.4
    assert by[("quiet", "next_step")].evidence == ("no interaction for 60 days",)
    assert by[("busy", "close_date")].proposed == "1972-10-17"  # T + 20 days
    assert 0 < by[("busy", "close_date")].confidence < 1
    assert by[("busy", "close_date")].evidence[0] == "the CRM records no close date"
    assert [p.confidence for p in found] == sorted((p.confidence for p in found), reverse=True)
    again = propose([engaged, quiet], [outlook("discovery"), outlook("evaluation", 0.7)], T)
    assert [p.proposal_id for p in again] == [p.proposal_id for p in found]
    assert len({p.proposal_id for p in found}) == len(found)


def test_a_close_date_is_proposed_only_where_the_crms_is_missing_past_or_implausible() -> None:
    """The model expects the close in 20 days (p10 about 14, p90 about 27)."""
    dated = {name: deal(name, ["discovery"], touches=[T - DAY], close_date=T + days * DAY) for name, days in
             (("plausible", 21), ("past", -3), ("far", 200))}  # fmt: skip
    found = propose(list(dated.values()), [outlook("discovery")] * 3, T)
    by = {p.deal_id: p for p in found if p.field == "close_date"}
    assert set(by) == {"past", "far"}
    assert by["past"].evidence[0] == "the CRM's close date 1972-09-24 passed 3 days ago"
    assert by["far"].current == "1973-04-15" and by["far"].evidence[0].endswith("lies outside the expected p10-p90")


def test_acceptance_rates_per_field() -> None:
    rates = acceptance_rates([("stage", "accept"), ("stage", "reject"), ("contact", "accept")])
    assert rates == {"stage": {"decided": 2.0, "accepted": 0.5}, "contact": {"decided": 1.0, "accepted": 1.0}}
