"""Training, one entry per model kind: each reads its own data through the GraphReader, trains
(on Ray where it learns), evaluates against its baselines, registers a version, and knows how its
report reads. `relgraph train`, the scheduled KubeRay job and the demo all train through here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from gnn.buyer_process import CohortMinimum
from gnn.model_kinds import BUYER, DEAL, LINK, ModelKind
from gnn.registry import ModelRegistry
from graph.deal_bundle import DealBundle, observed_until
from graph.export_cache import cached_interaction_log
from graph.interaction_log import ExportScope
from graph.reader import ALL_TENANTS, GraphReader, TenantScope
from jobs.tracking import record_run
from jobs.train_buyer import render_buyer_report, train_buyer_model
from jobs.train_deals import DealSettings, GroundTruth, train_deal_model
from jobs.train_deals import render_report as render_deal_report
from jobs.train_deals import write_plots as deal_plots
from jobs.train_link import LinkSettings, train_link_model
from jobs.train_link import render_report as render_link_report
from jobs.train_link import write_plots as link_plots


@dataclass
class TrainingRequest:
    """What to train on and how; `tenant` None means the network (tenants that have not opted out)."""

    reader: GraphReader
    registry: ModelRegistry
    runs_dir: Path
    cache_dir: Path | None
    tenant: str | None = None
    since: int | None = None
    until: int | None = None
    link: LinkSettings = field(default_factory=LinkSettings)
    deal: DealSettings = field(default_factory=DealSettings)
    cohort_minimum: CohortMinimum = field(default_factory=CohortMinimum)
    truth: GroundTruth | None = None  # a generated dataset's true deal stages, to measure against
    resume: bool = False
    progress: bool = False
    tracking_store: str | None = None  # the MLflow store runs are recorded in (jobs/tracking.py); None: none

    @cached_property
    def scope(self) -> TenantScope:
        if self.tenant is not None:
            return TenantScope.of(self.tenant)
        return TenantScope.of(*(t.tenant for t in self.reader.tenants(ALL_TENANTS) if not t.network_opt_out))

    @cached_property
    def deals(self) -> DealBundle:
        """The scope's deals, read once for the deal and buyer models."""
        return self.reader.deal_bundle(self.scope)

    @cached_property
    def deals_as_of(self) -> int:
        """When the deals are observed: `until`, else just after their latest event."""
        return self.until or observed_until(self.deals)


@dataclass(frozen=True)
class Trainer:
    kind: ModelKind[Any]
    train: Callable[[TrainingRequest], dict[str, Any]]  # -> the report; "version" names what it registered
    render: Callable[[dict[str, Any]], str]
    plots: Callable[[dict[str, Any], Path], list[Path]] | None = None  # (a run's manifest, folder) -> files

    def run(self, request: TrainingRequest) -> dict[str, Any]:
        """Train, and record the run with the version it registered (its manifest, card and plots)
        in the request's tracking store; the report says where (`tracked`)."""
        report = self.train(request)
        if request.tracking_store is not None:
            version = request.registry.version(self.kind.name, report["version"])
            files = sorted(p for p in version.path.iterdir() if p.suffix in (".md", ".png"))
            report["tracked"] = record_run(
                request.tracking_store,
                model=self.kind.name,
                task="train",
                manifest=version.manifest,
                artifacts=files,
                version=version.name,
            )
        return report


def _train_link(request: TrainingRequest) -> dict[str, Any]:
    scope = ExportScope(
        tenants=ALL_TENANTS if request.tenant is None else request.scope, start=request.since, end=request.until
    )
    log = cached_interaction_log(request.reader, scope, request.cache_dir)
    report = train_link_model(
        log,
        request.link,
        runs_dir=request.runs_dir,
        registry=request.registry,
        scope=scope.to_dict(),
        resume=request.resume,
        progress=request.progress,
    )
    return report.to_dict()


def _train_deal(request: TrainingRequest) -> dict[str, Any]:
    report = train_deal_model(
        request.deals,
        request.deal,
        as_of=request.deals_as_of,
        runs_dir=request.runs_dir,
        registry=request.registry,
        scope=_deal_scope(request),
        truth=request.truth,
        resume=request.resume,
        progress=request.progress,
    )
    return report.to_dict()


def _train_buyer(request: TrainingRequest) -> dict[str, Any]:
    version = train_buyer_model(
        request.deals,
        as_of=request.deals_as_of,
        registry=request.registry,
        scope=_deal_scope(request),
        minimum=request.cohort_minimum,
    )
    return {**version.manifest, "version": version.name}


def _deal_scope(request: TrainingRequest) -> dict[str, Any]:
    return {"tenants": request.scope.names(), "as_of": request.deals_as_of}


TRAINERS: dict[str, Trainer] = {
    LINK.name: Trainer(LINK, _train_link, render_link_report, link_plots),
    DEAL.name: Trainer(DEAL, _train_deal, render_deal_report, deal_plots),
    BUYER.name: Trainer(BUYER, _train_buyer, render_buyer_report),
}
