"""Every tenant's deals, with what surrounds them, held in memory so the deal RPCs answer without a
Neo4j round trip: one `DealBundle` per tenant (its deals, the people at their accounts with their
jobs, the signals the tenant ingested from them, their ties to the tenant's members, who holds
them), the same data `GraphReader.deal_bundle` gives for one tenant's scope; and the companies each
tenant's own records name (the buyers a tenant may ask `PredictBuyerProcess` about); and the reps'
decisions on proposed CRM updates (`ListProposedUpdates` shows them).

The serving state's refresh keeps it current from what changed since the last refresh, reading
only that: deals whose own records changed (`Deal.updated_at`) are read again (without what
surrounds them); interactions newly logged on a deal are added to it (`ON`/`WITH.updated_at`: the
new rows only); people whose records changed (`Person.updated_at`: jobs, signals, who holds them)
have their own data read again, and the accounts where they work their staff; of the relationships
changed (`KNOWS.updated_at`), those of a deal's buyer side to a tenant's member are read again, and
people newly on a buyer side have all their ties read; decisions recorded since are added. The
deals it marks touched (their answers are computed again) are those whose own data, or whose
people's data or ties, did change. An
erasure, a tenant changing whether it shares identities, or a tenant's first deal rebuilds the index
whole (rare, and what is shown of a person then changes everywhere)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from graph.deal_bundle import Deal, DealBundle, Signal, with_logged
from graph.reader import ALL_TENANTS, GraphReader, ProposalDecision, TenantScope
from server.snapshot import Changes, Snapshot

DealKey = tuple[str, str]  # (tenant, deal id)


@dataclass(frozen=True)
class Watermarks:
    """What the index has seen (ms): its deals' latest record changes and latest logged rows (the
    people and relationships it has seen are the snapshot's: server/state.py refreshes both alike)."""

    deals: int = 0
    logged: int = 0
    decisions: int = 0


@dataclass(frozen=True)
class DealIndex:
    """The tenants' deals as of one refresh; immutable, replaced whole by the next."""

    network: DealBundle  # every tenant's deals and what surrounds them
    watermarks: Watermarks
    named_companies: dict[str, frozenset[str]]  # tenant -> companies its own records name
    # The deals whose records or surroundings the refresh that made this index read again; None for
    # an index read whole (everything may have changed).
    touched: frozenset[DealKey] | None = None
    # Reps' decisions on proposed CRM updates: tenant -> proposal id -> the latest.
    decisions: dict[str, dict[str, ProposalDecision]] = field(default_factory=dict)
    _by_key: dict[DealKey, Deal] = field(default_factory=dict, repr=False)
    _tenant_views: dict[str, DealBundle] = field(default_factory=dict, repr=False)

    @classmethod
    def of(
        cls,
        network: DealBundle,
        watermarks: Watermarks,
        named_companies: dict[str, frozenset[str]],
        touched: frozenset[DealKey] | None = None,
        decisions: dict[str, dict[str, ProposalDecision]] | None = None,
    ) -> DealIndex:
        by_key = {(d.tenant, d.deal_id): d for d in network.deals}
        return cls(network, watermarks, named_companies, touched, decisions or {}, by_key, _tenant_views(network))

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

    def tenant_deals(self, tenant: str) -> DealBundle | None:
        """All of the tenant's deals, seen as its own read would see them; None when it has none."""
        return self._tenant_views.get(tenant)

    def names_company(self, tenant: str, cid: str) -> bool:
        """Whether the tenant's own records name the company (an account of its deals, an employer)."""
        return cid in self.named_companies.get(tenant, frozenset())


def _buyer_side(network: DealBundle) -> set[str]:
    """The deals' listed contacts and the buyer side of their logged interactions: whose ties they read."""
    return {p for deal in network.deals for p in (*deal.contacts, *deal.buyer.tolist())}


def _around(network: DealBundle) -> set[str]:
    """Everyone whose jobs, signals and holders the deals read: the buyer side, the staff of the
    accounts and the owners."""
    staff = {p for deal in network.deals for p in network.staff.get(deal.cid, ())}
    return _buyer_side(network) | staff | {deal.owner for deal in network.deals if deal.owner}


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


