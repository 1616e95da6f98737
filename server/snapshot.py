"""The serving snapshot: an in-memory index of the relationship graph built from Neo4j, so warm
paths are answered without a database round trip and keep being answered while Neo4j is down.

Layout (N people, E KNOWS relationships, one per pair and tenant):
- people sorted by pid, so a pid is found by binary search and node order is pid order;
- a CSR adjacency over both directions: `indptr` (N+1, int32 while it fits), `neighbor` and `edge`
  (2E each, int32);
- per relationship, once: `edge_tenant`, `edge_count`, `edge_two_way` (uint16; counts saturate at
  65,535), `edge_last_ts` (uint32): 26 bytes per relationship in all (plus 4 bytes per person for
  `indptr`), and `edge_strength` (float32, 4 more) while a relationship-strength model is served.

Refresh reads only the KNOWS relationships changed since the last one (their `updated_at`) and
the people new to the snapshot, then re-derives the CSR in memory. People's attributes and
erasures are picked up by a periodic full rebuild; an erasure through this server applies at once."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from graph import exports
from graph import strength as heuristic
from graph.records import FUNCTIONS, TITLE_LEVELS
from graph.store import GraphStore

_LEVEL = {name: i for i, name in enumerate(TITLE_LEVELS)}
_FUNCTION = {name: i for i, name in enumerate(FUNCTIONS)}


@dataclass(frozen=True)
class Companies:
    cids: list[str]
    industry: list[str]
    size_band: list[str]
    index: dict[str, int]


@dataclass(frozen=True)
class Tenants:
    ids: list[str]
    index: dict[str, int]
    share_identities: np.ndarray  # bool per tenant: its members may be shown to other tenants
    network_opt_out: np.ndarray  # bool per tenant: its relationships serve only itself


@dataclass(frozen=True, eq=False)
class Snapshot:
    """An immutable snapshot; refresh returns a new one, swapped in atomically by the holder."""

    pids: np.ndarray  # (N,) S32, sorted
    level: np.ndarray  # (N,) int8 index into TITLE_LEVELS, -1 unknown
    function: np.ndarray  # (N,) int8 index into FUNCTIONS, -1 unknown
    company: np.ndarray  # (N,) int32 current employer, -1 unknown
    employer_indptr: np.ndarray  # (N+1,) int64: every employer of each person
    employer_ids: np.ndarray  # int32
    member_indptr: np.ndarray  # (N+1,) int64: tenant memberships of each person
    member_tenant: np.ndarray  # uint16
    member_team: np.ndarray  # object (str) per membership
    indptr: np.ndarray  # (N+1,) int32 (int64 beyond 2^31 entries)
    neighbor: np.ndarray  # (2E,) int32
    edge: np.ndarray  # (2E,) int32
    edge_tenant: np.ndarray  # (E,) uint16
    edge_count: np.ndarray  # (E,) uint16, saturating
    edge_two_way: np.ndarray  # (E,) uint16, saturating
    edge_last_ts: np.ndarray  # (E,) uint32
    companies: Companies
    tenants: Tenants
    economic_buyers: dict[tuple[int, int], np.ndarray]  # (tenant, company) -> people its deals name
    erased: np.ndarray  # (N,) bool: erased through this server since the last rebuild
    built_at: float
    refreshed_at: float
    watermark_ms: int  # highest KNOWS.updated_at seen
    # The promoted link model's calibrated strength per relationship (server.strengths); None while
    # the heuristic (graph.strength) ranks.
    edge_strength: np.ndarray | None = None
    strength_source: str = heuristic.NAME
    _member_masks: dict[int, np.ndarray] = field(default_factory=dict, repr=False, init=False)
    _company_order: list[np.ndarray] = field(default_factory=list, repr=False, init=False)  # lazily, once

    # -- sizes --------------------------------------------------------------------------------

    @property
    def people(self) -> int:
        return int(self.pids.shape[0])

    @property
    def relationships(self) -> int:
        return int(self.edge_tenant.shape[0])

    @property
    def adjacency_bytes(self) -> int:
        """Bytes of the adjacency index: CSR plus per-relationship evidence."""
        arrays = (self.indptr, self.neighbor, self.edge, self.edge_tenant, self.edge_count, self.edge_two_way,
                  self.edge_last_ts, self.edge_strength)
        return sum(int(a.nbytes) for a in arrays if a is not None)

    def age_seconds(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.refreshed_at)

    def __repr__(self) -> str:
        return (f"Snapshot(people={self.people}, relationships={self.relationships}, "
                f"bytes_per_relationship={self.adjacency_bytes / max(1, self.relationships):.1f})")

    # -- lookups ------------------------------------------------------------------------------

    def node(self, pid: str) -> int | None:
        key = pid.encode()
        i = int(np.searchsorted(self.pids, key))
        if i < self.people and self.pids[i] == key and not self.erased[i]:
            return i
        return None

    def pid(self, node: int) -> str:
        return bytes(self.pids[node]).decode()

    def member_mask(self, tenant: int) -> np.ndarray:
        """Bool per person: a member of `tenant` (cached; snapshots are immutable)."""
        mask = self._member_masks.get(tenant)
        if mask is None:
            owners = self._membership_owners()
            mask = np.zeros(self.people, dtype=bool)
            mask[owners[self.member_tenant == tenant]] = True
            mask &= ~self.erased
            self._member_masks[tenant] = mask
        return mask

    def team_members(self, tenant: int, team: str) -> np.ndarray:
        owners = self._membership_owners()
        keep = (self.member_tenant == tenant) & (self.member_team == team)
        return np.unique(owners[keep])

    def _membership_owners(self) -> np.ndarray:
        """The person of each membership entry (the row of the membership CSR it sits in)."""
        owners: np.ndarray = np.repeat(np.arange(self.people), np.diff(self.member_indptr))
        return owners

    def memberships(self, node: int) -> np.ndarray:
        return self.member_tenant[self.member_indptr[node]:self.member_indptr[node + 1]]

    def employers(self, node: int) -> np.ndarray:
        return self.employer_ids[self.employer_indptr[node]:self.employer_indptr[node + 1]]

    def people_at(self, company: int) -> np.ndarray:
        """People whose current employer is `company`."""
        if not self._company_order:
            self._company_order.append(np.argsort(self.company, kind="stable").astype(np.int32))
        order = self._company_order[0]
        lo, hi = np.searchsorted(self.company[order], [company, company + 1])
        people: np.ndarray = order[lo:hi]
        alive: np.ndarray = people[~self.erased[people]]
        return alive

    def edges_of(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """(neighbors, relationship ids) of a person."""
        lo, hi = self.indptr[node], self.indptr[node + 1]
        return self.neighbor[lo:hi], self.edge[lo:hi]

    def knows_tenant(self, node: int, tenant: int) -> bool:
        """Whether `tenant`'s own data shows this person interacting (or they are its member)."""
        _, edges = self.edges_of(node)
        return bool(np.any(self.edge_tenant[edges] == tenant)) or bool(np.any(self.memberships(node) == tenant))

    def strength(self, edges: np.ndarray, as_of: int) -> np.ndarray:
        """The strength warm paths rank by, per relationship: the served model's, else the heuristic's."""
        if self.edge_strength is not None:
            model: np.ndarray = self.edge_strength[edges].astype(np.float64)
            return model
        return heuristic.heuristic_strength(self.edge_count[edges], self.edge_two_way[edges],
                                            self.edge_last_ts[edges], as_of)

    def with_erased(self, node: int) -> "Snapshot":
        erased = self.erased.copy()
        erased[node] = True
        return replace(self, erased=erased)


