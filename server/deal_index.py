"""Every tenant's deals, with what surrounds them, held in memory so the deal RPCs answer without a
Neo4j round trip: one `DealBundle` per tenant (its deals, the people at their accounts with their
jobs, the signals the tenant ingested from them, their ties to the tenant's members, who holds
them), the same data `GraphReader.deal_bundle` gives for one tenant's scope; and the companies each
tenant's own records name (the buyers a tenant may ask `PredictBuyerProcess` about).

The serving state's refresh keeps it current from what changed since the last refresh: deals
whose own records changed (`Deal.updated_at`), deals around a person whose records or KNOWS
relationships changed (people on the deal and staff of its account), and deals at an account where
such a person works. Only those deals are read again. An erasure, or a tenant changing whether it
shares identities, rebuilds the index whole (rare, and what is shown of a person then changes
everywhere)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from graph.deal_bundle import Deal, DealBundle, Signal
from graph.reader import ALL_TENANTS, GraphReader, TenantScope

DealKey = tuple[str, str]  # (tenant, deal id)


@dataclass(frozen=True)
class Watermarks:
    """What the index has seen (ms): its deals', people's and relationships' latest changes."""

    deals: int = 0
    people: int = 0
    knows: int = 0


@dataclass(frozen=True)
class DealIndex:
    """The tenants' deals as of one refresh; immutable, replaced whole by the next."""

    network: DealBundle  # every tenant's deals and what surrounds them
    watermarks: Watermarks
    named_companies: dict[str, frozenset[str]]  # tenant -> companies its own records name
    _by_key: dict[DealKey, Deal] = field(default_factory=dict, repr=False)
    _around: dict[str, frozenset[DealKey]] = field(default_factory=dict, repr=False)  # pid -> deals around them
    _at_account: dict[str, frozenset[DealKey]] = field(default_factory=dict, repr=False)  # company -> its deals
    _tenant_views: dict[str, DealBundle] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, network: DealBundle, watermarks: Watermarks, named_companies: dict[str, frozenset[str]]) -> DealIndex:
        around: dict[str, set[DealKey]] = defaultdict(set)
        at_account: dict[str, set[DealKey]] = defaultdict(set)
        for deal in network.deals:
            key = (deal.tenant, deal.deal_id)
            at_account[deal.cid].add(key)
            for pid in _people_around(network, deal):
                around[pid].add(key)
        return cls(
            network,
            watermarks,
            named_companies,
            {(d.tenant, d.deal_id): d for d in network.deals},
            {pid: frozenset(keys) for pid, keys in around.items()},
            {cid: frozenset(keys) for cid, keys in at_account.items()},
            _tenant_views(network),
        )

    @property
    def deals(self) -> int:
        return len(self._by_key)

    def find(self, tenant: str, deal_id: str) -> tuple[DealBundle, Deal] | None:
        """The tenant's deal with what surrounds it, seen as the tenant's own read would see it
        (only the tenant's signals and ties); None for a deal the tenant does not hold."""
        deal = self._by_key.get((tenant, deal_id))
        if deal is None:
            return None
        return self._tenant_views[tenant], deal

    def names_company(self, tenant: str, cid: str) -> bool:
        """Whether the tenant's own records name the company (an account of its deals, an employer)."""
        return cid in self.named_companies.get(tenant, frozenset())

    def affected_by(self, people: Iterable[str], employers: Iterable[str]) -> set[DealKey]:
        """Deals around any of `people` (whose records changed), or at one of the `employers`
        (where those people work)."""
        keys: set[DealKey] = set()
        for pid in people:
            keys |= self._around.get(pid, frozenset())
        for cid in employers:
            keys |= self._at_account.get(cid, frozenset())
        return keys


def _people_around(data: DealBundle, deal: Deal) -> set[str]:
    """Everyone whose records enter the deal's answers: owner, contacts, both sides of its logged
    interactions, and the staff of its account."""
    return {
        deal.owner,
        *deal.contacts,
        *deal.buyer.tolist(),
        *deal.seller.tolist(),
        *data.staff.get(deal.cid, ()),
    } - {""}


def _buyer_side_of(network: DealBundle) -> set[str]:
    """The deals' listed contacts and the buyer side of their logged interactions: whose ties they read."""
    return {p for deal in network.deals for p in (*deal.contacts, *deal.buyer.tolist())}


