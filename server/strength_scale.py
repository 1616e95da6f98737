"""Strength people can read: a relationship's strength as a 0-100 score and a band.

Strengths (calibrated probabilities from the link model, or the heuristic's score) are small
numbers whose scale depends on the model and the network, so an answer also carries the score a
rep can read: the strength's percentile among the asking tenant's own relationships, at the
serving clock's time (recomputed whenever the strengths change). "87" means stronger than 87% of
the relationships your organisation's data shows. Only the tenant's own relationships set its
scale, so another tenant's data never moves it. A path scores as its weakest hop: an introduction
chain is as warm as its coldest handoff. A tenant with no relationship of its own has no scale
yet: its answers carry score 0 and no band.

Bands on that score: strong from 75, medium from 40, weak below. `relgraph evaluate paths` checks
them against what happens next: per band, how often a hop of a served path really interacted
within the horizon (README, "Strength scores and bands")."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from server.snapshot import Snapshot

BANDS = ((75, "strong"), (40, "medium"), (0, "weak"))  # (lowest score, band), strongest first


@dataclass(frozen=True)
class StrengthScale:
    """Per tenant (snapshot index), the 0th..100th percentiles of its own relationships' strengths
    at `as_of`. Scores compare strengths taken at that same time: recency fades every heuristic
    strength by the same factor, so a score does not drift between rebuilds, and a rebuild (which
    any tenant's new data can cause) does not move it."""

    percentiles: dict[int, np.ndarray] = field(default_factory=dict)
    as_of: int = 0

    def scores(self, strengths: np.ndarray, tenant: int) -> np.ndarray | None:
        """Per strength (taken at `as_of`), the share of `tenant`'s relationships (in percent, 0-100)
        it is above, ties counting half; -1 where it is not a number; None when the tenant has none."""
        scale = self.percentiles.get(tenant)
        if scale is None:
            return None
        below = np.searchsorted(scale, strengths, side="left")
        at_most = np.searchsorted(scale, strengths, side="right")
        scored: np.ndarray = np.where(np.isfinite(strengths), np.clip(np.rint((below + at_most) / 2), 0, 100), -1)
        return scored.astype(np.int64)

    def score(self, strength: float, tenant: int) -> int | None:
        """`scores` of one strength; None when the tenant has none or it is not a number."""
        scored = self.scores(np.array([strength]), tenant)
        return None if scored is None or scored[0] < 0 else int(scored[0])


def band(score: int) -> str:
    """The band of a 0-100 score."""
    return next(name for lowest, name in BANDS if score >= lowest)


def strength_scale(snap: Snapshot, as_of: int) -> StrengthScale:
    """The scale of `snap`'s strengths at `as_of`, tenant by tenant."""
    strengths = snap.strength(np.arange(snap.relationships), as_of)
    levels = np.linspace(0.0, 1.0, 101)
    return StrengthScale(
        {
            int(tenant): np.quantile(strengths[snap.edge_tenant == tenant], levels)
            for tenant in np.unique(snap.edge_tenant)
        },
        as_of,
    )
