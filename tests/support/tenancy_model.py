"""A reference model of relgraph's multi-tenant semantics, in plain Python over the raw records,
for the adversarial property tests: which records each tenant ingested, what an erasure leaves,
who a tenant holds, what it may see of each person (the rule of server/visibility.py, written
again independently), and the warm paths a brute-force search finds. Also a canonical view of a
serving snapshot, to hold an incremental refresh equal to a full build."""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.vocabulary import INTERACTION_KINDS, TWO_WAY_INTERACTIONS, size_band
from graph import strength_heuristic as heuristic
from graph.pseudonymize import Pseudonymizer
from server import snapshot as snapshots
from server.visibility import describe

# The world's vocabulary: tenants (each with its own company) and buyer companies, three people
# each with fixed titles, so every tenant's record of a person says the same about them.
TENANTS = ("north", "south", "aaa-early", "west")  # "aaa-early" sorts before the others
BUYERS = ("buyer-one.example", "buyer-two.example")
# (level, function, a title that reads as them): records carry the title, as over gRPC.
TITLES = (
    ("ic", "sales", "Account Executive"),
    ("director", "finance", "Director of Finance"),
    ("vp", "sales", "VP Sales"),
)
COMPANY_SIZE = {**{f"{t}.example": 800 for t in TENANTS}, BUYERS[0]: 40, BUYERS[1]: 7000}
INDUSTRY = {**{f"{t}.example": "software" for t in TENANTS}, BUYERS[0]: "retail", BUYERS[1]: "fintech"}
COMPANIES = tuple(COMPANY_SIZE)
PEOPLE = tuple(f"p{i}@{company}" for company in COMPANIES for i in range(3))
UNKNOWN = tuple(f"stranger{i}@nowhere{i}.example" for i in range(3))


def title_of(email: str) -> tuple[str, str, str]:
    """(level, function, title text) of a person of the world."""
    return TITLES[int(email[1])]


def company_of(email: str) -> str:
    return email.split("@", 1)[1]


@dataclass(frozen=True)
class Edge:
    tenant: str
    count: int
    two_way: int
    last_ts: int


@dataclass(frozen=True)
class View:
    """What a tenant may see of one person: the fields of relgraph.v1.PersonView."""

    pid: str
    identified: bool
    own_member: bool
    title_level: str
    function: str
    company_domain: str
    company_size_band: str
    company_industry: str
    description: str


