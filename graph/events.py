"""The event codec: how one interaction between a pair is packed into the pair's KNOWS event log.

An event code is ts * 8 + kind * 2 + direction, where direction 0 is lo->hi and 1 is hi->lo (lo and
hi: the pair's pids in sorted order). Codes are unique per event, which makes re-ingest a no-op."""

from __future__ import annotations

import numpy as np

from core.vocabulary import INTERACTION_KINDS, TWO_WAY_INTERACTIONS

_KIND_CODE = {kind: i for i, kind in enumerate(INTERACTION_KINDS)}
TWO_WAY_CODES = sorted(_KIND_CODE[k] for k in TWO_WAY_INTERACTIONS)  # kinds that count in both directions


def event_code(ts: int, kind: str, from_lo: bool) -> int:
    return ts * 8 + _KIND_CODE[kind] * 2 + (0 if from_lo else 1)


def decode_event(code: int) -> tuple[int, str, bool]:
    """(ts, kind, from_lo) of an event code."""
    return code // 8, INTERACTION_KINDS[(code // 2) % 4], code % 2 == 0


def encode_events(ts: np.ndarray, kind: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """`event_code` over arrays: ts (int64 seconds), kind index, direction (0 from lo, 1 from hi)."""
    codes: np.ndarray = ts.astype(np.int64) * 8 + kind.astype(np.int64) * 2 + direction.astype(np.int64)
    return codes


def decode_events(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`decode_event` over an int64 array: (ts, kind index into INTERACTION_KINDS as int8,
    direction as int8: 0 from lo, 1 from hi)."""
    return codes >> 3, ((codes >> 1) & 3).astype(np.int8), (codes & 1).astype(np.int8)
