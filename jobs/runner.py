"""The Ray machinery every model training shares: one run-settings type, starting Ray (locally, or
the cluster RAY_ADDRESS names, e.g. a KubeRay RayJob), running a per-worker loop on Ray Train with
DDP, checkpoints and resumption, and the worker side of it (seeding, the rank's shard of the data,
checkpoint restore and report).

Runs and their checkpoints live under `runs_dir/<run name>`; `resume=True` continues the newest
unfinished run of a model kind from its last checkpoint (Ray Train restores a run started again
under the same name and storage path). Ray's own log lines go to the run's log file
(`runs_dir/<run>/log`), not the terminal."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from core.errors import ConfigError
from gnn.registry import ModelVersion

CHECKPOINT_FILE = "state.pt"
_DONE = "DONE"  # marks a run directory whose training finished (not resumable)
_PROGRESS = "epochs.jsonl"  # one line per finished epoch, written by rank 0


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """How one training run runs, whatever the model: keyword-only and validated; errors name the setting."""

    workers: int = 1
    epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 3e-3
    hidden: int = 64
    validation_share: float = 0.2
    seed: int = 0
    max_failures: int = 1  # a worker that dies is restarted from the last checkpoint this many times

    def __post_init__(self) -> None:
        check_settings(self, counts=("workers", "epochs", "batch_size", "hidden"), shares=("validation_share",))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class RunReport:
    """What one training run produced, whatever the model; a model kind's report adds its own
    timings after `seconds`."""

    run: str
    seconds: float  # all of it: preparation, Ray start-up, training, evaluation
    manifest: dict[str, Any]
    version: ModelVersion | None  # None when nothing was registered (evaluate)

    def to_dict(self) -> dict[str, Any]:
        timings = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("run", "manifest", "version")}
        return {
            "run": self.run,
            "version": self.version.name if self.version else None,
            **timings,
            **{
                k: self.manifest[k]
                for k in ("headline", "metrics", "sizes", "data_window", "calibration", "promotion_gate")
            },
        }


def check_settings(settings: object, *, counts: tuple[str, ...], shares: tuple[str, ...]) -> None:
    """Each of `counts` at least 1, each of `shares` in (0, 0.5); errors name the setting."""
    for name in counts:
        if getattr(settings, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(settings, name)}")
    for name in shares:
        if not 0.0 < getattr(settings, name) < 0.5:
            raise ConfigError(f"{name} must be in (0, 0.5), got {getattr(settings, name)}")


def init_ray(workers: int) -> None:
    """Connect to RAY_ADDRESS when set, else start a local Ray sized for this machine."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)
        return
    cpus = max(workers, os.cpu_count() or 1)
    # Ray Train's print patch would log each worker line twice (as a print and as a log record).
    ray.init(
        num_cpus=cpus,
        object_store_memory=512 * 1024 * 1024,
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}},
    )


