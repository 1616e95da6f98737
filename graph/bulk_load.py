"""Bulk initial load: an ingest's validated rows, aggregated in memory into the graph that the
transactional writers (graph/writes.py) would leave in an empty database, written as CSV files and
loaded by `neo4j-admin database import full`, which writes the store files directly instead of
going through transactions.

The importer replaces the whole database and needs it stopped, so this path is only for the
managed Neo4j and only into an empty database; `bulk_ingest` refuses anything else before it
touches the store. The same validation and pseudonymization run as on the transactional path
(graph/ingest.py's first pass); the equality of the two graphs is tested."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import operator
import sys
import tempfile
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from sys import intern
from typing import Any

import numpy as np
from tqdm import tqdm

from core.config import Config
from core.errors import ConfigError, ProvisionError
from core.vocabulary import INTERACTION_KINDS, KINDS
from graph.events import TWO_WAY_CODES
from graph.ingest import IngestSummary, ValidatedRun, input_files, validated
from graph.neo4j_server import ManagedNeo4j
from graph.pseudonymize import Pseudonymizer
from graph.schema import migrate
from graph.store import GraphStore, Query, connect

_KIND_CODE = {kind: i for i, kind in enumerate(INTERACTION_KINDS)}
_MEMBER_PROPS = operator.itemgetter("role", "team", "level", "function")
_KNOWS_BLOCK = 1 << 16  # pairs formatted at a time: the event log's strings never all exist at once

# Anything but schema bookkeeping makes a database non-empty: the import would replace it.
_HAS_DATA = Query("bulk.has_data", "RETURN EXISTS { MATCH (n) WHERE NOT n:SchemaMigration } AS any")
# The importer stores no empty arrays (an empty field is no property), Cypher does: a deal without
# stage changes has `stage_names = []` either way.
_EMPTY_STAGE_LISTS = Query(
    "bulk.empty_stage_lists",
    "MATCH (d:Deal) WHERE d.outcome IS NOT NULL AND d.stage_names IS NULL SET d.stage_names = [], d.stage_ts = []",
)


class _Activity:
    """An activity as the transactional writers leave it: the first record of an id creates it
    (labels and properties: kind, ts, topic, value); later records add deals and recipients only
    with the same author. Lists, not sets (hundreds of thousands of activities): deduplicated
    when written."""

    __slots__ = ("author", "deals", "label", "props", "recipients")

    def __init__(self, label: str, props: tuple[Any, ...]) -> None:
        self.label = label
        self.props = props
        self.author: str | None = None
        self.deals: list[str] = []
        self.recipients: list[str] = []

    def accepts(self, author: str) -> bool:
        """Whether a record by `author` adds to this activity (an id names one event)."""
        if self.author is None:
            self.author = author
        return self.author == author


@dataclass
class GraphBuilder:
    """The nodes and relationships of a set of validated rows, added kind by kind in the order of
    KINDS: merged records' last version stands, a company keeps its last non-empty industry and
    size band, a deal's company and owner are its last record's, each pair's KNOWS holds its
    distinct event codes. `now_ms` stands for Cypher's timestamp() in every `updated_at`."""

    now_ms: int
    tenants: set[str] = field(default_factory=set)
    persons: dict[str, int] = field(default_factory=dict)  # pid -> index, in first-seen order
    companies: dict[str, dict[str, str]] = field(default_factory=dict)
    # Millions of rows at scale: kept as tuples of interned strings (role, team, level, function)
    # and (to, level, function), a fifth of the rows' own size.
    members: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    employment: dict[tuple[str, str, str, int], tuple[Any, ...]] = field(default_factory=dict)
    deals: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # stubs hold {}
    deals_touched: set[tuple[str, str]] = field(default_factory=set)  # those with an updated_at
    contacts: dict[tuple[str, str, str], str] = field(default_factory=dict)
    activities: dict[tuple[str, str], _Activity] = field(default_factory=dict)
    # One entry per (interaction, recipient): the KNOWS event log before aggregation.
    _tenant_ids: dict[str, int] = field(default_factory=dict)
    _pair_tenant: array[int] = field(default_factory=lambda: array("i"))
    _pair_lo: array[int] = field(default_factory=lambda: array("i"))
    _pair_hi: array[int] = field(default_factory=lambda: array("i"))
    _pair_code: array[int] = field(default_factory=lambda: array("q"))
    events_logged: int = 0  # distinct event codes over all KNOWS, known once `knows` has run

    def add(self, kind: str, rows: Iterable[dict[str, Any]]) -> None:
        adder = getattr(self, f"_add_{kind}")
        for row in rows:
            adder(row)

    def _person(self, pid: str) -> int:
        index = self.persons.get(pid)
        if index is None:
            index = self.persons[intern(pid)] = len(self.persons)
        return index

    def _company(self, cid: str) -> dict[str, str]:
        return self.companies.setdefault(cid, {})

    def _deal(self, tenant: str, deal_id: str, *, touched: bool) -> dict[str, Any]:
        key = (tenant, deal_id)
        if touched:
            self.deals_touched.add(key)
        return self.deals.setdefault(key, {})

    def _add_member(self, r: dict[str, Any]) -> None:
        self.tenants.add(r["tenant"])
        self._person(r["pid"])
        self.members[(intern(r["tenant"]), intern(r["pid"]))] = tuple(map(intern, _MEMBER_PROPS(r)))

    def _add_employment(self, r: dict[str, Any]) -> None:
        self._person(r["pid"])
        company = self._company(r["cid"])
        for prop in ("industry", "size_band"):
            if r[prop]:
                company[prop] = r[prop]
        key = (intern(r["tenant"]), intern(r["pid"]), intern(r["cid"]), r["from"])
        self.employment[key] = (r["to"], intern(r["level"]), intern(r["function"]))

    def _add_deal(self, r: dict[str, Any]) -> None:
        self._company(r["cid"])
        self._person(r["owner"])
        deal = self._deal(r["tenant"], r["deal_id"], touched=True)
        deal.clear()
        deal.update(r)

    def _add_deal_contact(self, r: dict[str, Any]) -> None:
        self._deal(r["tenant"], r["deal_id"], touched=True)
        self._person(r["pid"])
        self.contacts[(r["tenant"], r["deal_id"], r["pid"])] = r["role"]

    def _add_interaction(self, r: dict[str, Any]) -> None:
        tenant, sender = r["tenant"], r["from"]
        tenant_index = self._tenant_ids.setdefault(tenant, len(self._tenant_ids))
        sender_index = self._person(sender)
        base = r["ts"] * 8 + _KIND_CODE[r["kind"]] * 2
        for to in r["to"]:
            to_index = self._person(to)
            from_lo = sender < to
            self._pair_tenant.append(tenant_index)
            self._pair_lo.append(sender_index if from_lo else to_index)
            self._pair_hi.append(to_index if from_lo else sender_index)
            self._pair_code.append(base if from_lo else base + 1)
        if r["deal"]:
            activity = self._activity(tenant, r["id"], "Interaction", (intern(r["kind"]), r["ts"], None, None))
            if activity.accepts(intern(sender)):
                activity.deals.append(r["deal"])
                activity.recipients.extend(map(intern, r["to"]))
                self._deal(tenant, r["deal"], touched=False)  # its rows are marked instead (ON, WITH)

    def _add_signal(self, r: dict[str, Any]) -> None:
        tenant = r["tenant"]
        self._person(r["pid"])
        if r["deal"]:
            self._deal(tenant, r["deal"], touched=False)
        props = (intern(r["kind"]), r["ts"], intern(r["topic"]), intern(r["value"]))
        activity = self._activity(tenant, r["id"], "Signal", props)
        if activity.accepts(intern(r["pid"])) and r["deal"]:
            activity.deals.append(r["deal"])
            self._deal(tenant, r["deal"], touched=True)

    def _activity(self, tenant: str, activity_id: str, label: str, props: tuple[Any, ...]) -> _Activity:
        key = (intern(tenant), activity_id)
        activity = self.activities.get(key)
        if activity is None:
            activity = self.activities[key] = _Activity(label, props)
        return activity

    # -- KNOWS --------------------------------------------------------------------------------

    def knows(self) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
        """(tenant, lo pid, hi pid, properties) of each pair's KNOWS, as graph/writes.py's KNOWS
        statement computes them, vectorized over the whole log; the event log comes joined by ';',
        as the import file holds it."""
        if not self._pair_code:
            return
        tenant = np.frombuffer(self._pair_tenant, dtype=np.int32)
        lo = np.frombuffer(self._pair_lo, dtype=np.int32)
        hi = np.frombuffer(self._pair_hi, dtype=np.int32)
        code = np.frombuffer(self._pair_code, dtype=np.int64)
        order = np.lexsort((code, hi, lo, tenant))
        tenant, lo, hi, code = tenant[order], lo[order], hi[order], code[order]
        same_pair = np.zeros(code.shape[0], dtype=bool)
        same_pair[1:] = (tenant[1:] == tenant[:-1]) & (lo[1:] == lo[:-1]) & (hi[1:] == hi[:-1])
        distinct = np.ones(code.shape[0], dtype=bool)
        distinct[1:] = ~same_pair[1:] | (code[1:] != code[:-1])
        tenant, lo, hi, code, same_pair = (
            tenant[distinct],
            lo[distinct],
            hi[distinct],
            code[distinct],
            same_pair[distinct],
        )
        self.events_logged = int(code.shape[0])
        starts = np.flatnonzero(~same_pair)
        ends = np.append(starts[1:], code.shape[0])
        both_ways = np.isin((code >> 1) & 3, TWO_WAY_CODES)
        fwd = np.add.reduceat(((code & 1) == 0) | both_ways, starts)
        rev = np.add.reduceat(((code & 1) == 1) | both_ways, starts)
        pids = list(self.persons)
        tenants = list(self._tenant_ids)
        for block in range(0, starts.shape[0], _KNOWS_BLOCK):
            group = slice(block, block + _KNOWS_BLOCK)
            first, end = int(starts[group][0]), int(ends[group][-1])
            codes = list(map(str, code[first:end].tolist()))  # this block's events only
            columns = zip(
                tenant[starts[group]].tolist(), lo[starts[group]].tolist(), hi[starts[group]].tolist(),
                (starts[group] - first).tolist(), (ends[group] - first).tolist(), fwd[group].tolist(),
                rev[group].tolist(), (code[starts[group]] >> 3).tolist(), (code[ends[group] - 1] >> 3).tolist(),
                strict=True,
            )  # fmt: skip
            for t, lo_index, hi_index, start, stop, forward, reverse, first_ts, last_ts in columns:
                yield (
                    tenants[t],
                    pids[lo_index],
                    pids[hi_index],
                    {
                        "events": ";".join(codes[start:stop]),
                        "count": stop - start,
                        "fwd": forward,
                        "rev": reverse,
                        "two_way": min(forward, reverse),
                        "first_ts": first_ts,
                        "last_ts": last_ts,
                    },
                )

    @property
    def interaction_entries(self) -> int:
        return len(self._pair_code)


