"""The interaction log that training and evaluation read: every logged interaction between two
people (time, kind, direction, tenant) plus everyone's employment history, as flat NumPy arrays.

It is exported from Neo4j in pid-ordered pages (`graph.exports`), restricted to a time window and
a tenant scope, and cached on disk under a key made of the window, the scope, the export schema
and a fingerprint of the graph, so retraining on unchanged data does not read Neo4j again."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from tqdm import tqdm

from graph import exports
from graph.records import FUNCTIONS, TITLE_LEVELS
from graph.store import GraphStore
from graph.writes import decode_events
from relgraph.errors import InvalidInputError

# Bump when the arrays or their meaning change: cached exports of another version are not reused.
EXPORT_SCHEMA = "interactions-v1"
_LEVEL = {name: i for i, name in enumerate(TITLE_LEVELS)}
_FUNCTION = {name: i for i, name in enumerate(FUNCTIONS)}


@dataclass(frozen=True)
class InteractionLog:
    """N people (pid order) and M interactions, each between `lo` < `hi` (node indices).

    `direction` is 0 for lo->hi and 1 for hi->lo; meetings and calls involve both sides by nature
    (graph.records.TWO_WAY_INTERACTIONS). Employment rows hold `to = -1` for a current job."""

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
        return (f"InteractionLog(people={self.people}, interactions={self.interactions}, "
                f"tenants={len(self.tenants)}, employment={self.emp_person.shape[0]})")

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **{f.name: getattr(self, f.name) for f in fields(self)})
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "InteractionLog":
        with np.load(path, allow_pickle=False) as data:
            return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass(frozen=True, kw_only=True)
class ExportScope:
    """Which interactions to export: a time window [start, end) in Unix seconds (None: unbounded)
    and a tenant (None: network-wide, which leaves out tenants that opted out of the network,
    unless `with_opted_out`: serving scores an opted-out tenant's own relationships for itself)."""

    start: int | None = None
    end: int | None = None
    tenant: str | None = None
    with_opted_out: bool = False

    def to_dict(self) -> dict[str, int | str | bool | None]:
        return {"start": self.start, "end": self.end, "tenant": self.tenant, "with_opted_out": self.with_opted_out}


def export_interactions(store: GraphStore, scope: ExportScope, cache_dir: Path | None = None,
                        progress: bool = False) -> InteractionLog:
    """The interaction log of `scope`, from the on-disk cache when the graph has not changed."""
    key = hashlib.sha256(json.dumps({"schema": EXPORT_SCHEMA, "scope": scope.to_dict(),
                                     "graph": exports.fingerprint(store)}, sort_keys=True,
                                    default=str).encode()).hexdigest()[:20]
    path = cache_dir / f"{EXPORT_SCHEMA}-{key}.npz" if cache_dir is not None else None
    if path is not None and path.exists():
        return InteractionLog.load(path)
    log = _read(store, scope, progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        log.save(path)
    return log


def purge_export_cache(cache_dir: Path) -> int:
    """Delete every cached export under `cache_dir` (after an erasure: exports hold pseudonyms);
    returns how many files went. A later export is read from Neo4j afresh."""
    removed = 0
    for path in cache_dir.glob("*.npz") if cache_dir.is_dir() else ():
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def _read(store: GraphStore, scope: ExportScope, progress: bool) -> InteractionLog:
    opted_out = set() if scope.with_opted_out else \
        {row["tenant"] for row in exports.tenants(store) if row["network_opt_out"]}
    allowed = (lambda t: t == scope.tenant) if scope.tenant is not None else (lambda t: t not in opted_out)
    start = -(1 << 62) if scope.start is None else scope.start
    end = 1 << 62 if scope.end is None else scope.end

    tenant_index: dict[str, int] = {}
    lo_pid: list[str] = []
    hi_pid: list[str] = []
    code_parts: list[np.ndarray] = []
    tenant_parts: list[np.ndarray] = []
    for row in tqdm(exports.knows_events(store), desc="export interactions", unit=" pairs", disable=not progress):
        if not allowed(row["tenant"]):
            continue
        codes = np.asarray(row["events"], dtype=np.int64)
        ts = decode_events(codes)[0]
        codes = codes[(ts >= start) & (ts < end)]
        if not codes.size:
            continue
        lo_pid.extend([row["lo"]] * codes.size)
        hi_pid.extend([row["hi"]] * codes.size)
        code_parts.append(codes)
        tenant_parts.append(np.full(codes.size, tenant_index.setdefault(row["tenant"], len(tenant_index)),
                                    dtype=np.int16))
    jobs = exports.employment(store)
    pids = np.unique(np.array(lo_pid + hi_pid + [j["pid"] for j in jobs], dtype="S32"))

    codes = np.concatenate(code_parts) if code_parts else np.zeros(0, dtype=np.int64)
    lo = np.searchsorted(pids, np.array(lo_pid, dtype="S32")).astype(np.int32)
    hi = np.searchsorted(pids, np.array(hi_pid, dtype="S32")).astype(np.int32)
    tenant = np.concatenate(tenant_parts) if tenant_parts else np.zeros(0, dtype=np.int16)
    # The same interaction logged by two tenants (both sides are customers) counts once.
    _, first = np.unique(np.stack([lo.astype(np.int64), hi.astype(np.int64), codes]), axis=1, return_index=True)
    keep = first[np.argsort(decode_events(codes[first])[0], kind="stable")]  # by time
    ts, kind, direction = decode_events(codes[keep])

    companies = {cid: i for i, cid in enumerate(sorted({j["cid"] for j in jobs}))}
    return InteractionLog(
        pids=pids, lo=lo[keep], hi=hi[keep], ts=ts, kind=kind, direction=direction, tenant=tenant[keep],
        tenants=np.array(sorted(tenant_index, key=tenant_index.__getitem__), dtype=str),
        emp_person=np.searchsorted(pids, np.array([j["pid"] for j in jobs], dtype="S32")).astype(np.int32),
        emp_company=np.array([companies[j["cid"]] for j in jobs], dtype=np.int32),
        emp_from=np.array([j["from"] for j in jobs], dtype=np.int64),
        emp_to=np.array([j["to"] for j in jobs], dtype=np.int64),
        emp_level=np.array([_LEVEL.get(j["level"], -1) for j in jobs], dtype=np.int8),
        emp_function=np.array([_FUNCTION.get(j["function"], -1) for j in jobs], dtype=np.int8))

