"""Who a tenant holds (the visibility rule's `held`), as one mask per tenant: the person is its
member, a relationship it logged has them at one end, or one of its employment, deal or activity
records names them. Checked against that definition on random graphs."""

from __future__ import annotations

import pytest

from server import snapshot as snapshots
from tests.support.serving import random_snapshot


@pytest.mark.parametrize("seed", range(4))
def test_the_held_mask_is_the_rule(seed: int) -> None:
    snap = random_snapshot(seed, people=60, interactions=120)
    lo, hi = snapshots.edge_endpoints(snap)
    assert snap.held_tenant.size  # employment records name people
    for tenant in range(len(snap.tenants.ids)):
        logged = set(lo[snap.edge_tenant == tenant].tolist()) | set(hi[snap.edge_tenant == tenant].tolist())
        expected = [
            tenant in snap.memberships(p).tolist()
            or tenant in snap.held_tenant[snap.held_indptr[p] : snap.held_indptr[p + 1]].tolist()
            or p in logged
            for p in range(snap.people)
        ]
        assert snap.held_mask(tenant).tolist() == expected
        assert 0 < sum(expected) < snap.people  # both kinds of people occur
        assert all(snap.held_by(p, tenant) == expected[p] for p in range(snap.people))
