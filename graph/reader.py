"""The one read seam: every read of the graph that serving, training and evaluation make goes through
a `GraphReader`. Each method takes a required `TenantScope` (whose data it may return) and returns
typed, immutable results. Two implementations share this contract and its test suite: the Neo4j
one (graph/neo4j_reader.py), the only one integration tests use, and an in-memory one built from
ingest records (graph/memory_reader.py) for unit tests of everything above the store.

The serving snapshot reads with ALL_TENANTS, because it holds every tenant's relationships and
applies the visibility rule per answer (server/visibility.py); so do training (network-wide models)
and operators. Anything answering one tenant reads with that tenant's scope."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, NamedTuple, Protocol

import numpy as np

from graph.deal_bundle import Deal, DealBundle
from graph.interaction_log import ExportScope, InteractionLog
from graph.scope import ALL_TENANTS, TenantScope

__all__ = [
    "ALL_TENANTS",
    "ApiKeyRecord",
    "CompanyRow",
    "DealChange",
    "EconomicBuyer",
    "Erasure",
    "GraphReader",
    "KnowsRow",
    "LoggedInteraction",
    "PersonChange",
    "PersonRow",
    "ProposalDecision",
    "TenantRow",
    "TenantScope",
    "TiePair",
    "Ties",
    "bundle_of",
]


def bundle_of(reader: GraphReader, deals: list[Deal]) -> DealBundle:
    """`deals` with everything around them, read through `reader`: the staff of their accounts; the
    jobs, signals (in the deals' tenants' records) and holders of their buyer side, staff and
    owners; the buyer side's ties to the deals' tenants' members."""
    tenants = TenantScope.of(*{d.tenant for d in deals})
    cids = sorted({d.cid for d in deals if d.cid})
    staff = reader.deal_surroundings([], cids, tenants).staff
    buyer_side = {p for d in deals for p in (*d.contacts, *d.buyer.tolist())}
    around = buyer_side | {p for c in cids for p in staff.get(c, ())} | {d.owner for d in deals if d.owner}
    people = reader.deal_surroundings(sorted(around), [], tenants)
    return replace(people, deals=deals, staff=staff, ties=reader.ties_to_members(sorted(buyer_side), tenants))


class PersonRow(NamedTuple):
    """What serving needs of a person."""

    pid: str
    employers: tuple[str, ...]  # every company they worked at (company ids), sorted
    job: tuple[str, str, str] | None  # (company, title level, function) of the current job
    memberships: tuple[tuple[str, str, str, str], ...]  # (tenant, team, title level, function), sorted
    # Tenants whose own records name the person besides membership and KNOWS: employment, deals,
    # activities (the visibility rule's "held by", see server/visibility.py); sorted.
    held_by: tuple[str, ...]


class KnowsRow(NamedTuple):
    """One KNOWS relationship (one per pair of people and tenant, lo pid < hi pid) and its evidence."""

    lo: str
    hi: str
    tenant: str
    interactions: int
    two_way: int
    last_ts: int
    updated_at: int  # ms; what incremental refreshes follow


class PersonChange(NamedTuple):
    pid: str
    updated_at: int  # ms


Ties = tuple[str, np.ndarray]  # (a tenant's member, the times they interacted with the person)
TiePair = tuple[str, str, str]  # (tenant, person, another person): the tie `ties_between` reads


class DealChange(NamedTuple):
    tenant: str
    deal_id: str
    updated_at: int  # ms


class ProposalDecision(NamedTuple):
    """A rep's decision on a proposed CRM update (`relgraph proposals decide`); the last one told counts."""

    tenant: str
    proposal_id: str
    deal_id: str  # "" for a decision recorded before decisions named their deal
    field: str
    decision: str  # "accept" | "reject"
    updated_at: int  # ms: when it was recorded


class LoggedInteraction(NamedTuple):
    """One row of a deal's logged interactions (one per recipient), as `deals` reads them."""

    tenant: str
    deal_id: str
    activity_id: str
    ts: int
    kind: str
    sender: str
    recipient: str
    sender_is_member: bool  # of the deal's tenant
    recipient_is_member: bool
    updated_at: int  # ms: when the row appeared (its recipient or its deal was added to the interaction)

    def row(self) -> list[Any]:
        """The row as `deal_from_row` takes it."""
        return [
            self.ts,
            self.kind,
            self.sender,
            self.recipient,
            self.sender_is_member,
            self.recipient_is_member,
            self.activity_id,
        ]


class Erasure(NamedTuple):
    pid: str
    at: int  # ms


class CompanyRow(NamedTuple):
    cid: str
    industry: str
    size_band: str


class TenantRow(NamedTuple):
    tenant: str
    share_identities: bool
    network_opt_out: bool


class EconomicBuyer(NamedTuple):
    tenant: str
    pid: str
    cid: str


class ApiKeyRecord(NamedTuple):
    key_id: str
    tenant: str
    role: str
    scopes: tuple[str, ...]
    label: str
    hash: str
    created_at: int
    revoked: bool