def read_deal_index(reader: GraphReader) -> DealIndex:
    """The whole index, read now (its watermarks read first, so nothing written between is missed; a
    row logged between is read again by the next refresh and adds nothing)."""
    decided = reader.proposal_decisions(0, ALL_TENANTS)
    watermarks = Watermarks(
        deals=max((c.updated_at for c in reader.deals_changed(0, ALL_TENANTS)), default=0),
        logged=reader.logged_watermark(ALL_TENANTS),
        decisions=max((d.updated_at for d in decided), default=0),
    )
    return DealIndex.of(
        reader.deal_bundle(ALL_TENANTS), watermarks, _named(reader), decisions=_with_decisions({}, decided)
    )


def _with_decisions(
    held: dict[str, dict[str, ProposalDecision]], decided: list[ProposalDecision]
) -> dict[str, dict[str, ProposalDecision]]:
    """`held` with `decided` (oldest first) applied: the last decision told on a proposal counts."""
    if not decided:
        return held
    merged = {tenant: dict(by_id) for tenant, by_id in held.items()}
    for decision in decided:
        merged.setdefault(decision.tenant, {})[decision.proposal_id] = decision
    return merged


def refresh_deal_index(index: DealIndex, reader: GraphReader, changes: Changes, snap: Snapshot) -> DealIndex:
    """`index` with what changed since it was read, reading only that (the module's docstring);
    `changes`: the people and relationships changed since, as the snapshot's refresh read them, and
    `snap` the snapshot they were applied to (which holds the changed people's employers)."""
    seen = index.watermarks
    changed_deals = reader.deals_changed(seen.deals, ALL_TENANTS)
    logged = reader.interactions_logged_since(seen.logged, ALL_TENANTS)
    decided = reader.proposal_decisions(seen.decisions, ALL_TENANTS)
    watermarks = Watermarks(
        deals=max([seen.deals, *(c.updated_at for c in changed_deals)]),
        logged=max([seen.logged, *(row.updated_at for row in logged)]),
        decisions=max([seen.decisions, *(d.updated_at for d in decided)]),
    )
    decisions = _with_decisions(index.decisions, decided)  # they touch no deal's answers
    before = index.network
    deals = dict(index._by_key)
    fresh = reader.deals(ALL_TENANTS, sorted({c.deal_id for c in changed_deals})) if changed_deals else []
    replaced = {(d.tenant, d.deal_id) for d in fresh}
    deals.update(((d.tenant, d.deal_id), d) for d in fresh)
    rows: dict[DealKey, list[list[Any]]] = defaultdict(list)
    kept = deals.keys() - replaced  # a deal read again above already holds its new rows, as does one not held yet
    for row in logged:
        if (row.tenant, row.deal_id) in kept:
            rows[(row.tenant, row.deal_id)].append(row.row())
    grown = {key: with_logged(deals[key], found) for key, found in rows.items()}
    grown = {key: deal for key, deal in grown.items() if deal.ts.size > deals[key].ts.size}  # rows it lacked
    if not (changed_deals or grown or changes.people or changes.knows):
        return (
            index
            if watermarks == seen
            else replace(index, watermarks=watermarks, touched=frozenset(), decisions=decisions)
        )
    deals.update(grown)
    network = replace(before, deals=list(deals.values()))
    tenants = {deal.tenant for deal in network.deals}
    if tenants != {deal.tenant for deal in before.deals}:  # every person's data gains the new tenant's
        return read_deal_index(reader)
    scope = TenantScope.of(*tenants)

    people = sorted({c.pid for c in changes.people})
    accounts = {deal.cid for deal in network.deals if deal.cid}
    employers = {  # accounts someone joined (staff: everyone who works or worked there)
        cid
        for pid in people
        for cid in _employers(snap, pid)
        if cid in accounts and pid not in network.staff.get(cid, ())
    }
    employers |= accounts - network.staff.keys()  # a new account's staff, or one that had none
    if employers:  # someone may have joined an account
        network = replace(
            network, staff={**network.staff, **reader.deal_surroundings([], sorted(employers), scope).staff}
        )
    # Every write that puts a person around a deal (owner, contact, either side of a logged
    # interaction, an employment at its account) marks them changed: see graph/writes.py. Only
    # those whose data did change touch the deals around them.
    again = sorted(set(people) & _around(network))
    differ: set[str] = set()
    if again:
        read = reader.deal_surroundings(again, [], scope)
        differ = {p for p in again if _person_data(read, p, tenants) != _person_data(network, p, tenants)}
        network = _with_people(network, read, set(again))

    # Ties: everyone new on a buyer side, all of theirs; of the rest, only the relationships changed.
    buyer_side = _buyer_side(network)
    joined = buyer_side - _buyer_side(before)
    pairs = [
        (k.tenant, end, other)
        for k in changes.knows
        if k.tenant in tenants
        for end, other in ((k.lo, k.hi), (k.hi, k.lo))
        if end in buyer_side and end not in joined
    ]
    ties = {key: tied for key, tied in network.ties.items() if key[1] not in joined}
    if joined:
        ties.update(reader.ties_to_members(sorted(joined), scope))
    retied = set(joined)
    for key, changed in (reader.ties_between(pairs, scope) if pairs else {}).items():
        members = {member for member, _ in changed}
        ties[key] = [tie for tie in ties.get(key, []) if tie[0] not in members] + changed
        retied.add(key[1])
    network = replace(network, ties=ties)

    # Employment and deal records are what name companies; KNOWS changes and logged rows name none.
    named = _named(reader) if changed_deals or changes.people else index.named_companies
    touched = _touched(network, replaced | grown.keys(), employers, differ | retied)
    return DealIndex.of(network, watermarks, named, touched, decisions)


