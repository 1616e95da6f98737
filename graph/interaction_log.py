"""The interaction log training, evaluation and the link model's serving read: every logged
interaction between two people (time, kind, direction, tenant) plus everyone's employment history,
as flat NumPy arrays (a GraphReader's `interaction_log`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.arrays import positions
from core.errors import InvalidInputError
from core.vocabulary import FUNCTIONS, TITLE_LEVELS
from graph.events import decode_events, encode_events
from graph.scope import TenantScope

# Bump when the arrays or their meaning change: cached logs of another version are not reused.
LOG_SCHEMA = "interactions-v2"


@dataclass(frozen=True)
class InteractionLog:
    """N people (pid order) and M interactions, each between `lo` < `hi` (node indices).

    `direction` is 0 for lo->hi and 1 for hi->lo; meetings and calls involve both sides by nature
    (core.vocabulary.TWO_WAY_INTERACTIONS). Employment rows hold `to = -1` for a current job."""

    pids: np.ndarray  # (N,) S32, sorted
    lo: np.ndarray  # (M,) int32
    hi: np.ndarray  # (M,) int32
    ts: np.ndarray  # (M,) int64 seconds, sorted ascending
    kind: np.ndarray  # (M,) int8 index into INTERACTION_KINDS
    direction: np.ndarray  # (M,) int8
    tenant: np.ndarray  # (M,) int16 index into `tenants`
    tenants: np.ndarray  # (T,) str
    emp_person: np.ndarray  # (J,) int32
    emp_company: np.ndarray  # (J,) int32
    emp_from: np.ndarray  # (J,) int64
    emp_to: np.ndarray  # (J,) int64, -1 while current
    emp_level: np.ndarray  # (J,) int8 index into TITLE_LEVELS, -1 unknown
    emp_function: np.ndarray  # (J,) int8 index into FUNCTIONS, -1 unknown

    @property
    def people(self) -> int:
        return int(self.pids.shape[0])

    @property
    def interactions(self) -> int:
        return int(self.ts.shape[0])

    @property
    def time_range(self) -> tuple[int, int]:
        if not self.interactions:
            raise InvalidInputError("the interaction log is empty: there is nothing to train or evaluate on")
        return int(self.ts[0]), int(self.ts[-1])

    def __repr__(self) -> str:
        return (
            f"InteractionLog(people={self.people}, interactions={self.interactions}, "
            f"tenants={len(self.tenants)}, employment={self.emp_person.shape[0]})"
        )

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **{f.name: getattr(self, f.name) for f in fields(self)})
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> InteractionLog:
        with np.load(path, allow_pickle=False) as data:
            return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass(frozen=True, kw_only=True)
class ExportScope:
    """Which interactions to export: the `tenants` whose logs count (ALL_TENANTS: network-wide,
    which leaves out tenants that opted out of the network unless `with_opted_out`: serving scores
    an opted-out tenant's own relationships for itself), within the time window [start, end) in
    Unix seconds (None: unbounded)."""

    tenants: TenantScope
    start: int | None = None
    end: int | None = None
    with_opted_out: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenants": self.tenants.names(),
            "start": self.start,
            "end": self.end,
            "with_opted_out": self.with_opted_out,
        }


_LEVEL = {name: i for i, name in enumerate(TITLE_LEVELS)}
_FUNCTION = {name: i for i, name in enumerate(FUNCTIONS)}
# (pid, company, from, to, title level, function): one employment record, `to` -1 while current.
EmploymentRow = tuple[str, str, int, int, str, str]


def build_interaction_log(
    knows: Iterable[tuple[str, str, str, list[int]]], employment: Iterable[EmploymentRow], scope: ExportScope
) -> InteractionLog:
    """The log of `knows` rows (lo pid, hi pid, tenant, event codes) already restricted to the
    scope's tenants, cut to its time window, with `employment`. Canonical for the same graph
    whatever order the rows come in: tenants by id, interactions by time, then pair and code."""
    start = -(1 << 62) if scope.start is None else scope.start
    end = 1 << 62 if scope.end is None else scope.end
    lo_pid: list[str] = []
    hi_pid: list[str] = []
    tenant_names: list[str] = []
    code_parts: list[np.ndarray] = []
    for lo_row, hi_row, tenant_row, events in knows:
        codes = np.asarray(events, dtype=np.int64)
        ts = decode_events(codes)[0]
        codes = codes[(ts >= start) & (ts < end)]
        if not codes.size:
            continue
        lo_pid.extend([lo_row] * codes.size)
        hi_pid.extend([hi_row] * codes.size)
        tenant_names.extend([tenant_row] * codes.size)
        code_parts.append(codes)
    jobs = sorted(employment)
    pids = np.unique(np.array(lo_pid + hi_pid + [j[0] for j in jobs], dtype="S32"))
    tenants = sorted(set(tenant_names))
    codes = np.concatenate(code_parts) if code_parts else np.zeros(0, dtype=np.int64)
    lo = np.searchsorted(pids, np.array(lo_pid, dtype="S32")).astype(np.int32)
    hi = np.searchsorted(pids, np.array(hi_pid, dtype="S32")).astype(np.int32)
    tenant = np.searchsorted(np.array(tenants, dtype=str), np.array(tenant_names, dtype=str)).astype(np.int16)
    # The same interaction logged by two tenants (both sides are customers) counts once: the
    # first tenant's, in id order.
    order = np.lexsort(np.stack([tenant.astype(np.int64), codes, hi.astype(np.int64), lo.astype(np.int64)]))
    lo, hi, codes, tenant = lo[order], hi[order], codes[order], tenant[order]
    first = np.ones(codes.shape[0], dtype=bool)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1]) | (codes[1:] != codes[:-1])
    lo, hi, codes, tenant = lo[first], hi[first], codes[first], tenant[first]
    by_time = _by_time(lo, hi, codes)
    ts, kind, direction = decode_events(codes[by_time])
    companies = {cid: i for i, cid in enumerate(sorted({j[1] for j in jobs}))}
    return InteractionLog(
        pids=pids,
        lo=lo[by_time],
        hi=hi[by_time],
        ts=ts,
        kind=kind,
        direction=direction,
        tenant=tenant[by_time],
        tenants=np.array(tenants, dtype=str),
        emp_person=np.searchsorted(pids, np.array([j[0] for j in jobs], dtype="S32")).astype(np.int32),
        emp_company=np.array([companies[j[1]] for j in jobs], dtype=np.int32),
        emp_from=np.array([j[2] for j in jobs], dtype=np.int64),
        emp_to=np.array([j[3] for j in jobs], dtype=np.int64),
        emp_level=np.array([_LEVEL.get(j[4], -1) for j in jobs], dtype=np.int8),
        emp_function=np.array([_FUNCTION.get(j[5], -1) for j in jobs], dtype=np.int8),
    )


def with_pairs_replaced(
    log: InteractionLog, lo_pids: np.ndarray, hi_pids: np.ndarray, fresh: InteractionLog
) -> InteractionLog | None:
    """`log` with every interaction between the pairs (lo_pids[i] < hi_pids[i], S32) replaced by
    `fresh`'s: those pairs' log read again in `log`'s scope (`GraphReader.pair_interactions`), so a
    refresh need not read the whole log. Equal to reading the whole log again when only those pairs'
    interactions changed; employment stays `log`'s (people's new jobs arrive with the next whole
    read). None when `fresh` names a person or a tenant `log` lacks: its people are numbered, so a
    newcomer needs the whole log."""
    people, tenants = positions(log.pids, fresh.pids), positions(log.tenants, fresh.tenants)
    if (people < 0).any() or (tenants < 0).any():
        return None
    pair_lo, pair_hi = positions(log.pids, lo_pids), positions(log.pids, hi_pids)
    held = (pair_lo >= 0) & (pair_hi >= 0)  # a pair with someone the log lacks has nothing in it to replace
    n = np.int64(max(log.people, 1))
    keep = ~np.isin(log.lo * n + log.hi, pair_lo[held] * n + pair_hi[held])
    lo = np.concatenate([log.lo[keep], people[fresh.lo].astype(np.int32)])
    hi = np.concatenate([log.hi[keep], people[fresh.hi].astype(np.int32)])
    tenant = np.concatenate([log.tenant[keep], tenants[fresh.tenant].astype(np.int16)])
    codes = np.concatenate([_codes(log, keep), _codes(fresh, np.ones(fresh.interactions, dtype=bool))])
    by_time = _by_time(lo, hi, codes)
    ts, kind, direction = decode_events(codes[by_time])
    return replace(log, lo=lo[by_time], hi=hi[by_time], ts=ts, kind=kind, direction=direction, tenant=tenant[by_time])


def _by_time(lo: np.ndarray, hi: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The log's canonical order: by time, then pair, then event code."""
    return np.lexsort(np.stack([codes, hi.astype(np.int64), lo.astype(np.int64), codes >> 3]))


def _codes(log: InteractionLog, rows: np.ndarray) -> np.ndarray:
    """The event codes (graph.events) of the log's `rows`."""
    return encode_events(log.ts[rows], log.kind[rows], log.direction[rows])
