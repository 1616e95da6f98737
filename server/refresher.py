"""Holds the current serving snapshot and keeps it fresh from Neo4j in a background thread:
incremental refreshes every few seconds, a full rebuild now and then. When Neo4j is unreachable
the last snapshot keeps serving and `store_reachable` says so; the loop survives any record and
any failure (it logs it, counts it in a metric and tries again at the next interval), and
`healthy` turns false once the snapshot is older than `max_snapshot_age_s`.

With a model registry, each refresh also checks which link model is promoted: a new promotion is
loaded (refused, with an error in the log, if its feature schema differs or it cannot score) and
every snapshot whose relationships or tenants' opt-outs changed is re-scored with it before it
serves, so a promotion needs no restart. A refresh that applied an erasure also empties the export
cache this server wrote, so no file keeps an erased person's pseudonym."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path

from gnn.interactions import purge_export_cache
from gnn.registry import ModelRegistry
from graph import strength as heuristic
from graph.operations import prune_erasure_tombstones
from graph.store import GraphStore
from relgraph.errors import NoModelError, StoreError
from server import snapshot as snapshots
from server.metrics import Metrics
from server.snapshot import Snapshot
from server.strengths import LINK_MODEL, ServedModel, load_promoted, with_model_strengths

log = logging.getLogger("relgraph.server")


class SnapshotHolder:
    def __init__(self, store: GraphStore, metrics: Metrics, *, refresh_interval_s: float,
                 full_rebuild_interval_s: float, max_snapshot_age_s: float = float("inf"),
                 erasure_retention_s: float | None = None, registry: ModelRegistry | None = None,
                 export_cache: Path | None = None) -> None:
        self._store = store
        self._registry = registry
        self._export_cache = export_cache
        self._served: ServedModel | None = None
        self._refused: str | None = None  # a promoted version already refused: logged once
        self._metrics = metrics
        self._refresh_interval_s = refresh_interval_s
        self._full_rebuild_interval_s = full_rebuild_interval_s
        self._max_snapshot_age_s = max_snapshot_age_s
        self._erasure_retention_s = erasure_retention_s
        self._lock = threading.Lock()  # serializes writers; readers just take the reference
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.store_reachable = True
        self.current: Snapshot = self._scored(snapshots.build(store))
        self._publish(self.current)

    def _publish(self, snap: Snapshot) -> None:
        self.current = snap
        self._metrics.snapshot_relationships.set(snap.relationships)
        if snap.rows_skipped:
            self._metrics.rows_skipped.inc(snap.rows_skipped)
            log.warning("snapshot: skipped %d row(s) that do not fit (out-of-range times or counts, unknown "
                        "tenants, malformed pids); see relgraph_snapshot_rows_skipped_total", snap.rows_skipped)

    def refresh(self, *, full: bool = False) -> Snapshot:
        """Refresh now (incrementally, or fully); returns the snapshot now serving. Never raises:
        a failure keeps the last snapshot serving, logged and counted."""
        with self._lock:
            previous = self.current
            try:
                if full and self._erasure_retention_s is not None:  # every server has applied older ones
                    prune_erasure_tombstones(self._store, self._erasure_retention_s)
                snap = snapshots.build(self._store) if full else snapshots.refresh(previous, self._store)
                snap = self._scored(snap)
            except StoreError as exc:
                if self.store_reachable:
                    log.warning("snapshot refresh failed, serving the last snapshot: %s", exc)
                self.store_reachable = False
                self._metrics.refresh_failures.inc()
                return previous
            except Exception:
                log.exception("snapshot refresh failed, serving the last snapshot")
                self._metrics.refresh_failures.inc()
                return previous
            self.store_reachable = True
            if snap.erasure_watermark_ms > previous.erasure_watermark_ms and self._export_cache is not None:
                purge_export_cache(self._export_cache)
            self._publish(snap)
            return snap

    @property
    def served_model(self) -> str | None:
        """The link model version whose strengths serve, or None for the heuristic."""
        return self._served.version if self._served is not None else None

    def _scored(self, snap: Snapshot) -> Snapshot:
        """`snap` with the promoted link model's strengths, re-scored only if the model, the
        relationships or the tenants' opt-outs changed; the heuristic if no model can serve."""
        if self._registry is None:
            return snap
        promoted = self._registry.promoted_name(LINK_MODEL)
        if promoted is None:
            self._served = None
        elif promoted != self.served_model and promoted != self._refused:
            try:
                self._served = load_promoted(self._registry)
                log.info("link model %s promoted: warm paths now rank by its strengths", promoted)
            except NoModelError as exc:  # the model serving so far (or the heuristic) serves on
                self._refused = promoted
                log.error("refusing link model %s, still serving %s: %s", promoted,
                          self.served_model or "the heuristic", exc)
        if self._served is not None:
            opted_out = ",".join(t for t, out in zip(snap.tenants.ids, snap.tenants.network_opt_out) if out)
            basis = f"{self._served.source} opted-out:{opted_out}"
            if snap.edge_strength is not None and snap.strength_basis == basis:
                return snap
            try:
                return replace(with_model_strengths(snap, self._served, self._store, self._export_cache),
                               strength_basis=basis)
            except StoreError:
                raise
            except Exception as exc:  # a model that cannot score must not freeze the snapshot
                log.error("link model %s cannot score, serving the heuristic: %s", self._served.version, exc)
                self._refused, self._served = self._served.version, None
        # The heuristic ranks; drop strengths a model left behind.
        return snap if snap.edge_strength is None else \
            replace(snap, edge_strength=None, strength_source=heuristic.NAME, strength_basis="")

    def age_seconds(self) -> float:
        age = self.current.age_seconds()
        self._metrics.snapshot_age.set(age)
        return age

    @property
    def healthy(self) -> bool:
        """Whether the snapshot is fresh enough to serve (younger than `max_snapshot_age_s`)."""
        return self.age_seconds() <= self._max_snapshot_age_s

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="snapshot-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        last_full = time.monotonic()
        while not self._stop.wait(self._refresh_interval_s):
            # Also rebuild fully after a long outage: erasure tombstones may have been pruned meanwhile.
            full = time.monotonic() - last_full >= self._full_rebuild_interval_s \
                or self.current.age_seconds() >= self._full_rebuild_interval_s
            before = self.current
            if self.refresh(full=full) is not before and full:  # a failed rebuild is tried again next time
                last_full = time.monotonic()
            self.age_seconds()