def _tenant_views(network: DealBundle) -> dict[str, DealBundle]:
    """Per tenant, its deals with only its own signals and ties (people's jobs, accounts' staff and
    who holds whom are the network's, as in a tenant-scoped read)."""
    deals: dict[str, list[Deal]] = defaultdict(list)
    for deal in network.deals:
        deals[deal.tenant].append(deal)
    signals: dict[str, dict[tuple[str, str], list[Signal]]] = defaultdict(dict)
    for key, found in network.signals.items():
        signals[key[0]][key] = found
    ties: dict[str, dict[tuple[str, str], list[tuple[str, np.ndarray]]]] = defaultdict(dict)
    for key, tied in network.ties.items():
        ties[key[0]][key] = tied
    return {
        tenant: DealBundle(
            deals=held,
            jobs=network.jobs,
            staff=network.staff,
            signals=signals[tenant],
            ties=ties[tenant],
            held_by=network.held_by,
            shared=network.shared,
        )
        for tenant, held in deals.items()
    }


def read_deal_index(reader: GraphReader, *, people_ms: int, knows_ms: int) -> DealIndex:
    """The whole index, read now; `people_ms` and `knows_ms`: the latest person and KNOWS changes
    already seen by the caller (the snapshot's), read before the deals so nothing between is missed."""
    deals_ms = max((c.updated_at for c in reader.deals_changed(0, ALL_TENANTS)), default=0)
    return DealIndex.of(reader.deal_bundle(ALL_TENANTS), Watermarks(deals_ms, people_ms, knows_ms), _named(reader))


def refresh_deal_index(index: DealIndex, reader: GraphReader) -> DealIndex:
    """`index` with what changed since it was read: the deals whose records changed or around a
    person whose records changed are read again whole; people whose relationships changed have
    only their ties to the tenants' members read again."""
    seen = index.watermarks
    changed_deals = reader.deals_changed(seen.deals, ALL_TENANTS)
    changed_people = reader.people_changed(seen.people, ALL_TENANTS)
    changed_knows = reader.knows_changed(seen.knows, ALL_TENANTS)
    if not (changed_deals or changed_people or changed_knows):
        return index
    people = sorted({c.pid for c in changed_people})
    employers = (
        {cid for person in reader.people_by_pid(people, ALL_TENANTS) for cid in person.employers} if people else set()
    )
    whole = index.affected_by(people, employers) | {(c.tenant, c.deal_id) for c in changed_deals}
    related = {p for k in changed_knows for p in (k.lo, k.hi)}
    network = index.network
    if whole:
        fresh = reader.deal_bundle(ALL_TENANTS, sorted({deal_id for _, deal_id in whole}))
        network = _merged(network, fresh)
    tenants = {deal.tenant for deal in network.deals}
    if tenants != {deal.tenant for deal in index.network.deals}:
        # A tenant's first deal: every buyer-side person's ties with its members are new to the index.
        return read_deal_index(reader, people_ms=seen.people, knows_ms=seen.knows)
    buyer_side = _buyer_side_of(network)
    # Ties are read for every buyer-side person and every tenant with deals: again for those whose
    # relationships changed, and for the newly listed.
    tied = sorted((related & buyer_side) | (buyer_side - _buyer_side_of(index.network)))
    if tied:
        fresh_ties = reader.ties_to_members(tied, TenantScope.of(*tenants))
        kept = {key: ties for key, ties in network.ties.items() if key[1] not in set(tied)}
        network = replace(network, ties={**kept, **fresh_ties})
    watermarks = Watermarks(
        deals=max([seen.deals, *(c.updated_at for c in changed_deals)]),
        people=max([seen.people, *(c.updated_at for c in changed_people)]),
        knows=max([seen.knows, *(k.updated_at for k in changed_knows)]),
    )
    # Employment and deal records are what name companies; KNOWS changes name none.
    named = _named(reader) if changed_deals or changed_people else index.named_companies
    return DealIndex.of(network, watermarks, named)


def _named(reader: GraphReader) -> dict[str, frozenset[str]]:
    named: dict[str, set[str]] = defaultdict(set)
    for tenant, cid in reader.named_companies(ALL_TENANTS):
        named[tenant].add(cid)
    return {tenant: frozenset(cids) for tenant, cids in named.items()}


def _merged(network: DealBundle, fresh: DealBundle) -> DealBundle:
    """`network` with the deals of `fresh` (read whole, with everything around them) replacing
    their earlier selves, and everything `fresh` read about people and accounts replacing what was
    known of them (but ties, which the caller reads for every tenant with deals)."""
    replaced = {(d.tenant, d.deal_id) for d in fresh.deals}
    return DealBundle(
        deals=[d for d in network.deals if (d.tenant, d.deal_id) not in replaced] + fresh.deals,
        jobs={**network.jobs, **fresh.jobs},
        staff={**network.staff, **fresh.staff},
        signals={**network.signals, **fresh.signals},
        ties=network.ties,  # read again with everyone else's whose ties changed
        held_by={**network.held_by, **fresh.held_by},
        shared=(network.shared - fresh.held_by.keys()) | fresh.shared,
    )