class GraphReader(Protocol):
    """Reads of the graph. Rows of tenants outside `scope` never come back; people's memberships and
    holders are those within `scope`."""

    # -- the serving snapshot's pages and changes --------------------------------------------------
    def people(self, scope: TenantScope) -> Iterable[PersonRow]:
        """Every person, in pid order."""
        ...

    def people_by_pid(self, pids: Sequence[str], scope: TenantScope) -> list[PersonRow]:
        """The people of `pids` that exist."""
        ...

    def people_changed(self, since_ms: int, scope: TenantScope) -> list[PersonChange]:
        """People whose records changed after `since_ms`."""
        ...

    def people_watermark(self, scope: TenantScope) -> int:
        """The latest change of any person (ms), 0 when none."""
        ...

    def knows(self, scope: TenantScope) -> Iterable[KnowsRow]:
        """Every KNOWS relationship, paged by the lower person's pid."""
        ...

    def knows_changed(self, since_ms: int, scope: TenantScope) -> list[KnowsRow]: ...

    def knows_of(self, pids: Sequence[str], scope: TenantScope) -> list[KnowsRow]:
        """Every KNOWS relationship touching one of `pids`."""
        ...

    def erasures_since(self, since_ms: int, scope: TenantScope) -> list[Erasure]:
        """Erasure tombstones written after `since_ms` (graph.operations.erase_person)."""
        ...

    def companies(self, scope: TenantScope) -> list[CompanyRow]: ...

    def tenants(self, scope: TenantScope) -> list[TenantRow]: ...

    def economic_buyers(self, scope: TenantScope) -> list[EconomicBuyer]:
        """People the tenants' own deals list as economic buyer, with the deal's account."""
        ...

    # -- answers, training and keys ----------------------------------------------------------------
    def named_companies(self, scope: TenantScope) -> list[tuple[str, str]]:
        """(tenant, company id) of every company a tenant's own records name (an account of its
        deals, an employer in its records), sorted."""
        ...

    def deals(self, scope: TenantScope, deal_ids: Sequence[str] | None = None) -> list[Deal]:
        """The scope's deals (only `deal_ids` when given), without what surrounds them."""
        ...

    def deal_bundle(self, scope: TenantScope, deal_ids: Sequence[str] | None = None) -> DealBundle:
        """The scope's deals (only `deal_ids` when given) with everything around them (`bundle_of`)."""
        ...

    def deal_surroundings(self, pids: Sequence[str], cids: Sequence[str], scope: TenantScope) -> DealBundle:
        """What a deal bundle holds about people and accounts, without deals: the staff of `cids`;
        the jobs of `pids`, the signals they raised in the scope's tenants' records, and who holds
        them (and whether they share their identity). No ties (`ties_to_members`)."""
        ...

    def ties_to_members(self, pids: Sequence[str], scope: TenantScope) -> dict[tuple[str, str], list[Ties]]:
        """Per (tenant, pid) of `pids`, the person's KNOWS relationships logged by a tenant of `scope`
        with that tenant's members, as (member, event times sorted): the ties a deal bundle holds."""
        ...

    def ties_between(self, pairs: Sequence[TiePair], scope: TenantScope) -> dict[tuple[str, str], list[Ties]]:
        """Of each (tenant, pid, other) in `pairs`, the person's tie to `other` when `other` is a member
        of that tenant of `scope`, keyed and shaped as `ties_to_members` gives it (a refresh reads only
        the ties that changed)."""
        ...

    def deals_changed(self, since_ms: int, scope: TenantScope) -> list[DealChange]:
        """Deals whose record, contacts or signals changed after `since_ms` (their logged interactions:
        `interactions_logged_since`)."""
        ...

    def logged_watermark(self, scope: TenantScope) -> int:
        """The latest time a row was logged on any deal (`interactions_logged_since`'s), 0 for none;
        read before the deals themselves, so it may be any tenant's (the scope's rows are no later)."""
        ...

    def interactions_logged_since(self, since_ms: int, scope: TenantScope) -> list[LoggedInteraction]:
        """The rows of deals' logged interactions that appeared after `since_ms` (an interaction logged
        on a deal, or a recipient added to one), with the deals of the scope's tenants."""
        ...

    def interaction_log(self, scope: ExportScope) -> InteractionLog:
        """Every logged interaction in the export scope's window and tenants, with employment."""
        ...

    def proposal_decisions(self, since_ms: int, scope: TenantScope) -> list[ProposalDecision]:
        """Reps' decisions recorded after `since_ms`, oldest first."""
        ...

    def pair_interactions(self, pairs: Sequence[tuple[str, str]], scope: ExportScope) -> InteractionLog:
        """The logged interactions between each (lo pid, hi pid) of `pairs` in the export scope's window
        and tenants, without employment (`interaction_log.with_pairs_replaced` puts them in a log)."""
        ...

    def fingerprint(self) -> str:
        """Changes whenever anything an interaction log is made of changes."""
        ...

    def api_keys(self, scope: TenantScope) -> list[ApiKeyRecord]: ...
