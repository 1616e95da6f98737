"""The serving snapshot: an in-memory index of the relationship graph built from Neo4j, so warm
paths are answered without a database round trip and keep being answered while Neo4j is down.

Layout (N people, E KNOWS relationships, one per pair and tenant):
- people sorted by pid, so a pid is found by binary search and node order is pid order;
- a CSR adjacency over both directions: `indptr` (N+1, int32 while it fits), `neighbor` and `edge`
  (2E each, int32);
- per relationship, once: `edge_tenant`, `edge_count`, `edge_two_way` (uint16; counts saturate at
  65,535), `edge_last_ts` (uint32): 26 bytes per relationship in all (plus 4 bytes per person for
  `indptr`), and `edge_strength` (float32, 4 more) while a relationship-strength model is served.

Refresh reads what changed since the last one, by watermarks: KNOWS relationships (their
`updated_at`), people whose records changed (`Person.updated_at`: a new job, membership, deal or
signal; re-read whole), erasure tombstones (each erased person is dropped with their relationships
and re-read: what a tenant's erasure left of them, or nothing), and every tenant's sharing
settings. A refreshed snapshot holds what a full build would; the periodic full rebuild is a
safety net, not the way changes arrive.

Tenants and companies are numbered once: a refresh keeps every number and appends the new ones, so
a relationship's tenant or a person's employer can never come to mean another. A row that does not fit (a time outside
uint32, an unknown tenant, a malformed pid) is skipped and counted, never allowed to stop a build."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeGuard

import numba
import numpy as np

from core.arrays import positions
from core.vocabulary import FUNCTIONS, TITLE_LEVELS
from graph import strength_heuristic as heuristic
from graph.pseudonymize import PID_HEX_CHARS
from graph.reader import ALL_TENANTS, Erasure, GraphReader, KnowsRow, PersonChange, PersonRow

log = logging.getLogger("relgraph.server")

_LEVEL = {name: i for i, name in enumerate(TITLE_LEVELS)}
_FUNCTION = {name: i for i, name in enumerate(FUNCTIONS)}
_UINT32_END = 1 << 32
# The people table: per-person columns, and CSR groups (offsets, value columns) per person.
_PERSON_COLUMNS = ("pids", "level", "function", "company")
_PERSON_GROUPS = (
    ("employer_indptr", ("employer_ids",)),
    ("member_indptr", ("member_tenant", "member_team")),
    ("held_indptr", ("held_tenant",)),
)


@dataclass(frozen=True)
class Companies:
    cids: list[str]
    industry: list[str]
    size_band: list[str]
    index: dict[str, int]


@dataclass(frozen=True)
class Tenants:
    ids: tuple[str, ...]
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
    held_indptr: np.ndarray  # (N+1,) int64: tenants whose employment, deal or activity records name the person
    held_tenant: np.ndarray  # uint16
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
    built_at: float
    refreshed_at: float
    watermark_ms: int  # highest KNOWS.updated_at seen
    people_watermark_ms: int  # highest Person.updated_at seen
    erasure_watermark_ms: int  # latest erasure tombstone applied
    rows_skipped: int = 0  # rows the build or refresh that made this snapshot could not use
    # The promoted link model's calibrated strength per relationship (server.strengths); None while
    # the heuristic (graph.strength_heuristic) ranks. `strength_basis` says what the strengths were computed
    # from (model version and the tenants that had opted out), so a change of either re-scores.
    edge_strength: np.ndarray | None = None
    strength_source: str = heuristic.NAME
    strength_basis: str = ""
    _member_masks: dict[int, np.ndarray] = field(default_factory=dict, repr=False, init=False)
    _held_masks: dict[int, np.ndarray] = field(default_factory=dict, repr=False, init=False)
    _company_order: list[np.ndarray] = field(default_factory=list, repr=False, init=False)  # lazily, once
    _sharing_people: list[np.ndarray] = field(default_factory=list, repr=False, init=False)  # lazily, once
    _strength_bounds: list[np.ndarray] = field(default_factory=list, repr=False, init=False)  # lazily, once

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
        arrays = (
            self.indptr,
            self.neighbor,
            self.edge,
            self.edge_tenant,
            self.edge_count,
            self.edge_two_way,
            self.edge_last_ts,
            self.edge_strength,
        )
        return sum(int(a.nbytes) for a in arrays if a is not None)

    @property
    def total_bytes(self) -> int:
        """Bytes of every array of the snapshot, the per-person ones included (team names counted
        as the strings they are)."""
        arrays = [getattr(self, f.name) for f in fields(self)]
        total = sum(int(a.nbytes) for a in arrays if isinstance(a, np.ndarray))
        return total + sum(sys.getsizeof(team) for team in self.member_team.tolist())

    def age_seconds(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.refreshed_at)

    def __repr__(self) -> str:
        return (
            f"Snapshot(people={self.people}, relationships={self.relationships}, "
            f"bytes_per_relationship={self.adjacency_bytes / max(1, self.relationships):.1f})"
        )

    # -- lookups ------------------------------------------------------------------------------

    def node(self, pid: str) -> int | None:
        key = pid.encode()
        i = int(np.searchsorted(self.pids, key))
        return i if i < self.people and self.pids[i] == key else None

    def pid(self, node: int) -> str:
        return bytes(self.pids[node]).decode()

    def member_mask(self, tenant: int) -> np.ndarray:
        """Bool per person: a member of `tenant` (cached; snapshots are immutable)."""
        mask = self._member_masks.get(tenant)
        if mask is None:
            mask = np.zeros(self.people, dtype=bool)
            mask[_owners(self.member_indptr)[self.member_tenant == tenant]] = True
            self._member_masks[tenant] = mask
        return mask

    def shares_identity(self, node: int) -> bool:
        """Whether the person is a member of a tenant that opted in to share identities (a bool per
        person, computed once per snapshot)."""
        if not self._sharing_people:
            sharing = np.zeros(self.people, dtype=bool)
            sharing[_owners(self.member_indptr)[self.tenants.share_identities[self.member_tenant]]] = True
            self._sharing_people.append(sharing)
        return bool(self._sharing_people[0][node])

    def team_members(self, tenant: int, team: str) -> np.ndarray:
        keep = (self.member_tenant == tenant) & (self.member_team == team)
        return np.unique(_owners(self.member_indptr)[keep])

    def team(self, node: int, tenant: int) -> str:
        """The person's team as a member of `tenant` ("" when none is named, or not a member)."""
        lo, hi = int(self.member_indptr[node]), int(self.member_indptr[node + 1])
        return next((str(self.member_team[i]) for i in range(lo, hi) if self.member_tenant[i] == tenant), "")

    def memberships(self, node: int) -> np.ndarray:
        return self.member_tenant[self.member_indptr[node] : self.member_indptr[node + 1]]

    def employers(self, node: int) -> np.ndarray:
        return self.employer_ids[self.employer_indptr[node] : self.employer_indptr[node + 1]]

    def people_at(self, company: int) -> np.ndarray:
        """People whose current employer is `company`."""
        if not self._company_order:
            self._company_order.append(np.argsort(self.company, kind="stable").astype(np.int32))
        order = self._company_order[0]
        lo, hi = np.searchsorted(self.company[order], [company, company + 1])
        people: np.ndarray = order[lo:hi]
        return people

    def edges_of(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """(neighbors, relationship ids) of a person."""
        lo, hi = self.indptr[node], self.indptr[node + 1]
        return self.neighbor[lo:hi], self.edge[lo:hi]

    def held_by(self, node: int, tenant: int) -> bool:
        """Whether `tenant`'s own records name this person: its member, a KNOWS relationship it
        logged, or an employment, deal or activity record it ingested."""
        return bool(self.held_mask(tenant)[node])

    def held_mask(self, tenant: int) -> np.ndarray:
        """`held_by` of every person for `tenant` (cached per tenant; snapshots are immutable)."""
        mask = self._held_masks.get(tenant)
        if mask is None:
            mask = self.member_mask(tenant).copy()
            mask[_owners(self.held_indptr)[self.held_tenant == tenant]] = True
            _mark_logged(self.indptr, self.edge, self.edge_tenant, tenant, mask)
            self._held_masks[tenant] = mask
        return mask

    def strength(self, edges: np.ndarray, as_of: int) -> np.ndarray:
        """The strength warm paths rank by, per relationship: the served model's, else the heuristic's."""
        if self.edge_strength is not None:
            model: np.ndarray = self.edge_strength[edges].astype(np.float64)
            return model
        return heuristic.heuristic_strength(self.edge_count[edges], self.edge_last_ts[edges], as_of)

    def strength_bound(self) -> np.ndarray:
        """Per person, a strength none of their relationships exceeds at any time (float64; 0 for
        someone without any): the model's strongest, or the heuristic's frequency factor."""
        if not self._strength_bounds:
            per_edge = (
                self.edge_strength.astype(np.float64)
                if self.edge_strength is not None
                else heuristic.frequency_factor(self.edge_count)
            )
            bound = np.zeros(self.people)
            has = np.diff(self.indptr) > 0
            if has.any():
                bound[has] = np.maximum.reduceat(per_edge[self.edge], self.indptr[:-1][has].astype(np.int64))
            self._strength_bounds.append(bound)
        return self._strength_bounds[0]


@numba.njit(nogil=True, cache=True)
def _mark_logged(indptr, edge, edge_tenant, tenant, mask):  # type: ignore[no-untyped-def]
    """Mark everyone at one end of a relationship `tenant` logged (compiled: one pass over the
    adjacency, no per-slot temporaries, which at millions of relationships cost hundreds of MB)."""
    for person in range(indptr.shape[0] - 1):
        for slot in range(indptr[person], indptr[person + 1]):
            if edge_tenant[edge[slot]] == tenant:
                mask[person] = True
                break


def _owners(indptr: np.ndarray) -> np.ndarray:
    """The person of each entry of a per-person CSR group (the row it sits in)."""
    owners: np.ndarray = np.repeat(np.arange(indptr.shape[0] - 1), np.diff(indptr))
    return owners


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
    indptr, (neighbor, edge) = _csr(
        n, np.concatenate([lo, hi]), [np.concatenate([hi, lo]).astype(np.int32), np.concatenate([ids, ids])]
    )
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


def valid_pid(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and len(value) == PID_HEX_CHARS and value.isascii()


def _people_arrays(
    rows: Iterable[PersonRow], companies: Companies, tenants: Tenants
) -> tuple[dict[str, np.ndarray], int]:
    """The people table of `rows` (pid order), and how many rows had to be skipped."""
    pids: list[bytes] = []
    level: list[int] = []
    function: list[int] = []
    company: list[int] = []
    groups: dict[str, list[Any]] = {name: [] for _, names in _PERSON_GROUPS for name in names}
    counts: dict[str, list[int]] = {ptr: [] for ptr, _ in _PERSON_GROUPS}
    skipped = 0
    for row in rows:
        if not valid_pid(row.pid):
            skipped += 1
            continue
        job_level = job_function = job_company = -1
        if row.job is not None:
            job_company = companies.index.get(row.job[0], -1)
            job_level, job_function = _LEVEL.get(row.job[1], -1), _FUNCTION.get(row.job[2], -1)
        memberships = [m for m in row.memberships if m[0] in tenants.index]
        skipped += len(row.memberships) - len(memberships)
        for _, _, m_level, m_function in memberships:  # a member's title fills in what no job says
            job_level = job_level if job_level >= 0 else _LEVEL.get(m_level, -1)
            job_function = job_function if job_function >= 0 else _FUNCTION.get(m_function, -1)
        employers = [companies.index[c] for c in row.employers if c in companies.index]
        held = sorted({tenants.index[t] for t in row.held_by if t in tenants.index})
        pids.append(row.pid.encode())
        level.append(job_level)
        function.append(job_function)
        company.append(job_company)
        groups["employer_ids"] += employers
        groups["member_tenant"] += [tenants.index[m[0]] for m in memberships]
        groups["member_team"] += [m[1] for m in memberships]
        groups["held_tenant"] += held
        counts["employer_indptr"].append(len(employers))
        counts["member_indptr"].append(len(memberships))
        counts["held_indptr"].append(len(held))
    table = {
        "pids": np.array(pids, dtype="S32"),
        "level": np.array(level, dtype=np.int8),
        "function": np.array(function, dtype=np.int8),
        "company": np.array(company, dtype=np.int32),
        "employer_ids": np.array(groups["employer_ids"], dtype=np.int32),
        "member_tenant": np.array(groups["member_tenant"], dtype=np.uint16),
        "member_team": np.array(groups["member_team"], dtype=object),
        "held_tenant": np.array(groups["held_tenant"], dtype=np.uint16),
    }
    for ptr, _ in _PERSON_GROUPS:
        table[ptr] = np.concatenate([[0], np.cumsum(counts[ptr], dtype=np.int64)]).astype(np.int64)
    return table, skipped


def _take_people(table: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The people table restricted to (and reordered as) `rows`."""
    out = {name: table[name][rows] for name in _PERSON_COLUMNS}
    for ptr, names in _PERSON_GROUPS:
        counts = np.diff(table[ptr])[rows]
        take = ranges(table[ptr][:-1][rows], counts)
        out[ptr] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        for name in names:
            out[name] = table[name][take]
    return out


def _concat_people(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {name: np.concatenate([a[name], b[name]]) for name in _PERSON_COLUMNS}
    for ptr, names in _PERSON_GROUPS:
        out[ptr] = np.concatenate([a[ptr], b[ptr][1:] + a[ptr][-1]])
        for name in names:
            out[name] = np.concatenate([a[name], b[name]])
    return out


def read_companies(reader: GraphReader, numbered: Sequence[str] = ()) -> Companies:
    """Every company with its industry and size band, read now. Companies already `numbered` keep
    their numbers and new ones are appended, so no person's employer number changes meaning."""
    rows = {r.cid: r for r in reader.companies(ALL_TENANTS) if isinstance(r.cid, str)}
    cids = [*numbered, *sorted(set(rows) - set(numbered))]
    return Companies(
        cids=cids,
        industry=[str(rows[c].industry) if c in rows else "" for c in cids],
        size_band=[str(rows[c].size_band) if c in rows else "" for c in cids],
        index={c: i for i, c in enumerate(cids)},
    )


def read_tenants(reader: GraphReader, numbered: Sequence[str] = ()) -> Tenants:
    """Every tenant with its sharing settings, read now. Tenants already `numbered` keep their
    numbers and new ones are appended (in id order); a tenant no longer in the graph keeps its
    number but neither shares nor serves the network."""
    rows = {r.tenant: r for r in reader.tenants(ALL_TENANTS) if isinstance(r.tenant, str)}
    ids = (*numbered, *sorted(set(rows) - set(numbered)))
    return Tenants(
        ids=ids,
        index={t: i for i, t in enumerate(ids)},
        share_identities=np.array([rows[t].share_identities if t in rows else False for t in ids], dtype=bool),
        network_opt_out=np.array([rows[t].network_opt_out if t in rows else True for t in ids], dtype=bool),
    )


def _economic_buyers(
    reader: GraphReader, pids: np.ndarray, companies: Companies, tenants: Tenants
) -> dict[tuple[int, int], np.ndarray]:
    grouped: dict[tuple[int, int], list[int]] = {}
    for row in reader.economic_buyers(ALL_TENANTS):
        if not valid_pid(row.pid) or row.tenant not in tenants.index or row.cid not in companies.index:
            continue
        i = int(np.searchsorted(pids, row.pid.encode()))
        if i < pids.shape[0] and pids[i] == row.pid.encode():
            grouped.setdefault((tenants.index[row.tenant], companies.index[row.cid]), []).append(i)
    return {key: np.array(sorted(set(v)), dtype=np.int32) for key, v in grouped.items()}


def _count(value: Any, upper: int) -> int:
    """A stored count or time as an int in [0, upper); ValueError for anything else."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < upper:
        raise ValueError(value)
    return value


def _edge_arrays(
    rows: Iterable[KnowsRow], pids: np.ndarray, tenants: Tenants
) -> tuple[dict[str, np.ndarray], int, int]:
    """The relationship columns of `rows`, the highest `updated_at` among them, and how many rows
    were skipped (malformed, out of range, or naming a person or tenant the snapshot lacks)."""
    lo: list[str] = []
    hi: list[str] = []
    tenant: list[int] = []
    count: list[int] = []
    two_way: list[int] = []
    last: list[int] = []
    watermark = skipped = 0
    for row in rows:
        if isinstance(row.updated_at, int) and not isinstance(row.updated_at, bool):
            watermark = max(watermark, row.updated_at)  # a skipped row is not read again and again
        try:
            if not (valid_pid(row.lo) and valid_pid(row.hi)) or row.lo >= row.hi:
                raise ValueError("endpoints")
            values = (
                tenants.index[row.tenant],
                _count(row.interactions, 1 << 62),
                _count(row.two_way, 1 << 62),
                _count(row.last_ts, _UINT32_END),
            )
        except (KeyError, TypeError, ValueError):
            skipped += 1
            continue
        lo.append(row.lo)
        hi.append(row.hi)
        tenant.append(values[0])
        count.append(values[1])
        two_way.append(values[2])
        last.append(values[3])
    lo_pids, hi_pids = np.array(lo, dtype="S32"), np.array(hi, dtype="S32")
    lo_idx, hi_idx = positions(pids, lo_pids).astype(np.int32), positions(pids, hi_pids).astype(np.int32)
    known = (lo_idx >= 0) & (hi_idx >= 0)
    skipped += int((~known).sum())
    columns: dict[str, np.ndarray] = {
        "lo": lo_idx,
        "hi": hi_idx,
        "tenant": np.array(tenant, dtype=np.uint16),
        "count": _saturated(count),
        "two_way": _saturated(two_way),
        "last": np.array(last, dtype=np.uint32),
    }
    return {k: v[known] for k, v in columns.items()}, watermark, skipped


def _saturated(values: list[int]) -> np.ndarray:
    return np.minimum(np.array(values, dtype=np.int64), np.iinfo(np.uint16).max).astype(np.uint16)


def _assemble(
    people: dict[str, np.ndarray],
    edges: dict[str, np.ndarray],
    companies: Companies,
    tenants: Tenants,
    economic_buyers: dict[tuple[int, int], np.ndarray],
    *,
    watermarks: tuple[int, int, int],
    built_at: float,
    skipped: int,
) -> Snapshot:
    n = people["pids"].shape[0]
    indptr, neighbor, edge = _adjacency(n, edges["lo"], edges["hi"])
    now = time.time()
    columns: dict[str, Any] = people
    return Snapshot(
        **columns,
        indptr=indptr,
        neighbor=neighbor,
        edge=edge,
        edge_tenant=edges["tenant"],
        edge_count=edges["count"],
        edge_two_way=edges["two_way"],
        edge_last_ts=edges["last"],
        companies=companies,
        tenants=tenants,
        economic_buyers=economic_buyers,
        built_at=built_at or now,
        refreshed_at=now,
        watermark_ms=watermarks[0],
        people_watermark_ms=watermarks[1],
        erasure_watermark_ms=watermarks[2],
        rows_skipped=skipped,
    )


def build(reader: GraphReader) -> Snapshot:
    """Read the whole graph in pages and build a snapshot. It reads every tenant (ALL_TENANTS): the
    snapshot holds the network, and the visibility rule applies per answer."""
    # Watermarks first: whatever changes while the pages are read is applied again by the next refresh.
    erasure_watermark = max((e.at for e in reader.erasures_since(-1, ALL_TENANTS)), default=0)
    people_watermark = reader.people_watermark(ALL_TENANTS)
    companies, tenants = read_companies(reader), read_tenants(reader)
    people, skipped_people = _people_arrays(reader.people(ALL_TENANTS), companies, tenants)
    edges, watermark, skipped_edges = _edge_arrays(reader.knows(ALL_TENANTS), people["pids"], tenants)
    return _assemble(
        people,
        edges,
        companies,
        tenants,
        _economic_buyers(reader, people["pids"], companies, tenants),
        watermarks=(watermark, people_watermark, erasure_watermark),
        built_at=0.0,
        skipped=skipped_people + skipped_edges,
    )


@dataclass(frozen=True)
class Changes:
    """What changed in the graph after a snapshot's watermarks: read once per refresh, and applied to
    the snapshot and to the deal index alike (server/deal_index.py)."""

    erasures: list[Erasure]
    people: list[PersonChange]
    knows: list[KnowsRow]


def read_changes(snap: Snapshot, reader: GraphReader) -> Changes:
    return Changes(
        erasures=reader.erasures_since(snap.erasure_watermark_ms, ALL_TENANTS),
        people=reader.people_changed(snap.people_watermark_ms, ALL_TENANTS),
        knows=reader.knows_changed(snap.watermark_ms, ALL_TENANTS),
    )


def refresh(snap: Snapshot, reader: GraphReader, changes: Changes) -> Snapshot:
    """Apply what changed since `snap` (`changes`, from `read_changes`): tenants' settings; people
    whose records changed (re-read whole); people erased (dropped with their relationships, then
    re-read: what a tenant's erasure left of them, or nothing); and KNOWS relationships changed
    since its watermark. The result holds what a full build would."""
    tenants = read_tenants(reader, snap.tenants.ids)
    erasures, updated, changed = changes.erasures, changes.people, changes.knows
    if not changed and not erasures and not updated:
        return replace(snap, tenants=tenants, refreshed_at=time.time(), rows_skipped=0)
    erased = sorted({e.pid for e in erasures if valid_pid(e.pid)})
    if erased:
        changed = changed + reader.knows_of(erased, ALL_TENANTS)
    companies = read_companies(reader, snap.companies.cids)

    # People: the erased and the updated leave and are read again, with anyone new.
    old_lo, old_hi = edge_endpoints(snap)
    reread = set(erased) | {u.pid for u in updated if valid_pid(u.pid)}
    kept = ~np.isin(snap.pids, np.array(sorted(reread), dtype="S32"))
    old_people = _take_people({k: getattr(snap, k) for k in _people_keys()}, np.flatnonzero(kept))
    known = set(old_people["pids"].tolist())
    referenced = {p for r in changed for p in (r.lo, r.hi) if valid_pid(p)}
    new_pids = sorted({p for p in referenced if p.encode() not in known} | reread)
    added, skipped = _people_arrays(reader.people_by_pid(new_pids, ALL_TENANTS) if new_pids else [], companies, tenants)
    merged = _concat_people(old_people, added)
    people = _take_people(merged, np.argsort(merged["pids"], kind="stable"))
    pids = people["pids"]

    # Relationships: every one whose people are still there, but an erased person's (read again above).
    remap = positions(pids, snap.pids).astype(np.int32)  # old node index -> new, -1 for people gone
    keep_edge = (remap[old_lo] >= 0) & (remap[old_hi] >= 0)
    if erased:
        gone = np.isin(snap.pids, np.array(erased, dtype="S32"))
        keep_edge &= ~(gone[old_lo] | gone[old_hi])
    base = {
        "lo": remap[old_lo][keep_edge],
        "hi": remap[old_hi][keep_edge],
        "tenant": snap.edge_tenant[keep_edge],
        "count": snap.edge_count[keep_edge],
        "two_way": snap.edge_two_way[keep_edge],
        "last": snap.edge_last_ts[keep_edge],
    }
    delta, watermark, skipped_edges = _edge_arrays(changed, pids, tenants)
    edges = _upsert_edges(base, delta, pids.shape[0], len(tenants.ids))
    watermarks = (
        max(watermark, snap.watermark_ms),
        max([snap.people_watermark_ms, *(u.updated_at for u in updated)]),
        max([snap.erasure_watermark_ms, *(e.at for e in erasures)]),
    )
    return _assemble(
        people,
        edges,
        companies,
        tenants,
        _economic_buyers(reader, pids, companies, tenants),
        watermarks=watermarks,
        built_at=snap.built_at,
        skipped=skipped + skipped_edges,
    )


def _people_keys() -> tuple[str, ...]:
    return (*_PERSON_COLUMNS, *(name for ptr, names in _PERSON_GROUPS for name in (ptr, *names)))


def _upsert_edges(
    base: dict[str, np.ndarray], delta: dict[str, np.ndarray], n: int, n_tenants: int
) -> dict[str, np.ndarray]:
    """Overwrite the evidence of relationships present in `base`, append the others."""

    def keys(e: dict[str, np.ndarray]) -> np.ndarray:
        key: np.ndarray = (e["lo"].astype(np.int64) * n + e["hi"]) * (n_tenants + 1) + e["tenant"]
        return key

    # A relationship changed twice between refreshes appears once (Neo4j returns it once), but the
    # erased person's re-read relationships may also be among the changed ones: keep the last.
    delta_keys = keys(delta)
    _, last = np.unique(delta_keys[::-1], return_index=True)
    unique = np.sort(delta_keys.shape[0] - 1 - last)
    delta, delta_keys = {k: v[unique] for k, v in delta.items()}, delta_keys[unique]
    base_keys = keys(base)
    order = np.argsort(base_keys, kind="stable")
    sorted_keys = base_keys[order]
    pos = np.minimum(np.searchsorted(sorted_keys, delta_keys), max(0, sorted_keys.shape[0] - 1))
    present = sorted_keys[pos] == delta_keys if sorted_keys.shape[0] else np.zeros(delta_keys.shape[0], dtype=bool)
    out = {k: v.copy() for k, v in base.items()}
    target = order[pos[present]]
    for key in ("count", "two_way", "last"):
        out[key][target] = delta[key][present]
    return {k: np.concatenate([out[k], delta[k][~present]]) for k in out}
