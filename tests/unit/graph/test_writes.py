import numpy as np

from core.vocabulary import INTERACTION_KINDS
from graph.events import decode_event, decode_events, event_code
from graph.writes import knows_updates


def test_event_codes_round_trip() -> None:
    for ts, kind, from_lo in [(1700000000, "email", True), (1, "meeting", False), (2**33, "message", True)]:
        assert decode_event(event_code(ts, kind, from_lo)) == (ts, kind, from_lo)


def test_knows_updates_group_pairs_per_tenant_and_dedupe() -> None:
    rows = [
        {"tenant": "t", "kind": "email", "ts": 10, "from": "b", "to": ["a", "c"]},
        {"tenant": "t", "kind": "email", "ts": 10, "from": "b", "to": ["a"]},  # the same event again
        {"tenant": "t", "kind": "call", "ts": 20, "from": "a", "to": ["b"]},
        {"tenant": "u", "kind": "email", "ts": 30, "from": "a", "to": ["b"]},
    ]
    updates = {(u["tenant"], u["lo"], u["hi"]): u["events"] for u in knows_updates(rows)}
    assert updates == {
        ("t", "a", "b"): sorted([event_code(10, "email", False), event_code(20, "call", True)]),
        ("t", "b", "c"): [event_code(10, "email", True)],
        ("u", "a", "b"): [event_code(30, "email", True)],
    }


def test_decode_events_matches_decode_event() -> None:
    cases = [(1_700_000_000, "email", True), (1_700_000_001, "meeting", False), (5, "message", True)]
    ts, kind, direction = decode_events(np.array([event_code(*c) for c in cases], dtype=np.int64))
    assert [(int(t), INTERACTION_KINDS[k], d == 0) for t, k, d in zip(ts, kind, direction)] == [
        decode_event(event_code(*c)) for c in cases
    ]
