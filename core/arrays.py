"""Array helpers every layer shares."""

from __future__ import annotations

import numpy as np


def positions(table: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Each key's index in the sorted `table` (int64), -1 where it is absent."""
    if not table.shape[0]:
        return np.full(keys.shape[0], -1, dtype=np.int64)
    at = np.minimum(np.searchsorted(table, keys), table.shape[0] - 1)
    return np.where(table[at] == keys, at, -1).astype(np.int64)