def _employers(snap: Snapshot, pid: str) -> list[str]:
    node = snap.node(pid)
    return [] if node is None else [snap.companies.cids[c] for c in snap.employers(node).tolist()]


def _person_data(network: DealBundle, pid: str, tenants: set[str]) -> tuple[Any, ...]:
    """What the deals read of a person besides their ties: jobs, signals, holders, shared identity."""
    signals = [network.signals.get((tenant, pid), []) for tenant in sorted(tenants)]
    return network.jobs.get(pid, []), signals, network.held_by.get(pid), pid in network.shared


def _touched(network: DealBundle, changed: set[DealKey], accounts: set[str], people: set[str]) -> frozenset[DealKey]:
    """The deals whose own records or rows changed, whose account's staff changed, or around which
    (owner, contacts, buyer side, account staff) someone's data or ties changed."""
    accounts = accounts | {cid for cid, staff in network.staff.items() if not people.isdisjoint(staff)}
    return frozenset(
        (deal.tenant, deal.deal_id)
        for deal in network.deals
        if (deal.tenant, deal.deal_id) in changed
        or deal.cid in accounts
        or deal.owner in people
        or not people.isdisjoint(deal.contacts)
        or not people.isdisjoint(deal.buyer.tolist())
    )


def _with_people(network: DealBundle, fresh: DealBundle, pids: set[str]) -> DealBundle:
    """`network` with what `fresh` read of `pids` (jobs, signals, holders) replacing what it held."""
    return replace(
        network,
        jobs={**{p: j for p, j in network.jobs.items() if p not in pids}, **fresh.jobs},
        signals={**{k: s for k, s in network.signals.items() if k[1] not in pids}, **fresh.signals},
        held_by={**{p: h for p, h in network.held_by.items() if p not in pids}, **fresh.held_by},
        shared=(network.shared - pids) | fresh.shared,
    )


def _named(reader: GraphReader) -> dict[str, frozenset[str]]:
    named: dict[str, set[str]] = defaultdict(set)
    for tenant, cid in reader.named_companies(ALL_TENANTS):
        named[tenant].add(cid)
    return {tenant: frozenset(cids) for tenant, cids in named.items()}
