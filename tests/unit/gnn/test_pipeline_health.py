"""The hygiene audit's checks, score and sample on hand-made deals."""

from __future__ import annotations

import numpy as np
import pytest

from gnn.deals import DAY
from gnn.pipeline_health import HYGIENE_THRESHOLD, audit_hygiene, days_overdue, open_deals
from graph.deal_bundle import Deal

STAGES = ("discovery", "evaluation", "proposal", "negotiation")
T = 1_000 * DAY


def deal(
    deal_id: str,
    stages: list[str],
    *,
    contacts: dict[str, str] | None = None,
    touches: list[int] = (),  # type: ignore[assignment]
    closed: int = -1,
    created: int = T - 100 * DAY,
    close_date: int = -1,
) -> Deal:
    ts = np.asarray(sorted(touches), dtype=np.int64)
    return Deal(
        tenant="acme", deal_id=deal_id, cid="buyer", industry="", size_band="", owner="rep", amount=1.0,
        created=created, product="", stage_names=stages, stage_ts=[created + i * DAY for i in range(len(stages))],
        closed=closed, outcome="won" if closed >= 0 else "open", close_date=close_date,
        contacts={"p": "champion"} if contacts is None else contacts,
        ts=ts, kind=np.asarray(["email"] * len(ts)), buyer=np.asarray(["p"] * len(ts)),
        seller=np.asarray(["rep"] * len(ts)), inbound=np.ones(len(ts), dtype=bool),
        activity=np.asarray([f"a{i}" for i in range(len(ts))], dtype=object),
    )  # fmt: skip


def test_each_check_and_the_score() -> None:
    deals = [
        deal(
            "clean",
            ["discovery", "proposal"],
            contacts={"p": "champion", "e": "economic_buyer"},
            touches=[T - DAY],
            close_date=T + 30 * DAY,
        ),
        deal("stale", ["discovery"], touches=[T - 40 * DAY], close_date=T - 12 * DAY),
        deal("bare", ["discovery", "proposal"], contacts={}),
        deal("won", ["discovery"], closed=T - DAY),  # closed: not audited
        deal("future", ["discovery"], created=T + DAY),  # not yet created at T
    ]
    estimates = {"clean": "proposal", "stale": "evaluation", "bare": "proposal"}
    audit = audit_hygiene(deals, T, lambda live: [estimates[d.deal_id] for d in live], STAGES)
    assert audit.open_deals == 3 and [d.deal_id for d in open_deals(deals, T)] == ["clean", "stale", "bare"]
    shares = {c.check.code: (c.deals, c.passed) for c in audit.checks}
    assert shares == {
        "stage_agrees": (3, 2),  # "stale": CRM discovery, behaviour evaluation
        "active": (3, 1),
        "close_date_ahead": (2, 1),  # "bare" records none; "stale"'s passed
        "has_contacts": (3, 2),
        "has_interactions": (3, 2),
        "economic_buyer_named": (2, 1),  # at proposal: "clean" names one, "bare" does not
    }
    assert audit.score == pytest.approx(1 / 3)  # only "clean" passes every check
    assert audit.below_threshold == (audit.score < HYGIENE_THRESHOLD)
    found = {f.deal_id: f.issues for f in audit.sample}
    assert found["clean"] == ()
    assert found["stale"] == (
        "no interaction for 40 days while the CRM shows it open",
        "CRM says discovery, behaviour says evaluation",
        "the CRM's close date passed 12 days ago",
    )
    assert not any(line.startswith("close dates") for line in audit.not_audited)
    assert set(found["bare"]) == {
        "no buyer-side contact listed",
        "no interaction synced",
        "no interaction for 100 days while the CRM shows it open",
        "no economic buyer listed at proposal",
    }


def test_a_close_date_passes_once_its_day_is_over() -> None:
    overdue = {
        hours: days_overdue(deal("d", ["discovery"], close_date=T - hours * 3600), T) for hours in (-5, 0, 23, 24)
    }
    assert overdue == {-5: 0, 0: 0, 23: 0, 24: 1}
    assert days_overdue(deal("none", ["discovery"]), T) == 0


def test_without_a_stage_estimate_that_check_is_left_out_and_said() -> None:
    audit = audit_hygiene([deal("a", ["discovery"], touches=[T - DAY])], T, None, STAGES)
    assert audit.score == 1.0 and audit.checks[0].deals == 0
    assert any(line.startswith("stage agreement") for line in audit.not_audited)
    assert any(line.startswith("close dates") for line in audit.not_audited)


def test_the_sample_is_random_bounded_and_reproducible() -> None:
    deals = [deal(f"d{i:03d}", ["discovery"], touches=[T - DAY]) for i in range(120)]
    first = audit_hygiene(deals, T, None, STAGES, sample=50, seed=3)
    again = audit_hygiene(deals, T, None, STAGES, sample=50, seed=3)
    other = audit_hygiene(deals, T, None, STAGES, sample=50, seed=4)
    assert len(first.sample) == 50 and first.sample == again.sample and first.sample != other.sample
    assert audit_hygiene([], T, None, STAGES).score == 1.0
