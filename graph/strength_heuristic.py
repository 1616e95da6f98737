"""The relationship-strength heuristic used until a relationship-strength model is promoted:
frequency x recency x reciprocity, each in [0, 1]. Defined once, here, with its two
implementations (NumPy for the serving snapshot, a Cypher expression for the query twin) side by
side so they cannot drift apart:

    strength = (1 - exp(-count / FREQUENCY_SCALE))
             * 2 ** (-age_days / HALF_LIFE_DAYS)
             * (0.5 + 0.5 * min(1, 2 * two_way / count))

`age_days` counts from the last interaction to the scoring time (never negative); `two_way` is
min(contacts one way, contacts the other way), so a perfectly balanced tie has share 1."""

from __future__ import annotations

import numpy as np

NAME = "heuristic-v1"
FREQUENCY_SCALE = 5.0
HALF_LIFE_DAYS = 180.0
_LN2 = 0.6931471805599453


def heuristic_strength(count: np.ndarray, two_way: np.ndarray, last_ts: np.ndarray, as_of: int) -> np.ndarray:
    """Strength per relationship (float64), from its evidence arrays."""
    count = count.astype(np.float64)
    age_days = np.maximum(0, as_of - last_ts.astype(np.int64)) / 86400.0
    share = np.minimum(1.0, 2.0 * two_way / np.maximum(count, 1.0))
    result: np.ndarray = (
        (1.0 - np.exp(-count / FREQUENCY_SCALE)) * np.exp(-_LN2 * age_days / HALF_LIFE_DAYS) * (0.5 + 0.5 * share)
    )
    return result


def cypher_strength(rel: str) -> str:
    """The same formula as a Cypher expression over relationship variable `rel`; needs `$as_of`."""
    return (
        f"((1.0 - exp(-toFloat({rel}.count) / {FREQUENCY_SCALE})) "
        f"* exp(-{_LN2} * (CASE WHEN $as_of > {rel}.last_ts THEN $as_of - {rel}.last_ts ELSE 0 END) / 86400.0 "
        f"/ {HALF_LIFE_DAYS}) "
        f"* (0.5 + 0.5 * CASE WHEN 2.0 * {rel}.two_way / {rel}.count > 1.0 THEN 1.0 "
        f"ELSE 2.0 * {rel}.two_way / {rel}.count END))"
    )
