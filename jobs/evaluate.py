"""`relgraph evaluate links --dataset DIR`: the link model against the baselines on any dataset in
the public ingest format, the way a user would bring their own: the dataset is ingested into a
throwaway Neo4j (pseudonymized like any ingest), exported, and a model is trained and scored on
its chronological split. Nothing is registered or promoted; the report says whether the model
wins, by how much, or that it loses."""

from __future__ import annotations

import tempfile
from pathlib import Path

from gnn.interactions import ExportScope, export_interactions
from graph.ingest import ingest
from graph.pseudonymize import Pseudonymizer
from graph.schema import migrate
from graph.store import connect
from jobs.bench_common import throwaway_neo4j
from jobs.train import TrainConfig, TrainReport, train_link_model
from relgraph.config import Config
from relgraph.errors import ConfigError, InvalidInputError


def evaluate_links(config: Config, dataset: Path, train_config: TrainConfig, *, network_key: str,
                   progress: bool = False) -> TrainReport:
    if not dataset.exists():
        raise ConfigError(f"--dataset {dataset}: no such file or folder")
    with tempfile.TemporaryDirectory(prefix="relgraph-evaluate-") as tmp:
        eval_config, server = throwaway_neo4j(config, Path(tmp) / "home")
        try:
            with connect(eval_config) as store:
                migrate(store)
                summary = ingest(store, [dataset], Pseudonymizer(network_key), batch_size=config.ingest.batch_size)
                if summary.files_rejected:
                    first = summary.first_errors[0]
                    raise InvalidInputError(f"{summary.files_rejected} of {summary.files} dataset files were refused "
                                            f"(first: {first.file}:{first.line}: {first.reason}); fix them, or "
                                            f"convert them again, and rerun")
                log = export_interactions(store, ExportScope(), progress=progress)
        finally:
            server.stop()
        return train_link_model(log, train_config, runs_dir=Path(tmp) / "runs", registry=None,
                                scope={"dataset": str(dataset)}, progress=progress)
