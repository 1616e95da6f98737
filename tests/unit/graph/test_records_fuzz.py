"""Fuzzing of the ingest format's edge: whatever a record or a file holds, parsing ends in a row
within the documented bounds or in a RecordError naming the reason, never in another exception."""

from __future__ import annotations

import contextlib
import gzip
import math
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import RecordError
from core.vocabulary import (
    KINDS,
    MAX_AMOUNT,
    MAX_RECIPIENTS,
    MAX_STAGE_CHANGES,
    MAX_TIME,
    MIN_TIME,
    is_code,
    is_tenant_id,
)
from graph.ingest import read_records
from graph.pseudonymize import Pseudonymizer
from graph.records import parse_record

PSEUDO = Pseudonymizer("unit-test-key-0123456789")
FIELDS = (
    "kind",
    "tenant",
    "email",
    "company",
    "title",
    "title_level",
    "function",
    "from",
    "to",
    "company_size",
    "company_industry",
    "id",
    "account",
    "owner",
    "amount",
    "created",
    "product",
    "stages",
    "outcome",
    "closed",
    "deal",
    "role",
    "team",
    "type",
    "ts",
    "topic",
    "value",
)
FUZZ = settings(max_examples=2000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Values a hostile or broken export might hold, by what the field holds when it is valid, beside
# arbitrary JSON of every type.
_TIMES = st.one_of(
    st.sampled_from(
        [
            MIN_TIME - 1,
            MAX_TIME,
            MAX_TIME - 1,
            2**32,
            2**63,
            -(2**63),
            10**13,
            1e300,
            float("inf"),
            float("nan"),
            -0.0,
            True,
            "",
            "0" * 13,
            str(MAX_TIME),
            "2100-01-01",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "9999-12-31T00:00:00Z",
            "1e12",
            "2026-02-30",
            "2026-03-01T09:30:00",
            "-1",
        ]
    ),
    st.integers(MIN_TIME - 10, MAX_TIME + 10),
    st.integers(),
)
_NUMBERS = st.one_of(
    st.sampled_from(
        [
            -1e-9,
            MAX_AMOUNT * 10,
            float("inf"),
            float("-inf"),
            float("nan"),
            1e300,
            "1e999",
            "Infinity",
            "NaN",
            True,
            "",
            "12,5",
            2**70,
        ]
    ),
    st.floats(),
)
_TEXT = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "a\nb",
            "x" * 300 + ".example",
            "Vice President, Sales",
            "rep@acme.example",
            "UPPER",
            "café",
            "\x00",
            "a" * 2000,
            "../../etc/passwd",
        ]
    ),
    st.text(max_size=80),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=200, max_size=300),
)
_STAGES = st.one_of(
    st.sampled_from(
        [
            [{"stage": "s", "ts": 1}] * (MAX_STAGE_CHANGES + 1),
            [{"stage": "b", "ts": 20}, {"stage": "a", "ts": 10}],
            [{"stage": "ok", "ts": MAX_TIME}],
            [{"stage": "Free Text", "ts": 1}],
            "a@1;b@x",
            [["discovery", 1]],
            [None],
        ]
    ),
    st.lists(st.fixed_dictionaries({"stage": _TEXT, "ts": _TIMES}), max_size=3),
)
_RECIPIENTS = st.one_of(
    st.sampled_from(
        [
            [],
            ["rep@acme.example"],
            [f"p{i}@x.example" for i in range(101)],
            "a@x.example;",
            [None],
            [["nested@x.example"]],
        ]
    ),
    st.lists(_TEXT, max_size=3),
)
_TIME_FIELDS = {"ts", "created", "closed"}
_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def _hostile(kind: str, name: str) -> st.SearchStrategy[Any]:
    if name in _TIME_FIELDS or (kind == "employment" and name in ("from", "to")):
        typed = _TIMES
    elif name in ("amount", "company_size"):
        typed = _NUMBERS
    elif name == "stages":
        typed = _STAGES
    elif name == "to":
        typed = _RECIPIENTS
    else:
        typed = _TEXT
    return st.one_of(typed, typed, typed, _JSON)


