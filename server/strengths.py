"""Relationship strengths from the promoted link model, for the serving snapshot.

Every relationship of the snapshot is scored as of now: node embeddings from the network graph
(pseudonymous structure), pair evidence from the relationship's own tenant's interactions only,
so one tenant's strengths never carry another tenant's raw counts. The interactions come from the
training export (gnn.interactions), which is cached on disk until the graph changes."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from gnn.calibration import apply_platt
from gnn.features import graph_at, schema_hash
from gnn.interactions import ExportScope, export_interactions
from gnn.models import LinkModelConfig, LinkStrengthModel
from gnn.registry import ModelRegistry
from graph.store import GraphStore
from server.snapshot import Snapshot, edge_endpoints

LINK_MODEL = "link"


@dataclass(frozen=True)
class ServedModel:
    version: str
    model: LinkStrengthModel
    platt: tuple[float, float]

    @property
    def source(self) -> str:
        return f"link-model-{self.version}"


def load_promoted(registry: ModelRegistry) -> ServedModel:
    """The promoted link model; NoModelError if none, ModelSchemaError if its features differ."""
    version, state = registry.promoted(LINK_MODEL, schema_hash())
    model = LinkStrengthModel(LinkModelConfig(**state["config"]))
    model.load_state_dict(state["weights"])
    model.eval()
    a, b = state["platt"]
    return ServedModel(version.name, model, (float(a), float(b)))


def with_model_strengths(snap: Snapshot, served: ServedModel, store: GraphStore, cache_dir: Path | None,
                         as_of: int | None = None) -> Snapshot:
    """`snap` with every relationship's strength from `served` (as of now unless `as_of`)."""
    as_of = int(time.time()) if as_of is None else as_of
    log = export_interactions(store, ExportScope(end=as_of, with_opted_out=True), cache_dir)
    strength = np.zeros(snap.relationships, dtype=np.float32)
    if snap.relationships and log.interactions:
        ends = [snap.pids[end] for end in edge_endpoints(snap)]
        lo, hi = (np.minimum(np.searchsorted(log.pids, e), log.people - 1) for e in ends)
        # A relationship whose events all lie after `as_of` has people the export lacks: strength 0.
        exported = (log.pids[lo] == ends[0]) & (log.pids[hi] == ends[1])
        log_tenant = {name: i for i, name in enumerate(log.tenants.tolist())}
        # Embeddings from the network: every tenant's interactions but those of opted-out tenants.
        network = [log_tenant[t] for i, t in enumerate(snap.tenants.ids)
                   if t in log_tenant and not snap.tenants.network_opt_out[i]]
        structure = graph_at(log, as_of, tenants=network)
        with torch.no_grad():
            embeddings = served.model.encode(structure.node_x, structure.edge_index())
        for index, tenant in enumerate(snap.tenants.ids):
            edges = np.flatnonzero((snap.edge_tenant == index) & exported)
            if not edges.size or tenant not in log_tenant:
                continue
            own = graph_at(log, as_of, tenants=[log_tenant[tenant]])
            u, v = lo[edges], hi[edges]
            with torch.no_grad():
                logits = served.model.decode(embeddings, torch.from_numpy(np.stack([u, v]).astype(np.int64)),
                                             own.pair_features(u, v)).numpy()
            strength[edges] = apply_platt(logits, *served.platt)
    return replace(snap, edge_strength=strength, strength_source=served.source)
