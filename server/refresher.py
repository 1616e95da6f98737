"""Holds the current serving snapshot and keeps it fresh from Neo4j in a background thread:
incremental refreshes every few seconds, a full rebuild now and then. When Neo4j is unreachable
the last snapshot keeps serving and `store_reachable` says so."""

from __future__ import annotations

import logging
import threading
import time

from graph.store import GraphStore
from relgraph.errors import StoreError
from server import snapshot as snapshots
from server.metrics import Metrics
from server.snapshot import Snapshot

log = logging.getLogger("relgraph.server")


class SnapshotHolder:
    def __init__(self, store: GraphStore, metrics: Metrics, *, refresh_interval_s: float,
                 full_rebuild_interval_s: float) -> None:
        self._store = store
        self._metrics = metrics
        self._refresh_interval_s = refresh_interval_s
        self._full_rebuild_interval_s = full_rebuild_interval_s
        self._lock = threading.Lock()  # serializes writers; readers just take the reference
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.store_reachable = True
        self.current: Snapshot = snapshots.build(store)
        self._publish(self.current)

    def _publish(self, snap: Snapshot) -> None:
        self.current = snap
        self._metrics.snapshot_relationships.set(snap.relationships)

    def refresh(self, *, full: bool = False) -> Snapshot:
        """Refresh now (incrementally, or fully); returns the snapshot now serving."""
        with self._lock:
            try:
                snap = snapshots.build(self._store) if full else snapshots.refresh(self.current, self._store)
            except StoreError as exc:
                if self.store_reachable:
                    log.warning("snapshot refresh failed, serving the last snapshot: %s", exc)
                self.store_reachable = False
                return self.current
            self.store_reachable = True
            self._publish(snap)
            return snap

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