@dataclass
class World:
    pseudo: Pseudonymizer
    share: dict[str, bool] = field(default_factory=dict)
    opt_out: dict[str, bool] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # tenant -> emails
    jobs: dict[tuple[str, str, str, int], int] = field(default_factory=dict)  # (tenant, email, company, from) -> to
    events: dict[tuple[str, str, str], set[tuple[int, int, bool]]] = field(default_factory=lambda: defaultdict(set))
    owners: dict[tuple[str, str], str] = field(default_factory=dict)  # (tenant, deal id) -> owner email
    signals: dict[tuple[str, str], str] = field(default_factory=dict)  # (tenant, signal id) -> email
    # Person nodes: anyone a record named, until erased. A deal's former owner stays a node (without
    # relationships) as in Neo4j.
    persons: set[str] = field(default_factory=set)

    def pid(self, email: str) -> str:
        return self.pseudo.pid(email)

    # -- what the tenants ingested ------------------------------------------------------------

    def ingest(self, tenant: str, record: dict[str, Any]) -> None:
        """Apply one valid record as relgraph's writes do (merges on natural keys)."""
        kind = record["kind"]
        named = [
            record.get("email"),
            record.get("owner"),
            *([record["from"], *record["to"]] if kind == "interaction" else []),
        ]
        self.persons |= {email for email in named if email}
        if kind == "member":
            self.members[tenant].add(record["email"])
        elif kind == "employment":
            self.jobs[(tenant, record["email"], record["company"], int(record["from"]))] = int(record.get("to", -1))
        elif kind == "interaction":
            sender = record["from"]
            for to in record["to"]:
                if to == sender:
                    continue
                lo, hi = sorted((sender, to), key=self.pid)
                self.events[(tenant, lo, hi)].add(
                    (int(record["ts"]), INTERACTION_KINDS.index(record["type"]), self.pid(sender) < self.pid(to))
                )
        elif kind == "deal":
            self.owners[(tenant, record["id"])] = record["owner"]
        elif kind == "signal":  # an id names one event: the first record of it stands
            self.signals.setdefault((tenant, record["id"]), record["email"])

    def erase(self, email: str, scope: str | None) -> bool:
        """Erase what `scope` (a tenant, or None: the network) holds about a person; whether it held
        anything. The person's node goes once no record names them."""
        found = self.has_records(email) if scope is None else self.held(scope, email)
        if not found:
            return False

        def mine(tenant: str) -> bool:
            return scope is None or tenant == scope

        for t in self.members:
            if mine(t):
                self.members[t].discard(email)
        for key in [k for k in self.jobs if mine(k[0]) and k[1] == email]:
            del self.jobs[key]
        for key in [k for k in self.events if mine(k[0]) and email in k[1:]]:
            del self.events[key]
        for records in (self.owners, self.signals):
            for key in [k for k, who in records.items() if mine(k[0]) and who == email]:
                del records[key]
        if not self.has_records(email):
            self.persons.discard(email)
        return True

    # -- the graph as relgraph sees it -----------------------------------------------------------

    def exists(self, email: str) -> bool:
        return email in self.persons

    def has_records(self, email: str) -> bool:
        return any(
            self.held(tenant, email)
            for tenant in {
                *self.members,
                *(k[0] for k in self.jobs),
                *(k[0] for k in self.events),
                *(k[0] for k in self.owners),
                *(k[0] for k in self.signals),
            }
        )

    def held(self, tenant: str, email: str) -> bool:
        """Whether the tenant's own records name the person."""
        return (
            email in self.members.get(tenant, set())
            or any(k[0] == tenant and k[1] == email for k in self.jobs)
            or any(k[0] == tenant and email in k[1:] for k in self.events)
            or any(k[0] == tenant and who == email for k, who in (*self.owners.items(), *self.signals.items()))
        )

    def shared(self, email: str) -> bool:
        return any(self.share.get(t, False) and email in people for t, people in self.members.items())

    def current_company(self, email: str) -> str:
        return company_of(email) if any(k[1] == email and to == -1 for k, to in self.jobs.items()) else ""

    def employers(self, email: str) -> set[str]:
        return {k[2] for k in self.jobs if k[1] == email}

    def titled(self, email: str) -> bool:
        """Whether the graph knows the person's title: a current job, or a membership."""
        return bool(self.current_company(email)) or any(email in m for m in self.members.values())

    def view(self, tenant: str, email: str, named: bool = False) -> View:
        held, shared = self.held(tenant, email), self.shared(email)
        level, function, _ = title_of(email) if self.titled(email) else ("", "", "")
        company = self.current_company(email)
        band = size_band(COMPANY_SIZE[company]) if company else ""
        industry = INDUSTRY[company] if company else ""
        identified = held or shared or named
        return View(
            pid=self.pid(email) if identified else "",
            identified=identified,
            own_member=email in self.members.get(tenant, set()),
            title_level=level,
            function=function,
            company_domain=company if held or shared else "",
            company_size_band=band,
            company_industry=industry,
            description=describe(level, function, band, industry),
        )

    def edges(self) -> dict[tuple[str, str], list[Edge]]:
        """Per unordered pair (emails, pid order): each tenant's relationship with its evidence."""
        out: dict[tuple[str, str], list[Edge]] = defaultdict(list)
        for (tenant, lo, hi), events in self.events.items():
            if not events:
                continue
            fwd = sum(1 for _, kind, from_lo in events if from_lo or INTERACTION_KINDS[kind] in TWO_WAY_INTERACTIONS)
            rev = sum(
                1 for _, kind, from_lo in events if not from_lo or INTERACTION_KINDS[kind] in TWO_WAY_INTERACTIONS
            )
            out[(lo, hi)].append(Edge(tenant, len(events), min(fwd, rev), max(ts for ts, _, _ in events)))
        return out

    # -- warm paths by brute force ----------------------------------------------------------------

    def paths(
        self, tenant: str, targets: list[str], sources: set[str], *, max_hops: int, cross: bool, as_of: int
    ) -> list[tuple[float, tuple[str, ...], tuple[Edge, ...]]]:
        """Every simple path of 1..max_hops hops from a source to a target over the relationships
        the tenant may use, the strongest usable relationship per pair, strength multiplied from
        the target's side as the server does; best copy of each people sequence, ranked."""
        usable = {t for t in self.members.keys() | set(TENANTS) if cross and not self.opt_out.get(t, False)} | {tenant}
        best: dict[tuple[str, str], tuple[float, list[Edge]]] = {}
        neighbours: dict[str, set[str]] = defaultdict(set)
        for (lo, hi), edges in self.edges().items():
            edges = [e for e in edges if e.tenant in usable]
            if not edges:
                continue
            strengths = [strength(e, as_of) for e in edges]
            top = max(strengths)
            best[(lo, hi)] = best[(hi, lo)] = (top, [e for e, s in zip(edges, strengths) if s == top])
            neighbours[lo].add(hi)
            neighbours[hi].add(lo)
        found: dict[tuple[str, ...], float] = {}
        for target in targets:
            stack = [((target,), 1.0)]
            while stack:
                seq, score = stack.pop()
                if len(seq) > max_hops:
                    continue
                for nxt in neighbours[seq[-1]]:
                    if nxt in seq:
                        continue
                    extended = (*seq, nxt)
                    new_score = score * best[(seq[-1], nxt)][0]
                    if nxt in sources:
                        key = extended[::-1]
                        found[key] = max(found.get(key, 0.0), new_score)
                    stack.append((extended, new_score))
        ranked = sorted(found.items(), key=lambda kv: (-kv[1], len(kv[0]), [self.pid(e) for e in kv[0]]))
        return [(score, seq, tuple(best[(a, b)][1][0] for a, b in itertools.pairwise(seq))) for seq, score in ranked]

    def best_edges(self, a: str, b: str, tenant: str, cross: bool, as_of: int) -> tuple[float, list[Edge]]:
        lo, hi = sorted((a, b), key=self.pid)
        usable = [
            e
            for e in self.edges().get((lo, hi), [])
            if e.tenant == tenant or (cross and not self.opt_out.get(e.tenant, False))
        ]
        strengths = [strength(e, as_of) for e in usable]
        top = max(strengths)
        return top, [e for e, s in zip(usable, strengths) if s == top]


