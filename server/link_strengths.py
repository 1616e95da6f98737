"""Relationship strengths from the promoted link model, for the serving snapshot.

Every relationship of the snapshot is scored at the serving clock's time: node embeddings from the
network graph (pseudonymous structure, tenants that opted out left out), pair evidence from the
relationship's own tenant's interactions only, so one tenant's strengths never carry another
tenant's raw counts. The interactions are the read seam's interaction log up to that time.

A whole scoring (`score_all`: at start-up, on every full rebuild, and whenever the model or the
tenants' opt-outs change) reads the whole log and computes the embeddings; a refresh in between
(`rescore_changed`) reads only the interactions of the pairs whose relationships changed, puts them
into the log it keeps, and scores only those pairs' relationships, with the embeddings of the last
whole scoring. Until the next one, other relationships keep their strengths, though their
neighbours' changes would move their structural features a little: the same trade as the embeddings."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from core.arrays import positions
from gnn.features import graph_at
from gnn.link_model import LinkScorer
from graph.interaction_log import ExportScope, InteractionLog, with_pairs_replaced
from graph.reader import ALL_TENANTS, GraphReader, KnowsRow
from server.snapshot import Snapshot, edge_endpoints, valid_pid


@dataclass(frozen=True, eq=False)
class LinkScoring:
    """What the last whole scoring read and computed, kept for the refreshes until the next one."""

    basis: str  # the model and the opted-out tenants the strengths were computed for
    log: InteractionLog  # every tenant's interactions before the scoring time, kept current by refreshes
    embeddings: torch.Tensor  # the network's node embeddings, one row per person of `log`


def serving_scope(as_of: int) -> ExportScope:
    """The interactions strengths are scored from: every tenant's (opted-out tenants' too, for their
    own relationships) before `as_of`."""
    return ExportScope(tenants=ALL_TENANTS, end=as_of, with_opted_out=True)


def score_all(
    snap: Snapshot, scorer: LinkScorer, log: InteractionLog, as_of: int, basis: str
) -> tuple[Snapshot, LinkScoring | None]:
    """`snap` with every relationship's strength from `scorer` at `as_of`, `log` being the interactions
    of `serving_scope(as_of)`; with what a refresh re-scores from (None when the log is empty)."""
    strength = np.zeros(snap.relationships, dtype=np.float32)
    scoring = None
    if snap.relationships and log.interactions:
        scoring = LinkScoring(basis, log, _network_embeddings(snap, scorer, log, as_of))
        score_relationships(snap, np.ones(snap.relationships, dtype=bool), scorer, scoring, as_of, strength)
    return replace(snap, edge_strength=strength, strength_source=scorer.source, strength_basis=basis), scoring


def rescore_changed(
    previous: Snapshot,
    snap: Snapshot,
    scorer: LinkScorer,
    scoring: LinkScoring,
    reader: GraphReader,
    changed: list[KnowsRow],
    as_of: int,
) -> tuple[Snapshot, LinkScoring] | None:
    """`snap`, refreshed from `previous` (scored with `scoring`) by the KNOWS rows `changed`, with
    `previous`'s strengths carried over and the changed pairs' relationships scored again. None when
    the change brings people the kept log lacks (they have no embedding: score it all again)."""
    # A row that does not fit (the snapshot skipped it) has no relationship to score.
    pairs = sorted({(row.lo, row.hi) for row in changed if valid_pid(row.lo) and valid_pid(row.hi) and row.lo < row.hi})
    lo_pids, hi_pids = (np.array([pair[i] for pair in pairs], dtype="S32") for i in (0, 1))
    log = with_pairs_replaced(scoring.log, lo_pids, hi_pids, reader.pair_interactions(pairs, serving_scope(as_of)))
    if log is None:
        return None
    scoring = replace(scoring, log=log)
    strength = _carried_strengths(previous, snap)
    n = np.int64(max(snap.people, 1))
    pair_lo, pair_hi = (positions(snap.pids, pids) for pids in (lo_pids, hi_pids))
    lo, hi = edge_endpoints(snap)
    held = (pair_lo >= 0) & (pair_hi >= 0)
    again = np.isin(lo.astype(np.int64) * n + hi, pair_lo[held] * n + pair_hi[held]) | np.isnan(strength)
    strength[again] = 0.0
    score_relationships(snap, again, scorer, scoring, as_of, strength)
    return replace(snap, edge_strength=strength, strength_source=scorer.source, strength_basis=scoring.basis), scoring


def _network_embeddings(snap: Snapshot, scorer: LinkScorer, log: InteractionLog, as_of: int) -> torch.Tensor:
    """Node embeddings from the network: every tenant's interactions but those of opted-out tenants."""
    log_tenant = {name: i for i, name in enumerate(log.tenants.tolist())}
    network = [
        log_tenant[t] for i, t in enumerate(snap.tenants.ids) if t in log_tenant and not snap.tenants.network_opt_out[i]
    ]
    structure = graph_at(log, as_of, tenants=network)
    with torch.no_grad():
        embeddings: torch.Tensor = scorer.model.encode(structure.node_x, structure.edge_index())
    return embeddings


