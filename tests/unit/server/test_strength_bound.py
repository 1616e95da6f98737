"""The per-person strength bound that lets the warm-path search drop a partial path before its last
hop: no relationship of the person is ever stronger, and the strongest one reaches it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from server import snapshot as snapshots
from tests.support.serving import AS_OF, world


def test_no_relationship_is_ever_stronger_than_its_peoples_bound() -> None:
    snap = snapshots.build(world())
    rng = np.random.default_rng(0)
    model = replace(snap, edge_strength=rng.uniform(0, 1, snap.relationships).astype(np.float32))
    lo, hi = snapshots.edge_endpoints(snap)
    for served in (snap, model):  # the heuristic's strengths, and a model's
        bound = served.strength_bound()
        for as_of in (0, AS_OF, AS_OF + 10**8):
            strength = served.strength(np.arange(served.relationships), as_of)
            assert (strength <= bound[lo]).all() and (strength <= bound[hi]).all()
        at_last = served.strength(np.arange(served.relationships), 0)  # no decay yet: each at its strongest
        strongest = np.zeros(served.people)
        np.maximum.at(strongest, lo, at_last)
        np.maximum.at(strongest, hi, at_last)
        assert np.array_equal(bound, strongest)
