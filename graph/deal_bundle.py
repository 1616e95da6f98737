"""Deals as the models and signals read them: a `DealBundle` holds a scope's deals (CRM history,
listed contacts, interactions logged on each) and everything around them (the people at each
account, their jobs and the signals the deal's tenant ingested from them, their earlier ties to the
tenant's members, and who holds them), all keyed by pseudonyms. A GraphReader's `deal_bundle`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Job:
    cid: str
    start: int
    end: int  # -1: current
    level: str
    function: str


@dataclass(frozen=True)
class Signal:
    id: str
    pid: str
    kind: str
    topic: str
    value: str
    ts: int


@dataclass(frozen=True)
class Deal:
    tenant: str
    deal_id: str
    cid: str
    industry: str
    size_band: str
    owner: str
    amount: float
    created: int
    product: str
    stage_names: list[str]
    stage_ts: list[int]
    closed: int  # -1 while open
    outcome: str  # open, won or lost
    close_date: int  # the CRM's expected close as the rep last set it; -1: none recorded
    contacts: dict[str, str]  # pid -> role
    # Interactions logged on the deal, in time order.
    ts: np.ndarray = field(repr=False)
    kind: np.ndarray = field(repr=False)  # "email", "meeting", ...
    buyer: np.ndarray = field(repr=False)  # the buyer-side person of each interaction
    seller: np.ndarray = field(repr=False)  # the tenant's member in it
    inbound: np.ndarray = field(repr=False)  # True: from the buyer side to the seller side
    activity: np.ndarray = field(repr=False)  # the interaction's id (one row per recipient)

    def crm_stage_at(self, t: int) -> str:
        """The stage the CRM showed at t ('' before its first stage change)."""
        i = int(np.searchsorted(np.asarray(self.stage_ts, dtype=np.int64), t, side="right")) - 1
        return self.stage_names[i] if i >= 0 else ""

    def end(self, as_of: int) -> int:
        """When the deal stops being open: its close, or `as_of` for an open deal."""
        return min(self.closed, as_of) if self.closed >= 0 else as_of


@dataclass(frozen=True)
class AccountPeople:
    """What a deal's signals read of its account's staff (all who work or worked there): their jobs at
    the account ordered by start, and the signals one tenant ingested from them ordered by time."""

    staff: frozenset[str]
    job_starts: list[int]
    jobs: list[tuple[str, Job]]  # (pid, their job at the account)
    signal_times: list[int]
    signals: list[Signal]


@dataclass(frozen=True)
class DealBundle:
    """Deals and what surrounds them; keys are pids, tenants and company ids (all pseudonymous)."""

    deals: list[Deal]
    jobs: dict[str, list[Job]]
    staff: dict[str, list[str]]  # company -> people who work or worked there
    signals: dict[tuple[str, str], list[Signal]]  # (tenant, pid) -> signals that tenant ingested
    ties: dict[tuple[str, str], list[tuple[str, np.ndarray]]]  # (tenant, pid) -> [(member, event times)]
    # Per person around the deals: the tenants whose records name them, and the people whose tenant
    # shares identities (what the server's visibility rule needs; server/visibility.py).
    held_by: dict[str, frozenset[str]] = field(default_factory=dict)
    shared: frozenset[str] = frozenset()
    # (company, tenant) -> its AccountPeople, computed when first asked for: every deal at an account
    # reads the same staff, and large accounts have thousands.
    _accounts: dict[tuple[str, str], AccountPeople] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # One order whichever reader built it (Neo4j returns collections in no particular order),
        # so features and answers never depend on it.
        for held in self.jobs.values():
            held.sort(key=lambda j: (j.start, j.cid, j.end))
        for people in self.staff.values():
            people.sort()
        for signals in self.signals.values():
            signals.sort(key=lambda s: (s.ts, s.id))
        for tied in self.ties.values():
            tied.sort(key=lambda tie: tie[0])

    def account_people(self, cid: str, tenant: str) -> AccountPeople:
        """The account's staff, their jobs there and `tenant`'s signals from them, ordered by time."""
        found = self._accounts.get((cid, tenant))
        if found is None:
            staff = self.staff.get(cid, [])
            jobs = sorted(((p, j) for p in staff for j in self.jobs.get(p, ()) if j.cid == cid), key=_by_start)
            signals = sorted((s for p in staff for s in self.signals.get((tenant, p), ())), key=lambda s: s.ts)
            found = AccountPeople(frozenset(staff), [j.start for _, j in jobs], jobs, [s.ts for s in signals], signals)
            self._accounts[(cid, tenant)] = found
        return found

    def job_at(self, pid: str, t: int) -> Job | None:
        """The job held at t (the latest started, if several)."""
        held = [j for j in self.jobs.get(pid, ()) if j.start <= t and (j.end < 0 or j.end > t)]
        return max(held, key=lambda j: j.start) if held else None

    def deal(self, tenant: str, deal_id: str) -> Deal | None:
        return next((d for d in self.deals if d.tenant == tenant and d.deal_id == deal_id), None)


def _by_start(held: tuple[str, Job]) -> int:
    return held[1].start


def observed_until(data: DealBundle) -> int:
    """The time the deal data was observed: one second after its latest event."""
    latest = [max([d.created, d.closed, *d.stage_ts, *d.ts.tolist()]) for d in data.deals]
    return max(latest, default=0) + 1


def _amount(value: Any) -> float:
    """A stored amount as a usable number: one written before amounts were range-checked (infinite,
    not a number, negative) counts as unknown rather than poisoning the estimate."""
    amount = float(value) if isinstance(value, (int, float)) else 0.0
    return amount if np.isfinite(amount) and amount >= 0 else 0.0


def deal_from_row(row: dict[str, Any]) -> Deal:
    """A deal from its row: account, owner, contacts ([pid, role]) and logged interactions ([ts, kind,
    from pid, with pid, from is a member of the deal's tenant, with is, activity id]), as both
    readers produce it."""
    return Deal(
        tenant=str(row["tenant"]),
        deal_id=str(row["deal_id"]),
        cid=str(row["cid"] or ""),
        industry=str(row["industry"]),
        size_band=str(row["size_band"]),
        owner=str(row["owner"] or ""),
        amount=_amount(row["amount"]),
        created=int(row["created"]),
        product=str(row["product"]),
        stage_names=list(row["stage_names"]),
        stage_ts=[int(x) for x in row["stage_ts"]],
        closed=int(row["closed"]),
        outcome=str(row["outcome"]),
        close_date=int(row["close_date"]),
        contacts={str(p): str(r) for p, r in row["contacts"]},
        **_interaction_arrays(row["interactions"]),
    )


def with_logged(deal: Deal, rows: list[list[Any]]) -> Deal:
    """`deal` with more logged interactions (rows as `deal_from_row` takes them; one it holds already,
    the same interaction to the same recipient, adds nothing): what reading it again would give."""
    held = [
        [ts, kind, buyer, seller, False, True, aid] if inbound else [ts, kind, seller, buyer, True, False, aid]
        for ts, kind, buyer, seller, inbound, aid in zip(
            deal.ts.tolist(),
            deal.kind.tolist(),
            deal.buyer.tolist(),
            deal.seller.tolist(),
            deal.inbound.tolist(),
            deal.activity.tolist(),
        )
    ]
    known = {(row[6], row[3]) for row in held}
    return replace(deal, **_interaction_arrays(held + [row for row in rows if (row[6], row[3]) not in known]))


def _interaction_arrays(rows: list[list[Any]]) -> dict[str, Any]:
    """A deal's interaction arrays from its rows, in time order; each kept row is between a member of
    the tenant and someone on the buyer side."""
    ordered = sorted(rows, key=lambda a: (a[0], a[2], a[3] or "", str(a[1]), str(a[6])))
    kept = [a for a in ordered if a[3] is not None and bool(a[4]) != bool(a[5])]
    return {
        "ts": np.array([int(a[0]) for a in kept], dtype=np.int64),
        "kind": np.array([str(a[1]) for a in kept], dtype=object),
        "buyer": np.array([str(a[3] if a[4] else a[2]) for a in kept], dtype=object),
        "seller": np.array([str(a[2] if a[4] else a[3]) for a in kept], dtype=object),
        "inbound": np.array([not a[4] for a in kept], dtype=bool),
        "activity": np.array([str(a[6]) for a in kept], dtype=object),
    }
