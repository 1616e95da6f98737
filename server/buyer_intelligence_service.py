"""BuyerIntelligenceService: deal-stage estimates and buyer-process predictions from the promoted
deal and buyer models, and deal signals ranked by `gnn.signals`. Each call reads the deal's own
tenant's data from Neo4j (the tenant comes from the API key) and scores it with the same code the
offline evaluation uses. relgraph only suggests CRM updates; it never writes to a CRM."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import grpc
from google.protobuf import timestamp_pb2

from gnn import buyer_process, deals
from gnn.buyer_process import BuyerProcessModel, amount_band
from gnn.deal_scoring import DealScorer
from gnn.deals import Deal, DealData, load_deal_data
from gnn.registry import ModelRegistry
from gnn.signals import RANKER_VERSION, rank_signals
from graph import exports
from graph.pseudonymize import normalize_domain
from graph.records import DEAL_CONTACT_ROLES
from graph.store import GraphStore
from relgraph.config import ServerConfig
from relgraph.errors import InvalidRequestError, NotFoundError, RecordError
from relgraph.v1 import buyer_intelligence_pb2 as pb
from relgraph.v1 import buyer_intelligence_pb2_grpc, common_pb2
from server.auth import current_auth
from server.warm_paths import describe

DEFAULT_SIGNALS = 20
MAX_SIGNALS = 100
_Model = TypeVar("_Model")


class _Promoted(Generic[_Model]):
    """The promoted version of one model, loaded once and reloaded when another is promoted."""

    def __init__(self, registry: ModelRegistry, name: str, schema_hash: str,
                 load: Callable[[dict[str, object], str], _Model]) -> None:
        self._registry, self._name, self._schema_hash, self._load = registry, name, schema_hash, load
        self._lock = threading.Lock()
        self._loaded: tuple[str, _Model] | None = None

    def get(self) -> tuple[str, _Model]:
        promoted = self._registry.promoted_name(self._name)
        with self._lock:
            if self._loaded is None or self._loaded[0] != promoted:
                version, state = self._registry.promoted(self._name, self._schema_hash)
                self._loaded = (version.name, self._load(state, version.name))
            return self._loaded


def _timestamp(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=int(seconds))


class BuyerIntelligenceService(buyer_intelligence_pb2_grpc.BuyerIntelligenceServiceServicer):  # type: ignore[misc]
    def __init__(self, store: GraphStore, registry: ModelRegistry, config: ServerConfig) -> None:
        self._store = store
        self._config = config
        self._deal_model = _Promoted(registry, "deal", deals.schema_hash(deals.DEFAULT_STAGES), DealScorer)
        self._buyer_model = _Promoted(
            registry, "buyer", buyer_process.schema_hash(deals.DEFAULT_STAGES),
            lambda state, _: BuyerProcessModel(state, min_deals=config.min_cohort_deals,
                                               min_tenants=config.min_cohort_tenants))

    def _as_of(self) -> int:
        return self._config.as_of or int(time.time())

    def _open_deal(self, deal_id: str) -> tuple[DealData, Deal, int]:
        """The requesting tenant's deal with what surrounds it, and the time to answer at."""
        if not deal_id:
            raise InvalidRequestError([("deal_id", "is required")])
        tenant = current_auth().tenant
        data = load_deal_data(self._store, [tenant], [deal_id])
        deal = data.deal(tenant, deal_id)
        if deal is None:
            raise NotFoundError(f"no deal {deal_id!r} in your organisation's data")
        return data, deal, self._as_of()

    def EstimateDealStage(self, request: pb.EstimateDealStageRequest,
                          context: grpc.ServicerContext) -> pb.EstimateDealStageResponse:
        version, scorer = self._deal_model.get()
        data, deal, as_of = self._open_deal(request.deal_id)
        if 0 <= deal.closed <= as_of:
            raise InvalidRequestError([("deal_id", f"the deal is closed ({deal.outcome}); estimates are for open deals")])
        estimate = scorer.estimate(data, deal, as_of)
        disagrees = estimate.crm_stage != estimate.estimated_stage  # also when the CRM records no stage
        return pb.EstimateDealStageResponse(
            stages=[pb.StageProbability(stage=s, probability=p) for s, p in estimate.stages.items()],
            estimated_stage=estimate.estimated_stage, win_probability=estimate.win_probability,
            expected_close=_timestamp(estimate.close_p50), close_p10=_timestamp(estimate.close_p10),
            close_p90=_timestamp(estimate.close_p90), crm_stage=estimate.crm_stage,
            disagrees_with_crm=disagrees, suggested_stage=estimate.estimated_stage if disagrees else "",
            evidence=[pb.Evidence(description=d, contribution=c) for d, c in estimate.evidence],
            missing_evidence=estimate.missing_evidence, model_version=f"deal/{version}")

    def ListDealSignals(self, request: pb.ListDealSignalsRequest,
                        context: grpc.ServicerContext) -> pb.ListDealSignalsResponse:
        limit = request.limit or DEFAULT_SIGNALS
        if not 1 <= limit <= MAX_SIGNALS:
            raise InvalidRequestError([("limit", f"must be between 1 and {MAX_SIGNALS} (0 means {DEFAULT_SIGNALS})")])
        data, deal, as_of = self._open_deal(request.deal_id)
        response = pb.ListDealSignalsResponse(model_version=RANKER_VERSION)
        for s in rank_signals(data, deal, as_of, limit):
            response.signals.add(kind=s.kind, topic=s.topic, value=s.value, time=_timestamp(s.ts),
                                 who=_person(data, deal, s.pid, as_of), why=s.why, relevance=s.relevance)
        return response

    def PredictBuyerProcess(self, request: pb.PredictBuyerProcessRequest,
                            context: grpc.ServicerContext) -> pb.PredictBuyerProcessResponse:
        violations: list[tuple[str, str]] = []
        for i, role in enumerate(request.profile.engaged_roles):
            if role not in DEAL_CONTACT_ROLES:
                violations.append((f"profile.engaged_roles[{i}]", f"must be one of {', '.join(DEAL_CONTACT_ROLES)}"))
        if request.profile.amount < 0:
            violations.append(("profile.amount", "must not be negative"))
        buyer = request.WhichOneof("buyer")
        if buyer is None:
            violations.append(("buyer", "set company_domain or cohort"))
        elif buyer == "company_domain":
            try:
                domain = normalize_domain(request.company_domain)
            except RecordError as exc:
                violations.append(("company_domain", exc.reason))
        elif not request.cohort.industry:
            violations.append(("cohort.industry", "is required"))
        if violations:
            raise InvalidRequestError(violations)
        version, model = self._buyer_model.get()
        if buyer == "company_domain":
            company = exports.company(self._store, domain)
            if company is None:
                raise NotFoundError(f"no company {domain!r} in the graph")
            cohort = {"industry": company["industry"], "size_band": company["size_band"]}
        else:
            cohort = {"industry": request.cohort.industry, "size_band": request.cohort.size_band}
        answer = model.predict({**cohort, "amount_band": amount_band(request.profile.amount),
                                "product": request.profile.product},
                               roll_up=buyer == "company_domain",
                               eb_engaged_early="economic_buyer" in request.profile.engaged_roles)
        start = request.start.seconds if request.HasField("start") else self._as_of()
        return pb.PredictBuyerProcessResponse(
            stages=[pb.StageForecast(stage=s.stage, days=pb.DurationQuantiles(p10=s.p10, p50=s.p50, p90=s.p90),
                                     stall_probability=s.stall_probability) for s in answer.stages],
            expected_close=_timestamp(start + int(answer.median_days_to_close * deals.DAY)),
            drivers=[pb.Driver(description=d.description, effect_days=d.effect_days,
                               effect_win_probability=d.effect_win_probability) for d in answer.drivers],
            cohort=pb.Cohort(industry=answer.cohort["industry"], size_band=answer.cohort["size_band"]),
            cohort_deals=answer.cohort_deals, cohort_tenants=answer.cohort_tenants,
            rolled_up=answer.rolled_up, model_version=f"buyer/{version}")


def _person(data: DealData, deal: Deal, pid: str, as_of: int) -> common_pb2.PersonView:
    """Who raised a signal. The signal is the tenant's own data, so the person is identified to it;
    the description comes from their job at the time."""
    if not pid:
        return common_pb2.PersonView()
    job = data.job_at(pid, as_of)
    level, function = (job.level, job.function) if job else ("", "")
    on_account = job is not None and job.cid == deal.cid
    return common_pb2.PersonView(
        pid=pid, identified=True, title_level=level, function=function,
        company_domain=job.cid if job else "", company_size_band=deal.size_band if on_account else "",
        company_industry=deal.industry if on_account else "",
        description=describe(level, function, deal.size_band if on_account else "", deal.industry if on_account else ""))
