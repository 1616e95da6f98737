"""Holds the current serving snapshot and keeps it fresh from Neo4j in a background thread:
incremental refreshes every few seconds, a full rebuild now and then. When Neo4j is unreachable
the last snapshot keeps serving and `store_reachable` says so.

With a model registry, each refresh also checks which link model is promoted: a new promotion is
loaded (refused, with an error in the log, if its feature schema differs) and every snapshot that
changed is re-scored with it before it serves, so a promotion needs no restart."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path

from gnn.registry import ModelRegistry
from graph import strength as heuristic
from graph.store import GraphStore
from relgraph.errors import NoModelError, StoreError
from server import snapshot as snapshots
from server.metrics import Metrics
from server.snapshot import Snapshot
from server.strengths import LINK_MODEL, ServedModel, load_promoted, with_model_strengths

log = logging.getLogger("relgraph.server")


class SnapshotHolder:
    def __init__(self, store: GraphStore, metrics: Metrics, *, refresh_interval_s: float,
                 full_rebuild_interval_s: float, registry: ModelRegistry | None = None,
                 export_cache: Path | None = None) -> None:
        self._store = store
        self._registry = registry
        self._export_cache = export_cache
        self._served: ServedModel | None = None
        self._refused: str | None = None  # a promoted version already refused: logged once
        self._metrics = metrics
        self._refresh_interval_s = refresh_interval_s
        self._full_rebuild_interval_s = full_rebuild_interval_s
        self._lock = threading.Lock()  # serializes writers; readers just take the reference
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.store_reachable = True
        self.current: Snapshot = self._scored(snapshots.build(store))
        self._publish(self.current)

    def _publish(self, snap: Snapshot) -> None:
        self.current = snap
        self._metrics.snapshot_relationships.set(snap.relationships)

    def refresh(self, *, full: bool = False) -> Snapshot:
        """Refresh now (incrementally, or fully); returns the snapshot now serving."""
        with self._lock:
            try:
                snap = snapshots.build(self._store) if full else snapshots.refresh(self.current, self._store)
                snap = self._scored(snap)
            except StoreError as exc:
                if self.store_reachable:
                    log.warning("snapshot refresh failed, serving the last snapshot: %s", exc)
                self.store_reachable = False
                return self.current
            self.store_reachable = True
            self._publish(snap)
            return snap

    @property
    def served_model(self) -> str | None:
        """The link model version whose strengths serve, or None for the heuristic."""
        return self._served.version if self._served is not None else None

    def _scored(self, snap: Snapshot) -> Snapshot:
        """`snap` with the promoted link model's strengths (re-scored only if it or the model changed)."""
        if self._registry is None:
            return snap
        promoted = self._registry.promoted_name(LINK_MODEL)
        if promoted is None:
            self._served = None
        elif promoted != self.served_model and promoted != self._refused:
            try:
                self._served = load_promoted(self._registry)
                log.info("link model %s promoted: warm paths now rank by its strengths", promoted)
            except NoModelError as exc:
                self._refused = promoted
                log.error("refusing link model %s, still serving %s: %s", promoted,
                          self.served_model or "the heuristic", exc)
        if self._served is None:  # the heuristic ranks; drop strengths a model left behind
            return snap if snap.edge_strength is None else \
                replace(snap, edge_strength=None, strength_source=heuristic.NAME)
        if snap.edge_strength is not None and snap.strength_source == self._served.source:
            return snap
        return with_model_strengths(snap, self._served, self._store, self._export_cache)

    def erase(self, pid: str) -> None:
        """Hide an erased person at once, before the next full rebuild drops them."""
        with self._lock:
            node = self.current.node(pid)
            if node is not None:
                self._publish(self.current.with_erased(node))

    def age_seconds(self) -> float:
        age = self.current.age_seconds()
        self._metrics.snapshot_age.set(age)
        return age

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
            full = time.monotonic() - last_full >= self._full_rebuild_interval_s
            self.refresh(full=full)
            if full:
                last_full = time.monotonic()
            self.age_seconds()