# -- CSV --------------------------------------------------------------------------------------


def _field(value: Any) -> str:
    """One CSV field as the importer reads it: strings quoted (an empty string stays a string),
    None empty (no property), arrays joined by ';' (their items are codes, ids and numbers).
    Called for every field of millions of rows: the common types are tested first, exactly."""
    kind = type(value)
    if kind is str:
        return f'"{value}"' if '"' not in value else '"' + value.replace('"', '""') + '"'
    if kind is int:
        return str(value)
    if value is None:
        return ""
    if kind is list:
        items = [str(v) for v in value]
        if any(";" in item or '"' in item for item in items):
            raise ValueError(f"an array item cannot hold ';' or '\"': {items!r}")
        return '"' + ";".join(items) + '"' if items else ""
    return repr(value)


@dataclass
class ImportFiles:
    """The CSV files of one import, as neo4j-admin's `--nodes`/`--relationships` arguments."""

    directory: Path
    progress: tqdm | None = None  # counts the rows written
    nodes: list[str] = field(default_factory=list)
    relationships: list[str] = field(default_factory=list)
    node_count: int = 0
    relationship_count: int = 0

    def write(self, what: str, name: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Write `rows` under `header` to `name`.csv as a node label's (`what` "nodes") or a
        relationship type's file."""
        path = self.directory / f"{name.lower()}.csv"
        count = 0
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(",".join(header) + "\n")
            for row in rows:
                fh.write(",".join(map(_field, row)) + "\n")
                count += 1
                if self.progress is not None and count % 10_000 == 0:
                    self.progress.update(10_000)
        if self.progress is not None:
            self.progress.update(count % 10_000)
        if what == "nodes":
            self.nodes.append(f"{name}={path}")
            self.node_count += count
        else:
            self.relationships.append(f"{name}={path}")
            self.relationship_count += count


def _deal_id(tenant: str, deal_id: str) -> str:
    return f"{tenant}/{deal_id}"  # tenant ids hold no '/'; it joins the two parts of the key


def write_import_files(graph: GraphBuilder, directory: Path, progress: tqdm | None = None) -> ImportFiles:
    """The import CSVs of `graph`: one file per label and relationship type, typed headers."""
    files = ImportFiles(directory, progress)
    now = graph.now_ms
    files.write("nodes", "Tenant", ["tenant_id:ID(Tenant)"], ((t,) for t in sorted(graph.tenants)))
    files.write("nodes", "Person", ["pid:ID(Person)", "updated_at:long"], ((pid, now) for pid in graph.persons))
    files.write(
        "nodes",
        "Company",
        ["cid:ID(Company)", "industry", "size_band"],
        ((cid, c.get("industry"), c.get("size_band")) for cid, c in graph.companies.items()),
    )
    deal_header = [
        *(":ID(Deal)", "tenant_id", "deal_id", "amount:double", "created:long", "product"),
        *("stage_names:string[]", "stage_ts:long[]", "crm_stage", "closed:long", "outcome", "close_date:long"),
        "updated_at:long",
    ]
    files.write(
        "nodes",
        "Deal",
        deal_header,
        (
            (_deal_id(*key), *key, *(d.get(p) for p in _DEAL_PROPS), now if key in graph.deals_touched else None)
            for key, d in graph.deals.items()
        ),
    )
    files.write(
        "nodes",
        "Activity",
        [":ID(Activity)", ":LABEL", "tenant_id", "activity_id", "kind", "ts:long", "topic", "value"],
        ((f"{t}/{aid}", f"Activity;{a.label}", t, aid, *a.props) for (t, aid), a in graph.activities.items()),
    )
    files.write(
        "relationships",
        "MEMBER_OF",
        [":START_ID(Person)", ":END_ID(Tenant)", "tenant_id", "role", "team", "title_level", "function"],
        ((pid, t, t, *props) for (t, pid), props in graph.members.items()),
    )
    files.write(
        "relationships",
        "WORKED_AT",
        [":START_ID(Person)", ":END_ID(Company)", "tenant_id", "from:long", "to:long", "title_level", "function"],
        ((pid, cid, t, from_, *props) for (t, pid, cid, from_), props in graph.employment.items()),
    )
    records = [(key, d) for key, d in graph.deals.items() if "cid" in d]
    files.write(
        "relationships",
        "FOR",
        [":START_ID(Deal)", ":END_ID(Company)", "tenant_id"],
        ((_deal_id(*key), d["cid"], key[0]) for key, d in records),
    )
    files.write(
        "relationships",
        "OWNS",
        [":START_ID(Person)", ":END_ID(Deal)", "tenant_id"],
        ((d["owner"], _deal_id(*key), key[0]) for key, d in records),
    )
    files.write(
        "relationships",
        "ON_DEAL",
        [":START_ID(Person)", ":END_ID(Deal)", "tenant_id", "role"],
        ((pid, _deal_id(t, deal), t, role) for (t, deal, pid), role in graph.contacts.items()),
    )
    files.write(
        "relationships",
        "KNOWS",
        [":START_ID(Person)", ":END_ID(Person)", "tenant_id", "events:long[]"]
        + [f"{p}:long" for p in ("count", "fwd", "rev", "two_way", "first_ts", "last_ts", "updated_at")],
        (
            (lo, hi, t, k["events"], k["count"], k["fwd"], k["rev"], k["two_way"], k["first_ts"], k["last_ts"], now)
            for t, lo, hi, k in graph.knows()
        ),
    )
    activities = graph.activities.items()
    files.write(
        "relationships",
        "BY",
        [":START_ID(Activity)", ":END_ID(Person)", "tenant_id"],
        ((f"{t}/{aid}", a.author, t) for (t, aid), a in activities),
    )
    files.write(
        "relationships",
        "ON",
        [":START_ID(Activity)", ":END_ID(Deal)", "tenant_id", "updated_at:long"],
        (
            (f"{t}/{aid}", _deal_id(t, deal), t, now if a.label == "Interaction" else None)
            for (t, aid), a in activities
            for deal in sorted(set(a.deals))
        ),
    )
    files.write(
        "relationships",
        "WITH",
        [":START_ID(Activity)", ":END_ID(Person)", "tenant_id", "updated_at:long"],
        ((f"{t}/{aid}", pid, t, now) for (t, aid), a in activities for pid in sorted(set(a.recipients))),
    )
    return files


_DEAL_PROPS = (
    "amount",
    "created",
    "product",
    "stage_names",
    "stage_ts",
    "crm_stage",
    "closed",
    "outcome",
    "close_date",
)


# -- the load ---------------------------------------------------------------------------------


def _refuse_unmanaged(config: Config) -> None:
    if not config.uses_managed_neo4j:
        raise ConfigError(
            f"--initial loads only the Neo4j that relgraph manages (it stops the database and writes its "
            f"store files), and NEO4J_URI={config.neo4j.uri} is another server: ingest without --initial, or "
            "bulk-load that server with its own `neo4j-admin database import full`"
        )


def holds_data(store: GraphStore) -> bool:
    """Whether the database holds anything an import would destroy."""
    return bool(store.read(_HAS_DATA)[0]["any"])


def prefers_initial(config: Config, store: GraphStore, paths: Iterable[str | Path]) -> bool:
    """Whether an ingest without --initial/--no-initial should load in bulk: into the empty managed
    database, an input of at least `ingest.initial_auto_mb` (below that, the importer's fixed
    cost of stopping and starting the database outweighs what it saves)."""
    if not config.uses_managed_neo4j or holds_data(store):
        return False
    size = sum(path.stat().st_size for path in input_files(paths))
    return size >= config.ingest.initial_auto_mb * 1e6


def bulk_ingest(
    config: Config,
    paths: Iterable[str | Path],
    pseudo: Pseudonymizer,
    *,
    strict: bool = True,
    progress: bool | None = None,
) -> IngestSummary:
    """Load `paths` into the empty managed database with neo4j-admin import; the summary has the
    transactional path's keys, `mode` "initial" and each phase's seconds. Refused, before anything
    is touched, for a Neo4j that relgraph does not manage or a database that holds data."""
    _refuse_unmanaged(config)
    show = sys.stderr.isatty() if progress is None else progress
    skipped: list[str] = []
    files = input_files(paths, skipped)  # a missing path is refused before anything else
    server = ManagedNeo4j(config)
    server.start()
    with connect(config) as store:
        if holds_data(store):
            raise ConfigError(
                "--initial needs an empty database (the import replaces it), and this one holds data: "
                "ingest without --initial to add to it"
            )
    server.begin_stop()  # the import needs the empty database stopped: it shuts down while the input is read
    handed_over = False  # to the import, which starts the database again, whatever happens
    try:
        with (
            validated(files, pseudo, strict=strict, chunk=config.ingest.batch_size, show=show) as run,
            tempfile.TemporaryDirectory(prefix="relgraph-import-") as tmp,
        ):
            run.summary.mode = "initial"
            run.summary.skipped = skipped
            if run.summary.accepted:
                import_files = _write_import_files(run, Path(tmp), show)
                _release_memory()  # the aggregated graph is gone: its memory goes back before the importer's
                if show:
                    print("import: neo4j-admin database import full", file=sys.stderr)
                handed_over = True
                run.summary.phase_seconds |= server.import_database(
                    import_files.nodes, import_files.relationships, Path(tmp)
                )
                with run.phase("migrate"), connect(config) as store:
                    migrate(store)
                    store.write(_EMPTY_STAGE_LISTS)
    finally:
        if not handed_over:
            server.stop()
            server.start()
    return run.finish()


def _release_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc only: elsewhere the memory stays with Python
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextmanager
def _without_gc() -> Iterator[None]:
    """Aggregation allocates millions of objects and frees none of them, which only makes the
    cyclic garbage collector run again and again for nothing."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _write_import_files(run: ValidatedRun, directory: Path, show: bool) -> ImportFiles:
    """Aggregate the spooled rows into the graph and write its import files; the summary gets
    what the load will create."""
    summary = run.summary
    graph = GraphBuilder(now_ms=int(time.time() * 1000))
    graph.tenants |= run.tenants
    with (
        run.phase("aggregate"),
        tqdm(total=summary.accepted, desc="aggregate", unit=" rec", disable=not show, file=sys.stderr) as bar,
        _without_gc(),
    ):
        for kind in KINDS:  # the transactional path's order: entities before the events that reference them
            for chunk in run.spool.chunks(kind):
                graph.add(kind, chunk)
                bar.update(len(chunk))
    bar = tqdm(desc="csv", unit=" row", disable=not show, file=sys.stderr)
    with run.phase("csv"), bar, _without_gc():
        try:
            files = write_import_files(graph, directory, bar)
        except OSError as exc:  # e.g. a full disk
            raise ProvisionError(
                f"writing the import files under {directory} failed: {exc.strerror or exc}; the database was not "
                "touched: free space there (TMPDIR chooses where) and run the same command again"
            ) from exc
    summary.nodes_created = files.node_count
    summary.relationships_created = files.relationship_count
    signals = sum(1 for a in graph.activities.values() if a.label == "Signal")
    summary.events_added = graph.events_logged + signals
    summary.events_already_present = (
        graph.interaction_entries - graph.events_logged + summary.accepted_by_kind.get("signal", 0) - signals
    )
    return files