def score_relationships(
    snap: Snapshot, wanted: np.ndarray, scorer: LinkScorer, scoring: LinkScoring, as_of: int, strength: np.ndarray
) -> None:
    """Write into `strength` the scores of the `wanted` relationships, each from its own tenant's
    interactions; a relationship whose people the log lacks (their events all lie after `as_of`) keeps 0."""
    log = scoring.log
    lo, hi, exported = log_positions(snap, log)
    log_tenant = {name: i for i, name in enumerate(log.tenants.tolist())}
    for index, tenant in enumerate(snap.tenants.ids):
        edges = np.flatnonzero((snap.edge_tenant == index) & exported & wanted)
        if not edges.size or tenant not in log_tenant:
            continue
        own = graph_at(log, as_of, tenants=[log_tenant[tenant]])
        u, v = lo[edges], hi[edges]
        with torch.no_grad():
            logits = scorer.model.decode(
                scoring.embeddings, torch.from_numpy(np.stack([u, v]).astype(np.int64)), own.pair_features(u, v)
            ).numpy()
        strength[edges] = scorer.probability(logits)


def _carried_strengths(previous: Snapshot, snap: Snapshot) -> np.ndarray:
    """Per relationship of `snap`, its strength in `previous` (same people and tenant), NaN for one
    `previous` lacks. Tenants keep their numbers across refreshes; people are matched by pid."""
    assert previous.edge_strength is not None
    n, tenants = np.int64(max(snap.people, 1)), np.int64(len(snap.tenants.ids) + 1)
    renumber = positions(snap.pids, previous.pids)
    old_lo, old_hi = (renumber[end] for end in edge_endpoints(previous))
    kept = (old_lo >= 0) & (old_hi >= 0)
    old_keys = (old_lo[kept] * n + old_hi[kept]) * tenants + previous.edge_tenant[kept]
    old_strength = previous.edge_strength[kept]
    order = np.argsort(old_keys)
    old_keys, old_strength = old_keys[order], old_strength[order]
    new_lo, new_hi = edge_endpoints(snap)
    keys = (new_lo.astype(np.int64) * n + new_hi) * tenants + snap.edge_tenant
    strength = np.full(snap.relationships, np.nan, dtype=np.float32)
    if old_keys.size:
        pos = np.minimum(np.searchsorted(old_keys, keys), old_keys.size - 1)
        found = old_keys[pos] == keys
        strength[found] = old_strength[pos[found]]
    return strength


def log_positions(snap: Snapshot, log: InteractionLog) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per relationship of `snap`, its two people's node indices in `log` (lo < hi, as pids sort
    alike; 0 where absent) and whether the log holds both."""
    lo, hi = (positions(log.pids, snap.pids[end]) for end in edge_endpoints(snap))
    return np.maximum(lo, 0), np.maximum(hi, 0), (lo >= 0) & (hi >= 0)
