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

    def score(self, strength: float, tenant: int) -> int | None:
        """The share of `tenant`'s relationships (in percent, 0-100) this strength (taken at
        `as_of`) is above, ties counting half; None when the tenant has none or it is not a number."""
        scale = self.percentiles.get(tenant)
        if scale is None or not np.isfinite(strength):
            return None
        below = np.searchsorted(scale, strength, side="left")
        at_most = np.searchsorted(scale, strength, side="right")
        return int(np.clip(round((below + at_most) / 2), 0, 100))


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