# One valid record of each kind: the fuzzer changes a few fields of one, so most records are one
# hostile value away from being accepted.
VALID: dict[str, dict[str, Any]] = {
    "member": {"email": "rep@acme.example", "role": "rep", "team": "emea", "title": "Account Executive"},
    "employment": {
        "email": "ops@buyer.example",
        "company": "buyer.example",
        "title": "Director of Operations",
        "from": "2023-04-01",
        "to": "2025-01-01",
        "company_industry": "retail",
        "company_size": 800,
    },
    "deal": {
        "id": "D-1",
        "account": "buyer.example",
        "owner": "rep@acme.example",
        "amount": 48000,
        "created": "2026-01-10",
        "product": "platform",
        "outcome": "won",
        "closed": "2026-03-01",
        "stages": [{"stage": "discovery", "ts": "2026-01-10"}, {"stage": "proposal", "ts": 1770000000}],
    },
    "deal_contact": {"deal": "D-1", "email": "cfo@buyer.example", "role": "economic_buyer"},
    "interaction": {
        "type": "email",
        "ts": "2026-02-01T10:00:00Z",
        "from": "rep@acme.example",
        "to": ["ops@buyer.example"],
        "deal": "D-1",
        "id": "m-1",
    },
    "signal": {
        "type": "poll_answer",
        "ts": 1770000000,
        "email": "ops@buyer.example",
        "topic": "contract_expiry",
        "value": "10-12_months",
    },
}


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """A valid record with one field (sometimes a few) made hostile, dropped, or added."""
    kind = draw(st.sampled_from(KINDS))
    record: dict[str, Any] = {"kind": kind, "tenant": "acme", **VALID[kind]}
    own = st.sampled_from(sorted(record))
    names = draw(
        st.lists(
            st.one_of(own, own, own, st.sampled_from(FIELDS)), min_size=1, max_size=draw(st.sampled_from([1, 1, 1, 3]))
        )
    )
    for name in names:
        if draw(st.integers(0, 9)) == 0:
            record.pop(name, None)
        else:
            record[name] = draw(_hostile(kind, name))
    return record


@FUZZ
@given(records())
def test_any_record_parses_within_bounds_or_is_refused_with_a_reason(record: dict[str, Any]) -> None:
    try:
        kind, tenant, row = parse_record(record, PSEUDO)
    except RecordError as error:
        assert error.reason and len(error.reason) < 400  # noqa: PT017 - a refusal is one of two valid outcomes
        return
    assert kind in KINDS and is_tenant_id(tenant)
    times = {"interaction": ("ts",), "signal": ("ts",), "employment": ("from", "to"), "deal": ("created", "closed")}
    for name in times.get(kind, ()):
        assert (row[name] == -1 and name in ("to", "closed")) or MIN_TIME <= row[name] < MAX_TIME
    for ts in row.get("stage_ts", ()):
        assert MIN_TIME <= ts < MAX_TIME
    if kind == "deal":
        assert row["closed"] == -1 or row["closed"] >= row["created"]
        assert row["stage_ts"] == sorted(row["stage_ts"]) and len(row["stage_ts"]) <= MAX_STAGE_CHANGES
    if kind == "employment":
        assert row["to"] == -1 or row["to"] >= row["from"]
    if kind == "interaction":
        assert 1 <= len(row["to"]) <= MAX_RECIPIENTS and row["from"] not in row["to"]
    if "amount" in row:
        assert math.isfinite(row["amount"]) and 0 <= row["amount"] <= MAX_AMOUNT
    for name in ("topic", "value", "product", "team", "role"):
        if row.get(name):
            assert is_code(row[name])
    assert "@" not in repr(row), "no address may survive parsing"


_lines = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"\xef\xbb\xbf{}",
            b"[" * 5000,
            b'{"a": ' + b"9" * 5000 + b"}",
            b"\xff\xfe\x00",
            b'{"kind": "member"}',
            b"NaN",
            b'{"kind": "deal", "amount": Infinity}',
            b"\x00" * 10,
        ]
    ),
)


@FUZZ
@given(lines=st.lists(_lines, max_size=6), csv=st.booleans(), gz=st.booleans(), cut=st.integers(0, 64))
def test_any_file_reads_as_records_or_numbered_rejections(
    tmp_path_factory: Any, lines: list[bytes], csv: bool, gz: bool, cut: int
) -> None:
    data = b"\n".join(lines)
    if csv:
        data = b"kind,tenant,email\n" + data
    if gz:
        data = gzip.compress(data)[: max(10, len(gzip.compress(data)) - cut)]  # sometimes cut short
    path: Path = tmp_path_factory.mktemp("fuzz") / ("members" + (".csv" if csv else ".jsonl") + (".gz" if gz else ""))
    path.write_bytes(data)
    previous = 0
    for line, record, _ in read_records(path):
        assert line >= previous and line >= 1
        previous = line
        if isinstance(record, RecordError):
            assert record.reason
            continue
        assert isinstance(record, dict)
        with contextlib.suppress(RecordError):
            parse_record(record, PSEUDO, "member")
