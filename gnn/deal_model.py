"""The deal model: a heterogeneous GNN over deals, the buyer-side people around them and their
accounts. Each deal snapshot (a deal at a time t) is a deal node; its people (contacts and anyone
on the buyer side who engaged) and its company are nodes with edges into it. One HeteroConv layer
(GraphSAGE per relation, mean and max over people) feeds three heads: the stage now, winning, and
log days to close (median, L1)."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch_geometric.nn import HeteroConv, SAGEConv

from gnn.deals import DealFeatures

_PERSON_EDGE = ("person", "engages", "deal")
_COMPANY_EDGE = ("company", "hosts", "deal")


@dataclass(frozen=True)
class DealModelConfig:
    tabular: int
    person: int
    company: int
    stages: int
    hidden: int = 64
    dropout: float = 0.1

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


@dataclass
class DealTensors:
    """Snapshots as tensors: people of snapshot i are rows person_ptr[i]:person_ptr[i+1]."""

    tabular: torch.Tensor
    company: torch.Tensor
    persons: torch.Tensor
    person_ptr: torch.Tensor
    stage_y: torch.Tensor  # long, -1: unknown
    win_y: torch.Tensor  # float, -1: unknown (open)
    log_days_y: torch.Tensor  # float, nan: unknown (open)

    def __len__(self) -> int:
        return int(self.tabular.shape[0])

    def batch(self, idx: torch.Tensor) -> DealTensors:
        counts = self.person_ptr[idx + 1] - self.person_ptr[idx]
        starts = torch.repeat_interleave(self.person_ptr[idx], counts)
        offsets = torch.arange(int(counts.sum())) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        ptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts, 0)])
        return DealTensors(
            self.tabular[idx],
            self.company[idx],
            self.persons[starts + offsets],
            ptr,
            self.stage_y[idx],
            self.win_y[idx],
            self.log_days_y[idx],
        )


def stack(
    features: list[DealFeatures],
    stage_y: list[int] | None = None,
    win_y: list[float] | None = None,
    log_days_y: list[float] | None = None,
) -> DealTensors:
    n = len(features)
    counts = torch.tensor([f.persons.shape[0] for f in features], dtype=torch.long)
    person_width = features[0].persons.shape[1] if features else 0
    persons = np.concatenate([f.persons for f in features]) if features else np.zeros((0, person_width), np.float32)
    return DealTensors(
        tabular=torch.from_numpy(np.stack([f.tabular for f in features])),
        company=torch.from_numpy(np.stack([f.company for f in features])),
        persons=torch.from_numpy(persons.astype(np.float32)),
        person_ptr=torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts, 0)]),
        stage_y=torch.tensor(stage_y if stage_y is not None else [-1] * n, dtype=torch.long),
        win_y=torch.tensor(win_y if win_y is not None else [-1.0] * n, dtype=torch.float32),
        log_days_y=torch.tensor(log_days_y if log_days_y is not None else [float("nan")] * n, dtype=torch.float32),
    )


class _Scaler(nn.Module):
    """Standardization fitted on the training data and saved with the weights."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))

    def fit(self, x: torch.Tensor) -> None:
        if x.shape[0]:
            self.mean.copy_(x.mean(0))
            self.std.copy_(x.std(0).clamp_min(1e-3) if x.shape[0] > 1 else torch.ones(x.shape[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = (x - self.mean) / self.std
        return out


class DealModel(nn.Module):
    def __init__(self, config: DealModelConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.scale_tabular, self.scale_person, self.scale_company = (
            _Scaler(config.tabular),
            _Scaler(config.person),
            _Scaler(config.company),
        )
        self.deal_in = nn.Linear(config.tabular, h)
        self.person_in = nn.Linear(config.person, h)
        self.company_in = nn.Linear(config.company, h)
        with warnings.catch_warnings():  # people and companies only send messages here, by design
            warnings.filterwarnings("ignore", message="There exist node types")
            self.conv = HeteroConv(
                {_PERSON_EDGE: SAGEConv((h, h), h, aggr=["mean", "max"]), _COMPANY_EDGE: SAGEConv((h, h), h)},
                aggr="sum",
            )
        self.trunk = nn.Sequential(
            nn.Linear(2 * h, h), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(h, h), nn.ReLU()
        )
        self.stage_head = nn.Linear(h, config.stages)
        self.win_head = nn.Linear(h, 1)
        self.days_head = nn.Linear(h, 1)
        # A linear ("wide") path from the deal's own features beside the MLP, for their monotone effects.
        self.win_wide = nn.Linear(config.tabular, 1)
        self.days_wide = nn.Linear(config.tabular, 1)

    def fit_scaling(self, data: DealTensors) -> None:
        self.scale_tabular.fit(data.tabular)
        self.scale_person.fit(data.persons)
        self.scale_company.fit(data.company)

    def forward(self, batch: DealTensors) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(stage logits [B, stages], win logit [B], log days to close [B])."""
        n = batch.tabular.shape[0]
        tabular = self.scale_tabular(batch.tabular)
        deal = torch.relu(self.deal_in(tabular))
        x = {
            "deal": deal,
            "person": torch.relu(self.person_in(self.scale_person(batch.persons))),
            "company": torch.relu(self.company_in(self.scale_company(batch.company))),
        }
        owner = torch.repeat_interleave(torch.arange(n), batch.person_ptr[1:] - batch.person_ptr[:-1])
        edges = {
            _PERSON_EDGE: torch.stack([torch.arange(owner.shape[0]), owner]),
            _COMPANY_EDGE: torch.stack([torch.arange(n), torch.arange(n)]),
        }
        around = torch.relu(self.conv(x, edges)["deal"])
        z = self.trunk(torch.cat([deal, around], dim=1))
        return (
            self.stage_head(z),
            (self.win_head(z) + self.win_wide(tabular)).squeeze(1),
            (self.days_head(z) + self.days_wide(tabular)).squeeze(1),
        )


def loss(model: nn.Module, batch: DealTensors) -> torch.Tensor:
    """Stage cross-entropy, win log-loss and days L1, each over the snapshots that have that label."""
    stage_logits, win_logit, log_days = model(batch)
    total = torch.zeros(())
    known_stage = batch.stage_y >= 0
    if known_stage.any():
        total = total + nn.functional.cross_entropy(stage_logits[known_stage], batch.stage_y[known_stage])
    closed = batch.win_y >= 0
    if closed.any():
        total = total + nn.functional.binary_cross_entropy_with_logits(win_logit[closed], batch.win_y[closed])
    timed = ~torch.isnan(batch.log_days_y)
    if timed.any():
        total = total + nn.functional.l1_loss(log_days[timed], batch.log_days_y[timed])
    return total


@torch.no_grad()
def predict(model: DealModel, data: DealTensors, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(stage probabilities, win logits, log days) for every snapshot of `data`."""
    model.eval()
    parts = []
    for start in range(0, len(data), batch_size):
        # Tensors that fit in one batch go in as they are (serving stacks a batch itself): no copy.
        part = data if len(data) <= batch_size else data.batch(torch.arange(start, min(len(data), start + batch_size)))
        stage_logits, win_logit, log_days = model(part)
        parts.append((torch.softmax(stage_logits, 1).numpy(), win_logit.numpy(), log_days.numpy()))
    if not parts:
        return np.zeros((0, model.config.stages)), np.zeros(0), np.zeros(0)
    return tuple(np.concatenate(p) for p in zip(*parts))  # type: ignore[return-value]
