from typing import Any

import pytest

from core.errors import RecordError
from core.titles import normalize_title
from core.vocabulary import parse_time, size_band
from graph.pseudonymize import Pseudonymizer
from graph.records import parse_record

PSEUDO = Pseudonymizer("unit-test-key-0123456789")

EXAMPLES: dict[str, dict[str, Any]] = {
    "member": {"kind": "member", "tenant": "acme", "email": "rep@acme.example", "title": "Account Executive"},
    "employment": {
        "kind": "employment",
        "tenant": "acme",
        "email": "ops@buyer.example",
        "company": "buyer.example",
        "title": "Director of Operations",
        "from": "2023-04-01",
        "company_industry": "retail",
        "company_size": 800,
    },
    "deal": {
        "kind": "deal",
        "tenant": "acme",
        "id": "D-1",
        "account": "buyer.example",
        "owner": "rep@acme.example",
        "amount": 48000,
        "created": "2026-01-10T09:00:00Z",
        "stages": [{"stage": "discovery", "ts": "2026-01-10T09:00:00Z"}, {"stage": "proposal", "ts": 1770000000}],
    },
    "deal_contact": {
        "kind": "deal_contact",
        "tenant": "acme",
        "deal": "D-1",
        "email": "cfo@buyer.example",
        "role": "economic_buyer",
    },
    "interaction": {
        "kind": "interaction",
        "tenant": "acme",
        "type": "email",
        "ts": "2026-02-01T10:00:00+01:00",
        "from": "rep@acme.example",
        "to": ["ops@buyer.example", "cfo@buyer.example"],
        "deal": "D-1",
    },
    "signal": {
        "kind": "signal",
        "tenant": "acme",
        "type": "poll_answer",
        "ts": "2026-03-01T12:00:00Z",
        "email": "ops@buyer.example",
        "topic": "contract_expiry",
        "value": "10-12_months",
    },
}


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_every_documented_example_is_valid(kind: str) -> None:
    parsed_kind, tenant, row = parse_record(EXAMPLES[kind], PSEUDO)
    assert (parsed_kind, tenant) == (kind, "acme")
    assert "@" not in repr(row), "no email may survive parsing"


def test_interaction_row_is_pseudonymized_and_sorted() -> None:
    _, _, row = parse_record(EXAMPLES["interaction"], PSEUDO)
    assert row["from"] == PSEUDO.pid("rep@acme.example")
    assert row["to"] == sorted([PSEUDO.pid("ops@buyer.example"), PSEUDO.pid("cfo@buyer.example")])
    assert row["ts"] == 1769936400  # 10:00 at +01:00 is 09:00 UTC
    assert row["id"].startswith("h")  # derived, stable id
    assert parse_record(EXAMPLES["interaction"], PSEUDO)[2]["id"] == row["id"]


def test_titles_become_level_and_function_never_text() -> None:
    assert normalize_title("Director of Operations") == ("director", "operations")
    assert normalize_title("VP Finance") == ("vp", "finance")
    assert normalize_title("Chief Executive Officer") == ("c_level", "executive")
    _, _, row = parse_record(EXAMPLES["employment"], PSEUDO)
    assert "Director" not in repr(row)
    assert row["level"] == "director" and row["size_band"] == "201-1000"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tenant": None}, "tenant"),
        ({"tenant": "Acme Corp"}, "tenant"),
        ({"kind": "meeting_note"}, "kind"),
        ({"ts": "yesterday"}, "ts"),
        ({"ts": "2026-02-01T10:00:00"}, "ts"),  # no offset: ambiguous
        ({"from": "not-an-email"}, "from"),
        ({"to": []}, "to"),
        ({"to": ["rep@acme.example"]}, "to"),  # only the sender
        ({"to": [f"p{i}@x.example" for i in range(101)]}, "to"),
        ({"type": "fax"}, "type"),
    ],
)
def test_invalid_interactions_name_the_field(change: dict[str, Any], field: str) -> None:
    record = {**EXAMPLES["interaction"], **change}
    with pytest.raises(RecordError) as info:
        parse_record(record, PSEUDO)
    assert info.value.field == field


def test_signals_refuse_free_text() -> None:
    record = {**EXAMPLES["signal"], "value": "Our contract with Globex ends next spring"}
    with pytest.raises(RecordError, match="no free text"):
        parse_record(record, PSEUDO)


def test_deal_rules() -> None:
    with pytest.raises(RecordError, match="needs 'closed'"):
        parse_record({**EXAMPLES["deal"], "outcome": "won"}, PSEUDO)
    with pytest.raises(RecordError, match="time order"):
        parse_record({**EXAMPLES["deal"], "stages": [{"stage": "b", "ts": 20}, {"stage": "a", "ts": 10}]}, PSEUDO)
    closed = {"outcome": "lost", "closed": "2026-02-10"}
    for change, why in (
        ({"closed": "2026-01-09"}, "'closed' is before 'created'"),
        ({"stages": [{"stage": "discovery", "ts": "2026-01-09"}]}, "stage change is before 'created'"),
        ({"stages": [{"stage": "proposal", "ts": "2026-02-11"}]}, "stage change is after 'closed'"),
        ({"close_date": "2026-01-09"}, "'close_date' is before 'created'"),
        ({"close_date": "soon"}, "'close_date' must be epoch seconds or ISO 8601"),
    ):
        with pytest.raises(RecordError, match=why):
            parse_record({**EXAMPLES["deal"], **closed, **change}, PSEUDO)
    _, _, row = parse_record({**EXAMPLES["deal"], "stages": "discovery@2026-01-11;proposal@2026-02-01"}, PSEUDO)
    assert row["stage_names"] == ["discovery", "proposal"] and row["crm_stage"] == "proposal"
    assert row["close_date"] == -1  # none recorded
    _, _, row = parse_record({**EXAMPLES["deal"], "close_date": "2026-06-30"}, PSEUDO)
    assert row["close_date"] == 1782777600


def test_times_and_bands() -> None:
    assert parse_time(1700000000) == parse_time("1700000000") == 1700000000
    assert parse_time("2026-01-01") == 1767225600
    assert size_band(5) == "1-10" and size_band(1000) == "201-1000" and size_band(10**6) == "5001+"
