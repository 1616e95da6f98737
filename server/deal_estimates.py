"""Every open deal's stage estimate, computed by the serving state's refresh loop so that
`EstimateDealStage` answers from memory: a forward pass of the deal model over a deal and its
occlusion variants costs milliseconds, a lookup microseconds.

A refresh re-estimates only the deals whose records or surroundings it read again (the deal
index's `touched`); everything is re-estimated when the index was read whole, when the deal model
changes, and once the estimates are `MAX_AGE_S` old, so that the features counted in days since
something (the last interaction, the deal's creation) follow the clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from gnn.deal_scoring import DealEstimate, DealScorer
from graph.deal_bundle import Deal, DealBundle
from server.deal_index import DealIndex, DealKey

MAX_AGE_S = 3600


@dataclass(frozen=True)
class DealEstimates:
    """Estimates of the open deals of `index` by deal-model `version`; all of them computed at
    `as_of` or later (the touched ones at the refresh that touched them)."""

    index: DealIndex | None = None
    version: str = ""
    as_of: int = 0
    by_deal: dict[DealKey, DealEstimate] = field(default_factory=dict)

    def get(self, key: DealKey) -> DealEstimate | None:
        return self.by_deal.get(key)


def estimate_open_deals(
    previous: DealEstimates, index: DealIndex, scorer: DealScorer | None, now: int
) -> DealEstimates:
    """`previous` brought up to `index` and `scorer` at `now` (the module's docstring)."""
    if scorer is None:
        return DealEstimates()
    stale = previous.version != scorer.version or now - previous.as_of >= MAX_AGE_S
    if not stale and previous.index is index:
        return previous
    whole = stale or index.touched is None
    again = {(d.tenant, d.deal_id) for d in index.network.deals} if whole else set(index.touched or ())
    kept = {} if whole else {k: e for k, e in previous.by_deal.items() if k not in again and index.find(*k)}
    for view, deals in _open_deals(index, again, now).values():
        for deal, estimate in zip(deals, scorer.estimates(view, deals, now), strict=True):
            kept[(deal.tenant, deal.deal_id)] = estimate
    return DealEstimates(index, scorer.version, now if whole else previous.as_of, kept)


def _open_deals(index: DealIndex, keys: set[DealKey], now: int) -> dict[str, tuple[DealBundle, list[Deal]]]:
    """Those of the deals that are open at `now`, by tenant, with the tenant's view of them."""
    by_tenant: dict[str, tuple[DealBundle, list[Deal]]] = {}
    for key in sorted(keys):
        found = index.find(*key)
        if found is not None and not 0 <= found[1].closed <= now:
            by_tenant.setdefault(key[0], (found[0], []))[1].append(found[1])
    return by_tenant
