"""The per-worker training loop of the deal model, run by Ray Train (jobs/train_deals.py).

Each worker trains on an equal random shard of the training snapshots in mini-batches (DDP keeps
the replicas equal); rank 0 computes the validation loss each epoch and, every CHECKPOINT_EVERY
epochs and at the end, checkpoints the model, the optimizer and the best state so far, which is what
the run returns (early stopping by validation loss, without cutting the run short)."""

from __future__ import annotations

import sys
import time
from typing import Any

import torch

from gnn.deal_model import DealModel, DealModelConfig, DealTensors, loss
from gnn.training import report, restore_checkpoint

# Epochs are short (a second or less), and a Ray checkpoint costs about as much: one every few epochs.
CHECKPOINT_EVERY = 5


def deal_train_worker(config: dict[str, Any]) -> None:
    import ray
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(config["threads"])
    torch.manual_seed(config["seed"])
    data = ray.get(config["data"])
    train, val = DealTensors(**data["train"]), DealTensors(**data["val"])

    model = DealModel(DealModelConfig(**config["model"]))
    model.fit_scaling(train)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"], weight_decay=config["weight_decay"])
    best: dict[str, Any] = {"val_loss": float("inf"), "epoch": 0, "model": model.state_dict()}
    start, history = 0, []
    state = restore_checkpoint(model, optimizer)
    if state is not None:
        start, history, best = state["epoch"] + 1, state["history"], state["best"]
    trained = ray.train.torch.prepare_model(model)

    per_rank = len(train) // world
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(config["seed"]))
    shard = order[rank * per_rank:(rank + 1) * per_rank]
    for epoch in range(start, config["epochs"]):
        began = time.perf_counter()
        model.train()
        generator = torch.Generator().manual_seed(config["seed"] * 1000 + epoch)
        shuffled = shard[torch.randperm(shard.shape[0], generator=generator)]
        losses = []
        for i in range(0, shuffled.shape[0], config["batch_size"]):
            optimizer.zero_grad()
            value = loss(trained, train.batch(shuffled[i:i + config["batch_size"]]))
            value.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            losses.append(value.item())
        metrics = {"epoch": epoch + 1, "train_loss": sum(losses) / max(len(losses), 1),
                   "seconds": time.perf_counter() - began}
        if rank != 0:
            ray.train.report(metrics)
            continue
        model.eval()
        with torch.no_grad():
            metrics["val_loss"] = float(loss(model, val))
        history.append(metrics)
        if metrics["val_loss"] < best["val_loss"]:
            best = {"val_loss": metrics["val_loss"], "epoch": epoch + 1,
                    "model": {k: v.clone() for k, v in model.state_dict().items()}}
        if config["progress"] or (epoch + 1) % 10 == 0 or epoch + 1 == config["epochs"]:
            print(f"[train deal] epoch {epoch + 1}/{config['epochs']}: train loss {metrics['train_loss']:.4f}, "
                  f"validation loss {metrics['val_loss']:.4f} ({metrics['seconds']:.1f} s)", file=sys.stderr, flush=True)
        if (epoch + 1) % CHECKPOINT_EVERY and epoch + 1 < config["epochs"]:
            ray.train.report(metrics)
            continue
        report(metrics, model, optimizer, {"epoch": epoch, "history": history, "best": best})