def strength(edge: Edge, as_of: int) -> float:
    return float(heuristic.heuristic_strength(np.array([edge.count]), np.array([edge.last_ts]), as_of)[0])


def snapshot_content(snap: snapshots.Snapshot) -> dict[str, Any]:
    """Everything a snapshot holds, keyed by pids, company ids and tenant ids (never by the numbers
    it assigns them), so two snapshots of the same graph compare equal."""
    lo, hi = snapshots.edge_endpoints(snap)
    cid = snap.companies.cids
    tenant = snap.tenants.ids
    people = {}
    for node in range(snap.people):
        people[snap.pid(node)] = (
            int(snap.level[node]),
            int(snap.function[node]),
            cid[snap.company[node]] if snap.company[node] >= 0 else "",
            sorted(cid[c] for c in snap.employers(node)),
            sorted(
                (tenant[t], str(team))
                for t, team in zip(
                    snap.memberships(node).tolist(),
                    snap.member_team[snap.member_indptr[node] : snap.member_indptr[node + 1]].tolist(),
                )
            ),
            sorted(tenant[t] for t in snap.held_tenant[snap.held_indptr[node] : snap.held_indptr[node + 1]].tolist()),
        )
    return {
        "people": people,
        "edges": sorted(
            (snap.pid(a), snap.pid(b), tenant[t], c, w, ts)
            for a, b, t, c, w, ts in zip(
                lo.tolist(),
                hi.tolist(),
                snap.edge_tenant.tolist(),
                snap.edge_count.tolist(),
                snap.edge_two_way.tolist(),
                snap.edge_last_ts.tolist(),
            )
        ),
        "tenants": sorted(zip(tenant, snap.tenants.share_identities.tolist(), snap.tenants.network_opt_out.tolist())),
        "economic_buyers": sorted(
            (tenant[t], cid[c], sorted(snap.pid(p) for p in people_))
            for (t, c), people_ in snap.economic_buyers.items()
        ),
    }


def groups(ranked: list[tuple[float, Any]], digits: int = 10) -> list[tuple[float, list[Any]]]:
    """Consecutive items of a ranking grouped by strength (to `digits` significant digits), so two
    rankings whose ties differ only in floating-point noise compare group by group."""
    out: list[tuple[float, list[Any]]] = []
    for key, items in itertools.groupby(ranked, key=lambda item: float(f"{item[0]:.{digits}g}")):
        out.append((key, [item[1] for item in items]))
    return out
