"""Relationship strengths from the promoted link model, for the serving snapshot.

Every relationship of the snapshot is scored at the serving clock's time: node embeddings from the
network graph (pseudonymous structure, tenants that opted out left out), pair evidence from the
relationship's own tenant's interactions only, so one tenant's strengths never carry another
tenant's raw counts. The interactions are the read seam's interaction log up to that time."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from gnn.features import graph_at
from gnn.link_model import LinkScorer
from graph.interaction_log import InteractionLog
from server.snapshot import Snapshot, edge_endpoints


def with_link_strengths(snap: Snapshot, scorer: LinkScorer, log: InteractionLog, as_of: int) -> Snapshot:
    """`snap` with every relationship's strength from `scorer` at `as_of`; `log` holds every
    tenant's interactions before `as_of` (opted-out tenants' included, for their own relationships)."""
    strength = np.zeros(snap.relationships, dtype=np.float32)
    if snap.relationships and log.interactions:
        # A relationship whose events all lie after `as_of` has people the log lacks: strength 0.
        lo, hi, exported = log_positions(snap, log)
        log_tenant = {name: i for i, name in enumerate(log.tenants.tolist())}
        # Embeddings from the network: every tenant's interactions but those of opted-out tenants.
        network = [
            log_tenant[t]
            for i, t in enumerate(snap.tenants.ids)
            if t in log_tenant and not snap.tenants.network_opt_out[i]
        ]
        structure = graph_at(log, as_of, tenants=network)
        with torch.no_grad():
            embeddings = scorer.model.encode(structure.node_x, structure.edge_index())
        for index, tenant in enumerate(snap.tenants.ids):
            edges = np.flatnonzero((snap.edge_tenant == index) & exported)
            if not edges.size or tenant not in log_tenant:
                continue
            own = graph_at(log, as_of, tenants=[log_tenant[tenant]])
            u, v = lo[edges], hi[edges]
            with torch.no_grad():
                logits = scorer.model.decode(
                    embeddings, torch.from_numpy(np.stack([u, v]).astype(np.int64)), own.pair_features(u, v)
                ).numpy()
            strength[edges] = scorer.probability(logits)
    return replace(snap, edge_strength=strength, strength_source=scorer.source)


def log_positions(snap: Snapshot, log: InteractionLog) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per relationship of `snap`, its two people's node indices in `log` (lo < hi, as pids sort
    alike) and whether the log holds both."""
    ends = [snap.pids[end] for end in edge_endpoints(snap)]
    lo, hi = (np.minimum(np.searchsorted(log.pids, e), max(log.people - 1, 0)) for e in ends)
    present = (log.pids[lo] == ends[0]) & (log.pids[hi] == ends[1]) if log.people else np.zeros(len(lo), dtype=bool)
    return lo, hi, present
