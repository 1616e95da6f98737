"""The relationship-strength heuristic used until a relationship-strength model is promoted:
frequency x recency, each in [0, 1]. Defined once, here, with its three implementations (NumPy for
the serving snapshot, a compiled scalar for the warm-path search kernel, a Cypher expression for
the query twin) side by side so they cannot drift apart:

    strength = (1 - exp(-count / FREQUENCY_SCALE)) * 2 ** (-age_days / HALF_LIFE_DAYS)

`age_days` counts from the last interaction to the scoring time (never negative). The constants
were chosen by `relgraph evaluate paths` on the SNAP email network and a generated network
(README, "Warm-path ranking against what happened"): a 30-day half-life and a slow frequency
saturation rank the introductions that really happen next best; a reciprocity factor (heuristic-v1
halved one-way ties) made the ranking worse on both, so two-way share is evidence, not score."""

from __future__ import annotations

import math

import numba
import numpy as np

NAME = "heuristic-v2"
FREQUENCY_SCALE = 20.0
HALF_LIFE_DAYS = 30.0
_LN2 = 0.6931471805599453


def frequency_factor(count: np.ndarray) -> np.ndarray:
    """The frequency part of the strength: also its upper bound at any time (recency is at most 1)."""
    factor: np.ndarray = 1.0 - np.exp(-count.astype(np.float64) / FREQUENCY_SCALE)
    return factor


def heuristic_strength(count: np.ndarray, last_ts: np.ndarray, as_of: int) -> np.ndarray:
    """Strength per relationship (float64), from its evidence arrays."""
    age_days = np.maximum(0, as_of - last_ts.astype(np.int64)) / 86400.0
    result: np.ndarray = frequency_factor(count) * np.exp(-_LN2 * age_days / HALF_LIFE_DAYS)
    return result


@numba.njit(nogil=True, cache=True)
def strength_of_one(count: int, last_ts: int, as_of: int) -> float:
    """`heuristic_strength` of one relationship, compiled (the search kernel calls it per slot)."""
    age = as_of - np.int64(last_ts)
    age_days = (age if age > 0 else 0) / 86400.0
    return (1.0 - math.exp(-np.float64(count) / FREQUENCY_SCALE)) * math.exp(-_LN2 * age_days / HALF_LIFE_DAYS)


def cypher_strength(rel: str) -> str:
    """The same formula as a Cypher expression over relationship variable `rel`; needs `$as_of`."""
    return (
        f"((1.0 - exp(-toFloat({rel}.count) / {FREQUENCY_SCALE})) "
        f"* exp(-{_LN2} * (CASE WHEN $as_of > {rel}.last_ts THEN $as_of - {rel}.last_ts ELSE 0 END) / 86400.0 "
        f"/ {HALF_LIFE_DAYS}))"
    )
