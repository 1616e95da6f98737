"""The relationship-strength model: a GraphSAGE encoder over the people graph and an edge decoder
that reads both endpoints' embeddings and the pair's own evidence (gnn.features.PAIR_FEATURES).

GraphSAGE because it is inductive (people who join after training get embeddings from their
neighbours and features alone), runs full-graph on a CPU at serving time, and trains on sampled
neighbourhoods; the pair features carry most of the signal for pairs that already interact, the
embeddings carry it for pairs that do not (evaluation in the model card shows both)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.nn import SAGEConv

from gnn.calibration import apply_platt


@dataclass(frozen=True, kw_only=True)
class LinkModelConfig:
    node_features: int
    pair_features: int
    hidden: int = 64
    layers: int = 2
    dropout: float = 0.1

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


class LinkStrengthModel(nn.Module):
    """Scores pairs of people: a logit of a two-way interaction within the horizon.

    Inputs are standardized inside the model (`fit_scaling`), so the artifact alone scores new data.
    Shapes: `x` (N, node_features), `edge_index` (2, E), `pairs` (2, B) node indices into `x`,
    `pair_x` (B, pair_features); output (B,)."""

    node_mean: Tensor
    node_std: Tensor
    pair_mean: Tensor
    pair_std: Tensor

    def __init__(self, config: LinkModelConfig) -> None:
        super().__init__()
        self.config = config
        self.node_in = nn.Linear(config.node_features, config.hidden)
        self.convs = nn.ModuleList(SAGEConv(config.hidden, config.hidden) for _ in range(config.layers))
        self.decoder = nn.Sequential(
            nn.Linear(2 * config.hidden + config.pair_features, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, 1),
        )
        # A linear ("wide") path over the pair evidence beside the deep one: the evidence's
        # monotone effects (more recent, more frequent -> stronger) are learnt in a few steps.
        self.wide = nn.Linear(config.pair_features, 1)
        self.dropout = nn.Dropout(config.dropout)
        for name, size in (("node", config.node_features), ("pair", config.pair_features)):
            self.register_buffer(f"{name}_mean", torch.zeros(size))
            self.register_buffer(f"{name}_std", torch.ones(size))

    def __repr__(self) -> str:
        return f"LinkStrengthModel({self.config.to_dict()})"

    def fit_scaling(self, node_x: Tensor, pair_x: Tensor) -> None:
        """Remember the training inputs' mean and spread."""
        for name, x in (("node", node_x), ("pair", pair_x)):
            getattr(self, f"{name}_mean").copy_(x.mean(0))
            getattr(self, f"{name}_std").copy_(x.std(0).clamp_min(1e-6))

    def encode(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """(N, hidden) embeddings."""
        h = torch.relu(self.node_in((x - self.node_mean) / self.node_std))
        for conv in self.convs:
            h = self.dropout(torch.relu(conv(h, edge_index))) + h
        return h

    def decode(self, h: Tensor, pairs: Tensor, pair_x: Tensor) -> Tensor:
        hu, hv = h[pairs[0]], h[pairs[1]]
        # Symmetric in (u, v): a relationship has no direction here.
        evidence = (pair_x - self.pair_mean) / self.pair_std
        z = torch.cat([hu * hv, (hu - hv).abs(), evidence], dim=1)
        out: Tensor = (self.decoder(z) + self.wide(evidence)).squeeze(-1)
        return out

    def forward(self, x: Tensor, edge_index: Tensor, pairs: Tensor, pair_x: Tensor) -> Tensor:
        return self.decode(self.encode(x, edge_index), pairs, pair_x)


def validation_logits(model: LinkStrengthModel, data: dict[str, Any]) -> np.ndarray:
    """Logits of the held-out validation pairs, full graph (no sampling)."""
    model.eval()
    with torch.no_grad():
        h = model.encode(data["node_x"], data["edge_index"])
        logits: np.ndarray = model.decode(h, data["val_pairs"], data["val_x"]).numpy()
    return logits


@dataclass(frozen=True)
class LinkScorer:
    """A registered link model loaded for serving: its network and its calibration."""

    version: str
    model: LinkStrengthModel
    platt: tuple[float, float]

    @property
    def source(self) -> str:
        """How answers name it."""
        return f"link-model-{self.version}"

    @staticmethod
    def load(state: dict[str, Any], version: str) -> LinkScorer:
        model = LinkStrengthModel(LinkModelConfig(**state["config"]))
        model.load_state_dict(state["weights"])
        model.eval()
        a, b = state["platt"]
        return LinkScorer(version, model, (float(a), float(b)))

    def probability(self, logits: np.ndarray) -> np.ndarray:
        return apply_platt(logits, *self.platt)