def fit_on_ray(
    worker: Callable[[dict[str, Any]], None],
    loop_config: dict[str, Any],
    *,
    data: object,
    run_prefix: str,
    settings: RunSettings,
    runs_dir: Path,
    resume: bool,
    progress: bool = False,
) -> tuple[str, dict[str, Any], float]:
    """Run `worker` on `settings.workers` Ray Train workers (`start_worker` hands each one `data`
    from the object store); returns (run name, the last checkpoint's state, seconds). A failed
    worker restarts from the last checkpoint up to `settings.max_failures` times; `resume`
    continues the newest unfinished `run_prefix` run. With `progress`, a bar follows the epochs the workers finish."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    runs_dir.mkdir(parents=True, exist_ok=True)
    run = _resumable_run(runs_dir, run_prefix) if resume else None
    if resume and run is None:
        raise ConfigError(f"--resume: no unfinished {run_prefix} run under {runs_dir}")
    run = run or f"{run_prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    folder = (runs_dir / run).resolve()
    with run_log(folder):
        with _native_stderr_to(folder / "log"):
            init_ray(settings.workers)
        cpus = int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
        threads = max(1, cpus // settings.workers)
        trainer = TorchTrainer(
            worker,
            train_loop_config={
                **loop_config,
                "data": ray.put(data),
                "threads": threads,
                "seed": settings.seed,
                "epochs": settings.epochs,
                "batch_size": settings.batch_size,
                "learning_rate": settings.learning_rate,
                "progress_file": str(folder / _PROGRESS),
            },
            scaling_config=ScalingConfig(
                num_workers=settings.workers, use_gpu=False, resources_per_worker={"CPU": threads}
            ),
            run_config=RunConfig(
                name=run,
                storage_path=str(runs_dir.resolve()),
                failure_config=FailureConfig(max_failures=settings.max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=2),
            ),
        )
        began = time.perf_counter()
        with _follow_epochs(folder / _PROGRESS, f"train {run_prefix}", settings.epochs, progress):
            result = trainer.fit()
        seconds = time.perf_counter() - began
    if result.checkpoint is None:
        raise RuntimeError(f"training run {run} finished without a checkpoint: {result.error}")
    with result.checkpoint.as_directory() as folder:
        state: dict[str, Any] = torch.load(Path(folder) / CHECKPOINT_FILE, weights_only=True)
    (runs_dir / run / _DONE).write_text("")
    return run, state, seconds


@contextlib.contextmanager
def run_log(folder: Path) -> Iterator[Path]:
    """Send Ray's and PyTorch's logging, and whatever the driver prints to stdout, to
    `folder/log` while a run trains: the terminal keeps the progress and the results."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "log"
    handler = logging.FileHandler(path)
    loggers = [logging.getLogger(name) for name in ("ray", "ray.train", "ray.tune", "ray.data", "torch")]
    saved = [(logger.handlers[:], logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.handlers = [handler]
        logger.propagate = False
    try:
        with open(path, "a") as out, contextlib.redirect_stdout(out):
            yield path
    finally:
        for logger, (handlers, propagate) in zip(loggers, saved):
            logger.handlers, logger.propagate = handlers, propagate
        handler.close()


@contextlib.contextmanager
def _native_stderr_to(path: Path) -> Iterator[None]:
    """Send what native code writes to file descriptor 2 (Ray's C++ core greets every new local
    cluster there) to `path`."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "a") as log:
            os.dup2(log.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _follow_epochs(path: Path, description: str, epochs: int, enabled: bool) -> Iterator[None]:
    """A progress bar of the epochs rank 0 records in `path` (the workers may run elsewhere; the
    run folder is shared storage), updated from a thread while the run trains."""
    if not enabled:
        yield
        return
    stop = threading.Event()

    def follow() -> None:
        with tqdm(total=epochs, desc=description, unit=" epoch", file=sys.stderr) as bar:

            def advance() -> None:  # redraw only when an epoch finished: a log file gets one line per epoch
                lines = path.read_text().splitlines() if path.exists() else []
                last = json.loads(lines[-1]) if lines else {"epoch": 0}
                if min(epochs, int(last["epoch"])) != bar.n:
                    bar.n = min(epochs, int(last["epoch"]))
                    bar.set_postfix(
                        {k: f"{v:.3f}" for k, v in last.items() if k not in ("epoch", "seconds")}, refresh=False
                    )
                    bar.refresh()

            while not stop.wait(0.5):
                advance()
            advance()  # the last epoch can land after the last poll

    thread = threading.Thread(target=follow, name="epoch-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _resumable_run(runs_dir: Path, prefix: str) -> str | None:
    runs = [
        p for p in runs_dir.iterdir() if p.is_dir() and p.name.startswith(f"{prefix}-") and not (p / _DONE).exists()
    ]
    return max(runs, key=lambda p: p.stat().st_mtime).name if runs else None


# -- the worker side ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Worker:
    """One Ray Train worker's place in the run."""

    rank: int
    world: int
    data: dict[str, Any]  # the prepared training data, from the object store
    config: dict[str, Any]

    def shard(self, n: int) -> torch.Tensor:
        """This rank's equal share of `n` examples: the same seeded permutation on every rank, cut
        into equal shards (equal, so every rank runs the same number of DDP steps)."""
        per_rank = n // self.world
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.config["seed"]))
        return order[self.rank * per_rank : (self.rank + 1) * per_rank]

    def record_epoch(self, metrics: dict[str, Any]) -> None:
        """Rank 0 records a finished epoch for the driver's progress bar (and the run's folder)."""
        if self.rank == 0:
            with open(self.config["progress_file"], "a") as out:
                out.write(json.dumps(metrics) + "\n")


def start_worker(config: dict[str, Any]) -> Worker:
    """The preamble of every worker loop: rank and world size, threads, seeds, the data."""
    import ray
    import ray.train

    context = ray.train.get_context()
    torch.set_num_threads(config["threads"])
    torch.manual_seed(config["seed"])
    return Worker(context.get_world_rank(), context.get_world_size(), ray.get(config["data"]), config)


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


def report(
    metrics: dict[str, Any],
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Report an epoch's metrics to Ray Train, with a checkpoint (model, optimizer and `extra`)
    when a model is given."""
    import ray.train

    if model is None or optimizer is None:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        torch.save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), **(extra or {})},
            Path(folder) / CHECKPOINT_FILE,
        )
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


def plot_curves(history: list[dict[str, float]], path: Path) -> None:
    """Training and validation loss per epoch, and the validation AUC beside them when recorded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    with_auc = "val_auc" in history[0]
    fig, axes = plt.subplots(1, 2 if with_auc else 1, figsize=(9 if with_auc else 5, 3.5), squeeze=False)
    left = axes[0][0]
    left.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss")
    left.plot(epochs, [h["val_loss"] for h in history], marker="o", label="validation loss")
    left.set_xlabel("epoch")
    left.legend()
    if with_auc:
        right = axes[0][1]
        right.plot(epochs, [h["val_auc"] for h in history], marker="o", color="tab:green")
        right.set_xlabel("epoch")
        right.set_ylabel("validation AUC")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