# -- building ---------------------------------------------------------------------------------

def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(start, start + count) for each pair, without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift = np.repeat(starts.astype(np.int64) - (np.cumsum(counts) - counts), counts)
    out: np.ndarray = np.arange(total, dtype=np.int64) + shift
    return out


def _csr(n: int, offsets_of: np.ndarray, values: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Group `values` by `offsets_of` (a node per entry) into CSR order."""
    order = np.argsort(offsets_of, kind="stable")
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(offsets_of, minlength=n), out=indptr[1:])
    return indptr, [v[order] for v in values]


def _adjacency(n: int, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids = np.arange(lo.shape[0], dtype=np.int32)
    indptr, (neighbor, edge) = _csr(n, np.concatenate([lo, hi]), [np.concatenate([hi, lo]).astype(np.int32),
                                                                  np.concatenate([ids, ids])])
    # int32 offsets while they fit (2E < 2^31): 4 bytes per person less, which counts when people
    # outnumber relationships per person (1M people, 2.6M relationships: 1.5 bytes per relationship).
    return (indptr.astype(np.int32) if 2 * lo.shape[0] < 2**31 else indptr), neighbor, edge


def edge_endpoints(snap: Snapshot) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) per relationship, recovered from the CSR (each appears once from each side)."""
    owner = np.repeat(np.arange(snap.people, dtype=np.int32), np.diff(snap.indptr))
    lo = np.empty(snap.relationships, dtype=np.int32)
    hi = np.empty(snap.relationships, dtype=np.int32)
    first = owner < snap.neighbor
    lo[snap.edge[first]] = owner[first]
    hi[snap.edge[first]] = snap.neighbor[first]
    return lo, hi


def _people_arrays(rows: list[exports.PersonRow], companies: Companies, tenants: Tenants) -> dict[str, np.ndarray]:
    n = len(rows)
    level = np.full(n, -1, dtype=np.int8)
    function = np.full(n, -1, dtype=np.int8)
    company = np.full(n, -1, dtype=np.int32)
    employers: list[int] = []
    employer_counts = np.zeros(n, dtype=np.int64)
    member_tenant: list[int] = []
    member_team: list[str] = []
    member_counts = np.zeros(n, dtype=np.int64)
    for i, row in enumerate(rows):
        if row.job is not None:
            company[i] = companies.index.get(row.job[0], -1)
            level[i] = _LEVEL.get(row.job[1], -1)
            function[i] = _FUNCTION.get(row.job[2], -1)
        for tenant, team, m_level, m_function in row.memberships:
            member_tenant.append(tenants.index[tenant])
            member_team.append(team)
            if level[i] < 0:
                level[i] = _LEVEL.get(m_level, -1)
            if function[i] < 0:
                function[i] = _FUNCTION.get(m_function, -1)
        member_counts[i] = len(row.memberships)
        ids = [companies.index[c] for c in row.employers if c in companies.index]
        employers.extend(ids)
        employer_counts[i] = len(ids)
    employer_indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(employer_counts, out=employer_indptr[1:])
    member_indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(member_counts, out=member_indptr[1:])
    return {"pids": np.array([r.pid.encode() for r in rows], dtype="S32"), "level": level, "function": function,
            "company": company, "employer_indptr": employer_indptr,
            "employer_ids": np.array(employers, dtype=np.int32), "member_indptr": member_indptr,
            "member_tenant": np.array(member_tenant, dtype=np.uint16),
            "member_team": np.array(member_team, dtype=object)}


def _companies(store: GraphStore) -> Companies:
    rows = exports.companies(store)
    cids = [r["cid"] for r in rows]
    return Companies(cids=cids, industry=[r["industry"] for r in rows], size_band=[r["size_band"] for r in rows],
                     index={c: i for i, c in enumerate(cids)})


def _tenants(store: GraphStore) -> Tenants:
    rows = sorted(exports.tenants(store), key=lambda r: r["tenant"])
    ids = [r["tenant"] for r in rows]
    return Tenants(ids=ids, index={t: i for i, t in enumerate(ids)},
                   share_identities=np.array([r["share_identities"] for r in rows], dtype=bool),
                   network_opt_out=np.array([r["network_opt_out"] for r in rows], dtype=bool))


def _economic_buyers(store: GraphStore, pids: np.ndarray, companies: Companies,
                     tenants: Tenants) -> dict[tuple[int, int], np.ndarray]:
    grouped: dict[tuple[int, int], list[int]] = {}
    for row in exports.economic_buyers(store):
        i = int(np.searchsorted(pids, row["pid"].encode()))
        if i < pids.shape[0] and pids[i] == row["pid"].encode() and row["cid"] in companies.index:
            grouped.setdefault((tenants.index[row["tenant"]], companies.index[row["cid"]]), []).append(i)
    return {key: np.array(sorted(set(v)), dtype=np.int32) for key, v in grouped.items()}


def _edge_arrays(rows: Iterable[dict[str, Any]], pids: np.ndarray, tenants: Tenants) -> tuple[dict[str, np.ndarray], int]:
    lo: list[str] = []
    hi: list[str] = []
    tenant: list[int] = []
    count: list[int] = []
    two_way: list[int] = []
    last: list[int] = []
    watermark = 0
    for row in rows:
        lo.append(row["lo"])
        hi.append(row["hi"])
        tenant.append(tenants.index[row["tenant"]])
        count.append(row["count"])
        two_way.append(row["two_way"])
        last.append(row["last_ts"])
        watermark = max(watermark, int(row["updated_at"] or 0))
    return {"lo": np.searchsorted(pids, np.array(lo, dtype="S32")).astype(np.int32),
            "hi": np.searchsorted(pids, np.array(hi, dtype="S32")).astype(np.int32),
            "tenant": np.array(tenant, dtype=np.uint16), "count": _saturated(count), "two_way": _saturated(two_way),
            "last": np.array(last, dtype=np.uint32)}, watermark


def _saturated(values: list[int]) -> np.ndarray:
    return np.minimum(np.array(values, dtype=np.int64), np.iinfo(np.uint16).max).astype(np.uint16)


def _assemble(people: dict[str, np.ndarray], edges: dict[str, np.ndarray], companies: Companies, tenants: Tenants,
              economic_buyers: dict[tuple[int, int], np.ndarray], watermark: int, built_at: float) -> Snapshot:
    n = people["pids"].shape[0]
    indptr, neighbor, edge = _adjacency(n, edges["lo"], edges["hi"])
    now = time.time()
    columns: dict[str, Any] = people
    return Snapshot(**columns, indptr=indptr, neighbor=neighbor, edge=edge, edge_tenant=edges["tenant"],
                    edge_count=edges["count"], edge_two_way=edges["two_way"], edge_last_ts=edges["last"],
                    companies=companies, tenants=tenants, economic_buyers=economic_buyers,
                    erased=np.zeros(n, dtype=bool), built_at=built_at or now, refreshed_at=now, watermark_ms=watermark)


def build(store: GraphStore) -> Snapshot:
    """Read the whole graph from Neo4j in pages and build a snapshot."""
    companies, tenants = _companies(store), _tenants(store)
    people = _people_arrays(list(exports.people(store)), companies, tenants)
    edges, watermark = _edge_arrays(exports.knows(store), people["pids"], tenants)
    return _assemble(people, edges, companies, tenants, _economic_buyers(store, people["pids"], companies, tenants),
                     watermark, 0.0)


def refresh(snap: Snapshot, store: GraphStore) -> Snapshot:
    """Apply the KNOWS relationships changed since `snap` was refreshed; new people join."""
    changed = exports.knows_changed(store, snap.watermark_ms)
    if not changed:
        return replace(snap, refreshed_at=time.time())
    companies, tenants = _companies(store), _tenants(store)
    known = set(snap.pids.tolist())
    new_pids = sorted({p for r in changed for p in (r["lo"], r["hi"]) if p.encode() not in known})
    lo_old, hi_old = edge_endpoints(snap)
    old_pids = snap.pids
    if new_pids:
        added = _people_arrays(exports.people_by_pid(store, new_pids), companies, tenants)
        people = _merge_people({k: getattr(snap, k) for k in added}, added)
    else:
        people = {k: getattr(snap, k) for k in ("pids", "level", "function", "company", "employer_indptr",
                                               "employer_ids", "member_indptr", "member_tenant", "member_team")}
    pids = people["pids"]
    remap = np.searchsorted(pids, old_pids).astype(np.int32)  # old node index -> new
    base = {"lo": remap[lo_old], "hi": remap[hi_old], "tenant": snap.edge_tenant, "count": snap.edge_count,
            "two_way": snap.edge_two_way, "last": snap.edge_last_ts}
    delta, watermark = _edge_arrays(changed, pids, tenants)
    edges = _upsert_edges(base, delta, pids.shape[0], len(tenants.ids))
    return _assemble(people, edges, companies, tenants, _economic_buyers(store, pids, companies, tenants),
                     max(watermark, snap.watermark_ms), snap.built_at)


def _merge_people(old: dict[str, np.ndarray], added: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Merge two pid-sorted people tables (disjoint pids) into one pid-sorted table."""
    pids = np.concatenate([old["pids"], added["pids"]])
    order = np.argsort(pids, kind="stable")
    merged = {"pids": pids[order]}
    for key in ("level", "function", "company"):
        merged[key] = np.concatenate([old[key], added[key]])[order]
    for ptr, values in (("employer_indptr", ("employer_ids",)), ("member_indptr", ("member_tenant", "member_team"))):
        counts = np.concatenate([np.diff(old[ptr]), np.diff(added[ptr])])
        starts = np.concatenate([old[ptr][:-1], added[ptr][:-1] + old[ptr][-1]])
        new_counts = counts[order]
        take = ranges(starts[order], new_counts)
        indptr = np.zeros(pids.shape[0] + 1, dtype=np.int64)
        np.cumsum(new_counts, out=indptr[1:])
        merged[ptr] = indptr
        for name in values:
            merged[name] = np.concatenate([old[name], added[name]])[take]
    return merged


def _upsert_edges(base: dict[str, np.ndarray], delta: dict[str, np.ndarray], n: int, n_tenants: int) -> dict[str, np.ndarray]:
    """Overwrite the evidence of relationships present in `base`, append the others."""
    def keys(e: dict[str, np.ndarray]) -> np.ndarray:
        key: np.ndarray = (e["lo"].astype(np.int64) * n + e["hi"]) * (n_tenants + 1) + e["tenant"]
        return key

    base_keys = keys(base)
    order = np.argsort(base_keys, kind="stable")
    sorted_keys = base_keys[order]
    delta_keys = keys(delta)
    pos = np.searchsorted(sorted_keys, delta_keys)
    pos_clipped = np.minimum(pos, max(0, sorted_keys.shape[0] - 1))
    present = (sorted_keys.shape[0] > 0) & (sorted_keys[pos_clipped] == delta_keys) if sorted_keys.shape[0] else \
        np.zeros(delta_keys.shape[0], dtype=bool)
    out = {k: v.copy() for k, v in base.items()}
    target = order[pos_clipped[present]]
    for key in ("count", "two_way", "last"):
        out[key][target] = delta[key][present]
    return {k: np.concatenate([out[k], delta[k][~present]]) for k in out}
