"""The per-worker training loop of the link model, run by Ray Train (jobs/train.py) on every worker.

Each worker takes an equal random shard of the training pairs (equal, so every rank runs the same
number of DDP steps), samples neighbourhoods with `TorchNeighborSampler` through PyG's
`LinkNeighborLoader`, and reports per-epoch metrics; rank 0 validates and writes a checkpoint each
epoch (model, optimizer, epoch, history), which a restarted worker or a resumed run continues from."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch_geometric.data import Data
from torch_geometric.loader import LinkNeighborLoader

from gnn.models import LinkModelConfig, LinkStrengthModel
from gnn.sampler import TorchNeighborSampler

CHECKPOINT_FILE = "state.pt"


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train's `train_loop_per_worker`. `config["data"]` is an object ref to the prepared tensors."""
    import ray
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(config["threads"])
    torch.manual_seed(config["seed"])
    data = ray.get(config["data"])

    model = LinkStrengthModel(LinkModelConfig(**config["model"]))
    model.fit_scaling(data["node_x"], data["train_x"])
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
    start, history = 0, []
    state = restore_checkpoint(model, optimizer)
    if state is not None:
        start, history = state["epoch"] + 1, state["history"]
    trained = ray.train.torch.prepare_model(model)  # DDP when world > 1

    graph = Data(x=data["node_x"], edge_index=data["edge_index"], num_nodes=data["node_x"].shape[0])
    sampler = TorchNeighborSampler(graph, list(config["num_neighbors"]), seed=config["seed"] + rank)
    # The same seeded permutation on every rank, cut into equal shards: each rank sees a random
    # sample of positives and negatives (the pairs are stored positives first).
    per_rank = data["train_y"].shape[0] // world
    order = torch.randperm(data["train_y"].shape[0], generator=torch.Generator().manual_seed(config["seed"]))
    shard = order[rank * per_rank:(rank + 1) * per_rank]
    pairs, pair_x, labels = data["train_pairs"][:, shard], data["train_x"][shard], data["train_y"][shard]
    loss_fn = torch.nn.BCEWithLogitsLoss()

    for epoch in range(start, config["epochs"]):
        loader = LinkNeighborLoader(graph, num_neighbors=list(config["num_neighbors"]), edge_label_index=pairs,
                                    edge_label=labels, batch_size=config["batch_size"], shuffle=True,
                                    neighbor_sampler=sampler,
                                    generator=torch.Generator().manual_seed(config["seed"] * 1000 + epoch))
        model.train()
        losses = []
        began = time.perf_counter()
        for batch in _progress(loader, f"epoch {epoch + 1}/{config['epochs']}", rank == 0 and config["progress"]):
            optimizer.zero_grad()
            logits = trained(batch.x, batch.edge_index, batch.edge_label_index, pair_x[batch.input_id])
            loss = loss_fn(logits, batch.edge_label)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        seconds = time.perf_counter() - began
        metrics = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "seconds": seconds}
        if rank == 0:  # validation and the checkpoint are rank 0's: the other ranks would repeat them
            metrics.update(validate(model, data))
            history.append(metrics)
            print(f"[train] epoch {epoch + 1}/{config['epochs']}: " +
                  ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k not in ("epoch", "seconds"))
                  + f" ({seconds:.1f} s)", file=sys.stderr, flush=True)
            report(metrics, model, optimizer, {"epoch": epoch, "history": history})
        else:
            ray.train.report(metrics)


def restore_checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    """When Ray Train (re)starts this worker from a checkpoint: load its model and optimizer state
    into `model` and `optimizer` and return the whole saved state; else None."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        state: dict[str, Any] = torch.load(Path(folder) / CHECKPOINT_FILE, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state


def report(metrics: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
           extra: dict[str, Any]) -> None:
    """Report an epoch's metrics to Ray Train with a checkpoint: model, optimizer and `extra`."""
    import ray.train

    with tempfile.TemporaryDirectory() as folder:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), **extra},
                   Path(folder) / CHECKPOINT_FILE)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


def validate(model: LinkStrengthModel, data: dict[str, Any]) -> dict[str, float]:
    """Loss and AUC on the held-out validation pairs, full graph (no sampling)."""
    logits = validation_logits(model, data)
    labels = data["val_y"].numpy()
    loss = float(torch.nn.functional.binary_cross_entropy_with_logits(torch.from_numpy(logits), data["val_y"]))
    return {"val_loss": loss, "val_auc": float(roc_auc_score(labels, logits))}


def validation_logits(model: LinkStrengthModel, data: dict[str, Any]) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        h = model.encode(data["node_x"], data["edge_index"])
        logits: np.ndarray = model.decode(h, data["val_pairs"], data["val_x"]).numpy()
    return logits


def _progress(loader: LinkNeighborLoader, description: str, enabled: bool) -> Any:
    if not enabled:
        return loader
    from ray.experimental.tqdm_ray import tqdm

    return tqdm(loader, desc=description, total=len(loader))
