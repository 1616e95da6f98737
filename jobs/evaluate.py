"""`relgraph evaluate links|deals --dataset DIR`: a model against its baselines on any dataset in
the public ingest format, the way a user would bring their own: the dataset is ingested into a
throwaway Neo4j (pseudonymized like any ingest), exported, and a model is trained and scored on
its chronological split. Nothing is registered or promoted; the report says whether the model
wins, by how much, or that it loses."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from core.config import Config
from core.errors import ConfigError, InvalidInputError
from graph.deal_bundle import observed_until
from graph.ingest import IngestSummary, ingest
from graph.interaction_log import ExportScope
from graph.neo4j_reader import Neo4jReader
from graph.pseudonymize import Pseudonymizer
from graph.reader import ALL_TENANTS
from graph.schema import migrate
from graph.store import GraphStore, connect
from jobs.bench_common import throwaway_neo4j
from jobs.train_deals import DealReport, DealSettings, GroundTruth, train_deal_model
from jobs.train_link import LinkSettings, TrainReport, train_link_model

IngestReport = Callable[[IngestSummary], None]


def _quiet(summary: IngestSummary) -> None:
    """Report no ingest summary."""


@contextmanager
def ingested_dataset(
    config: Config, dataset: Path, network_key: str, *, strict: bool = True, report: IngestReport = _quiet
) -> Iterator[GraphStore]:
    """A throwaway Neo4j holding `dataset`, ingested like any user data (`report` sees the ingest
    summary first); strict, a file with any bad record is refused and so is the dataset; not strict,
    bad records are left out and counted."""
    if not dataset.exists():
        raise ConfigError(f"--dataset {dataset}: no such file or folder")
    with tempfile.TemporaryDirectory(prefix="relgraph-evaluate-") as tmp:
        eval_config, server = throwaway_neo4j(config, Path(tmp) / "home")
        try:
            with connect(eval_config) as store:
                migrate(store)
                summary = ingest(
                    store,
                    [dataset],
                    Pseudonymizer(network_key),
                    strict=strict,
                    batch_size=config.ingest.batch_size,
                )
                report(summary)
                if summary.files_rejected:
                    first = summary.first_errors[0]
                    raise InvalidInputError(
                        f"{summary.files_rejected} of {summary.files} dataset files were refused "
                        f"(first: {first.file}:{first.line}: {first.reason}); fix them, or convert them "
                        f"again, and rerun (--no-strict leaves the bad records out instead)"
                    )
                yield store
        finally:
            server.stop()


def evaluate_links(
    config: Config,
    dataset: Path,
    settings: LinkSettings,
    *,
    network_key: str,
    progress: bool = False,
    strict: bool = True,
    report: IngestReport = _quiet,
) -> TrainReport:
    with ingested_dataset(config, dataset, network_key, strict=strict, report=report) as store:
        log = Neo4jReader(store, progress=progress).interaction_log(ExportScope(tenants=ALL_TENANTS))
    with tempfile.TemporaryDirectory(prefix="relgraph-evaluate-runs-") as runs:
        return train_link_model(
            log, settings, runs_dir=Path(runs), registry=None, scope={"dataset": str(dataset)}, progress=progress
        )


def evaluate_deals(
    config: Config,
    dataset: Path,
    settings: DealSettings,
    *,
    network_key: str,
    progress: bool = False,
    strict: bool = True,
    report: IngestReport = _quiet,
) -> DealReport:
    """The deal model against its baselines on `dataset` (a CRM export without interactions works
    too); stage accuracy against the true stages when the dataset has the generator's ground truth."""
    with ingested_dataset(config, dataset, network_key, strict=strict, report=report) as store:
        data = Neo4jReader(store).deal_bundle(ALL_TENANTS)
    with tempfile.TemporaryDirectory(prefix="relgraph-evaluate-runs-") as runs:
        return train_deal_model(
            data,
            settings,
            as_of=observed_until(data),
            runs_dir=Path(runs),
            registry=None,
            scope={"dataset": str(dataset)},
            truth=GroundTruth.load(dataset),
            progress=progress,
        )
