"""Interaction logs cached on disk, so retraining or re-scoring on unchanged data does not read the
graph again: each is keyed by the log schema, the export scope and the reader's fingerprint of the
graph (which any ingest, erasure or opt-out changes). Only the newest log of each scope is kept: a
log of a graph that has since changed is never read again. Erasure empties the cache: logs hold
pseudonyms."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from graph.interaction_log import LOG_SCHEMA, ExportScope, InteractionLog
from graph.reader import GraphReader


def cached_interaction_log(reader: GraphReader, scope: ExportScope, cache_dir: Path | None) -> InteractionLog:
    """`reader.interaction_log(scope)`, from the cache under `cache_dir` when the graph has not changed."""
    if cache_dir is None:
        return reader.interaction_log(scope)
    scope_key = _digest({"schema": LOG_SCHEMA, "scope": scope.to_dict()})
    path = cache_dir / f"{LOG_SCHEMA}-{scope_key}-{_digest(reader.fingerprint())}.npz"
    if path.exists():
        return InteractionLog.load(path)
    log = reader.interaction_log(scope)
    path.parent.mkdir(parents=True, exist_ok=True)
    log.save(path)
    for stale in cache_dir.glob(f"{LOG_SCHEMA}-{scope_key}-*.npz"):  # the same scope of an earlier graph
        if stale != path:
            stale.unlink(missing_ok=True)
    return log


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:20]


def purge_export_cache(cache_dir: Path) -> int:
    """Delete every cached log under `cache_dir`; returns how many files went."""
    removed = 0
    for path in cache_dir.glob("*.npz") if cache_dir.is_dir() else ():
        path.unlink(missing_ok=True)
        removed += 1
    return removed
