"""The serving state: the CSR snapshot of the graph, every tenant's deals with what surrounds them
(server/deal_index.py) and the promoted link, deal and buyer models, as one immutable value that
every handler reads through one reference (`holder.current`), so an answer never mixes two
refreshes. One background loop refreshes it: the snapshot incrementally every `refresh_interval_s`
(fully every `full_rebuild_interval_s`, and after a long outage, when erasure tombstones may have
been pruned), the deals from what changed since (whole after an erasure or a change of a tenant's
identity sharing), and each model kind's promotion picked up (a version trained on another feature
schema, or one that cannot load, is refused and the previous one serves on). The link model's
strengths are recomputed whenever the relationships, the tenants' opt-outs or the model change, at
the serving clock's time: all of them at start-up, on a full rebuild and when the model or the
opt-outs change; in between, only the relationships whose interactions changed
(server/link_strengths.py).

The loop survives any record and any failure: it logs, counts (`relgraph_snapshot_refresh_failures_total`)
and tries again; while Neo4j is unreachable the last state serves and says so, and `healthy` turns
false once the snapshot is older than `max_snapshot_age_s`. A refresh that applied an erasure
empties this machine's export cache (training's interaction logs), so no file keeps an erased
person's pseudonym, wherever the erasure was made."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from core.clock import Clock
from core.errors import NoModelError, StoreError
from gnn.buyer_process import BuyerProcessModel
from gnn.deal_scoring import DealScorer
from gnn.link_model import LinkScorer
from gnn.model_kinds import BUYER, DEAL, LINK, MODEL_KINDS, ModelKind
from gnn.registry import ModelRegistry
from graph import strength_heuristic as heuristic
from graph.export_cache import purge_export_cache
from graph.reader import GraphReader
from server import snapshot as snapshots
from server.deal_answers import DealAnswers, answer_open_deals
from server.deal_index import DealIndex, read_deal_index, refresh_deal_index
from server.link_strengths import LinkScoring, rescore_changed, score_all, serving_scope
from server.metrics import Metrics
from server.snapshot import Snapshot
from server.strength_scale import StrengthScale, strength_scale

log = logging.getLogger("relgraph.server")
_Model = TypeVar("_Model")


@dataclass(frozen=True)
class ServingState:
    """Everything an answer is computed from, as of one refresh."""

    snapshot: Snapshot
    deals: DealIndex
    models: dict[str, Any] = field(default_factory=dict)  # kind name -> the loaded promoted version
    why_not: dict[str, str] = field(default_factory=dict)  # kind name -> why none serves
    store_reachable: bool = True
    scale: StrengthScale = field(default_factory=StrengthScale)  # the snapshot's strengths as 0-100 scores
    answers: DealAnswers = field(default_factory=DealAnswers)  # every open deal's estimate and signals

    def model(self, kind: ModelKind[_Model]) -> _Model:
        """The serving model of `kind`; NoModelError (FAILED_PRECONDITION) saying why there is none."""
        loaded = self.models.get(kind.name)
        if loaded is None:
            raise NoModelError(self.why_not.get(kind.name, f"no {kind.name} model promoted"))
        served: _Model = loaded
        return served

    @property
    def link(self) -> LinkScorer | None:
        scorer: LinkScorer | None = self.models.get(LINK.name)
        return scorer

    @property
    def deal(self) -> DealScorer:
        return self.model(DEAL)

    @property
    def buyer(self) -> BuyerProcessModel:
        return self.model(BUYER)


def _read_deals_whole(before: Snapshot, after: Snapshot, changes: snapshots.Changes) -> bool:
    """Whether the deal index is read whole rather than refreshed: people may be shown differently
    everywhere (an erasure was applied, or a tenant changed whether it shares identities), or someone
    joined or left a tenant (which side of a logged interaction they are on changes)."""

    def sharing(snap: Snapshot) -> set[str]:
        return {t for t, shares in zip(snap.tenants.ids, snap.tenants.share_identities) if shares}

    def tenants_of(snap: Snapshot, pid: str) -> set[str]:
        node = snap.node(pid)
        return set() if node is None else {snap.tenants.ids[t] for t in snap.memberships(node).tolist()}

    return (
        after.erasure_watermark_ms > before.erasure_watermark_ms
        or sharing(after) != sharing(before)
        or any(tenants_of(before, c.pid) != tenants_of(after, c.pid) for c in changes.people)
    )


class ServingStateHolder:
    def __init__(
        self,
        reader: GraphReader,
        clock: Clock,
        metrics: Metrics,
        registry: ModelRegistry,
        *,
        refresh_interval_s: float,
        full_rebuild_interval_s: float,
        max_snapshot_age_s: float = float("inf"),
        export_cache: Path | None = None,
        prune_tombstones: Callable[[], object] | None = None,
    ) -> None:
        self._reader = reader
        self._clock = clock
        self._registry = registry
        self._export_cache = export_cache
        self._prune_tombstones = prune_tombstones  # a full rebuild prunes erasure tombstones every server applied
        self._refused: dict[str, str] = {}  # kind -> the promoted version refused (logged once)
        self._metrics = metrics
        self._refresh_interval_s = refresh_interval_s
        self._full_rebuild_interval_s = full_rebuild_interval_s
        self._max_snapshot_age_s = max_snapshot_age_s
        self._lock = threading.Lock()  # serializes refreshes; readers just take the reference
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._scaled: tuple[tuple[object, ...], StrengthScale] | None = None  # (what it was computed from, the scale)
        self._link_scoring: LinkScoring | None = None  # what refreshes re-score the changed relationships from
        snap = snapshots.build(reader)
        self.current = self._next(ServingState(snap, read_deal_index(reader)))
        self._publish(self.current)

    # -- refreshing ---------------------------------------------------------------------------------

    def refresh(self, *, full: bool = False) -> ServingState:
        """Refresh now (incrementally, or fully); returns the state now serving. Never raises: a
        failure keeps the last state serving, logged and counted."""
        with self._lock:
            previous = self.current
            try:
                if full and self._prune_tombstones is not None:
                    self._prune_tombstones()
                if full:
                    snap = snapshots.build(self._reader)
                    deals = read_deal_index(self._reader)
                else:  # the snapshot and the deal index follow the same changes
                    changes = snapshots.read_changes(previous.snapshot, self._reader)
                    snap = snapshots.refresh(previous.snapshot, self._reader, changes)
                    deals = (
                        read_deal_index(self._reader)
                        if _read_deals_whole(previous.snapshot, snap, changes)
                        else refresh_deal_index(previous.deals, self._reader, changes, snap)
                    )
                state = self._next(
                    replace(previous, snapshot=snap, deals=deals, store_reachable=True),
                    None if full else (previous.snapshot, changes),
                )
            except StoreError as exc:
                if previous.store_reachable:
                    log.warning("refresh failed, serving the last state: %s", exc)
                self._metrics.refresh_failures.inc()
                self.current = replace(previous, store_reachable=False)
                return self.current
            except Exception:
                log.exception("refresh failed, serving the last state")
                self._metrics.refresh_failures.inc()
                return previous
            if snap.erasure_watermark_ms > previous.snapshot.erasure_watermark_ms and self._export_cache is not None:
                purge_export_cache(self._export_cache)
            self._publish(state)
            return state

    def _next(self, state: ServingState, refreshed: tuple[Snapshot, snapshots.Changes] | None = None) -> ServingState:
        """`state` with every model kind's promoted version picked up, the link strengths applied and
        the open deals' answers brought up to date; `refreshed`: the snapshot its snapshot was
        refreshed from and the changes applied (None: built whole)."""
        models, why_not = dict(state.models), dict(state.why_not)
        for kind in MODEL_KINDS.values():
            self._pick_up(kind, models, why_not)
        snap = self._scored(state.snapshot, models.get(LINK.name), refreshed)
        # The scale follows the strengths and their tenants, so it is rebuilt when those arrays change (a
        # refresh that changed nothing keeps them; between changes, recency moves every percentile alike).
        basis = (snap.edge_tenant, snap.edge_count, snap.edge_last_ts, snap.edge_strength)
        if self._scaled is None or any(a is not b for a, b in zip(basis, self._scaled[0])):
            self._scaled = (basis, strength_scale(snap, self._clock.now()))
        answers = answer_open_deals(state.answers, state.deals, models.get(DEAL.name), self._clock.now())
        return replace(state, snapshot=snap, models=models, why_not=why_not, scale=self._scaled[1], answers=answers)

    def _pick_up(self, kind: ModelKind[Any], models: dict[str, Any], why_not: dict[str, str]) -> None:
        promoted = self._registry.promoted_name(kind.name)
        current = models.get(kind.name)
        if promoted is None:
            models.pop(kind.name, None)
            why_not[kind.name] = (
                f"no {kind.name} model promoted (run `relgraph models promote VERSION --model {kind.name}`)"
            )
            return
        if (current is not None and current.version == promoted) or self._refused.get(kind.name) == promoted:
            return
        try:
            models[kind.name] = kind.load_promoted(self._registry)
            why_not.pop(kind.name, None)
            log.info("%s model %s promoted: now serving", kind.name, promoted)
        except Exception as exc:  # refused: a version that cannot serve never replaces one that can
            self._refused[kind.name] = promoted
            serving = f"{kind.name} model {current.version}" if current is not None else "nothing"
            log.error("refusing %s model %s, still serving %s: %s", kind.name, promoted, serving, exc)
            if current is None:
                why_not[kind.name] = (
                    str(exc)
                    if isinstance(exc, NoModelError)
                    else f"{kind.name} model {promoted} cannot be loaded; see the server log"
                )

    def _scored(
        self, snap: Snapshot, scorer: LinkScorer | None, refreshed: tuple[Snapshot, snapshots.Changes] | None
    ) -> Snapshot:
        """`snap` with the link model's strengths, recomputed only when the model, the relationships or
        the tenants' opt-outs changed (a rebuilt or refreshed snapshot holds none yet): after a
        refresh, only the changed relationships, scored from what the last whole scoring kept; all
        of them after a full build, an erasure (the kept log holds the erased person's pseudonym), a
        newcomer the kept log lacks, or another model or opt-out. Without a model, the heuristic's
        (no stored strengths)."""
        if scorer is None:
            self._link_scoring = None
            return (
                snap
                if snap.edge_strength is None
                else replace(snap, edge_strength=None, strength_source=heuristic.NAME, strength_basis="")
            )
        opted_out = ",".join(t for t, out in zip(snap.tenants.ids, snap.tenants.network_opt_out) if out)
        basis = f"{scorer.source} opted-out:{opted_out}"
        if snap.edge_strength is not None and snap.strength_basis == basis:
            return snap
        as_of = self._clock.now()
        kept = self._link_scoring
        if refreshed is not None and kept is not None and kept.basis == basis:
            previous, changes = refreshed
            if previous.strength_basis == basis and not changes.erasures:
                try:
                    rescored = rescore_changed(previous, snap, scorer, kept, self._reader, changes.knows, as_of)
                except StoreError:
                    raise
                except Exception:  # whatever a record holds, a whole scoring still serves the change
                    log.exception("re-scoring the changed relationships failed; scoring them all")
                    rescored = None
                if rescored is not None:
                    snap, self._link_scoring = rescored
                    return snap
        self._link_scoring = None  # the kept log may hold an erased pseudonym: never past a whole scoring
        interactions = self._reader.interaction_log(serving_scope(as_of))
        snap, self._link_scoring = score_all(snap, scorer, interactions, as_of, basis)
        return snap

    def _publish(self, state: ServingState) -> None:
        self.current = state
        snap = state.snapshot
        self._metrics.snapshot_relationships.set(snap.relationships)
        if snap.rows_skipped:
            self._metrics.rows_skipped.inc(snap.rows_skipped)
            log.warning(
                "snapshot: skipped %d row(s) that do not fit (out-of-range times or counts, unknown "
                "tenants, malformed pids); see relgraph_snapshot_rows_skipped_total",
                snap.rows_skipped,
            )

    # -- health and the loop ------------------------------------------------------------------------

    def age_seconds(self) -> float:
        age = self.current.snapshot.age_seconds()
        self._metrics.snapshot_age.set(age)
        return age

    @property
    def healthy(self) -> bool:
        """Whether the snapshot is fresh enough to serve (younger than `max_snapshot_age_s`)."""
        return self.age_seconds() <= self._max_snapshot_age_s

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="serving-state-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        last_full = time.monotonic()
        while not self._stop.wait(self._refresh_interval_s):
            # Also rebuild fully after a long outage: erasure tombstones may have been pruned meanwhile.
            full = (
                time.monotonic() - last_full >= self._full_rebuild_interval_s
                or self.current.snapshot.age_seconds() >= self._full_rebuild_interval_s
            )
            before = self.current
            if self.refresh(full=full).snapshot is not before.snapshot and full:  # a failed rebuild is tried again
                last_full = time.monotonic()
            self.age_seconds()
