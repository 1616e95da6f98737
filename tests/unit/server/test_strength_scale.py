"""Strength scores: percentiles of the tenant's own relationships, ties counting half, stable in
time (a rebuild later, which any tenant's data can cause, scores every hop the same)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.clock import FixedClock
from gnn.registry import ModelRegistry
from server.strength_scale import StrengthScale, strength_scale
from tests.support.serving import AS_OF, serving, world

DAY = 86400


def test_a_rebuild_later_scores_every_relationship_the_same(tmp_path: Path) -> None:
    snap = serving(world(), FixedClock(AS_OF), ModelRegistry(tmp_path)).holder.current.snapshot
    now, later = strength_scale(snap, AS_OF), strength_scale(snap, AS_OF + 45 * DAY)
    assert now.percentiles.keys() == later.percentiles.keys()
    for tenant in now.percentiles:
        for edge in np.flatnonzero(snap.edge_tenant == tenant):
            at = {s.as_of: float(snap.strength(np.array([edge]), s.as_of)[0]) for s in (now, later)}
            assert now.score(at[now.as_of], tenant) == later.score(at[later.as_of], tenant)


def test_ties_count_half_and_what_is_not_a_number_is_not_scored() -> None:
    single = StrengthScale({0: np.full(101, 0.3)}, AS_OF)
    assert single.score(0.3, 0) == 50  # a tenant's only relationship is its median, not its weakest
    assert single.score(0.9, 0) == 100 and single.score(0.1, 0) == 0
    assert single.score(float("nan"), 0) is None and single.score(0.3, tenant=1) is None
