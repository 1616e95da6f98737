"""BuyerIntelligenceService: deal-stage estimates and buyer-process predictions from the serving
state's deal and buyer models, and deal signals ranked by `gnn.signals`. A deal and what surrounds
it come from the serving state's deal index, as the deal's own tenant sees them (the tenant comes
from the API key), never from a Neo4j read per request; they are scored with the same code the
offline evaluation uses, at the serving clock's time. relgraph only suggests CRM updates; it never
writes to a CRM."""

from __future__ import annotations

import math

import grpc
from google.protobuf import timestamp_pb2

from core.clock import Clock
from core.errors import InvalidRequestError, NotFoundError, RecordError
from core.vocabulary import DEAL_CONTACT_ROLES, MAX_AMOUNT, MAX_TIME, MIN_TIME, SIZE_BANDS, is_code, is_record_id
from gnn.buyer_process import CohortMinimum, amount_band
from gnn.deals import DAY
from gnn.signals import RANKER_VERSION
from graph.deal_bundle import Deal, DealBundle
from graph.pseudonymize import normalize_domain
from relgraph.v1 import buyer_intelligence_pb2 as pb
from relgraph.v1 import buyer_intelligence_pb2_grpc
from server.auth import current_auth
from server.deal_answers import MAX_SIGNALS, signal_messages
from server.state import ServingState, ServingStateHolder
from server.teams import visible_owners

DEFAULT_SIGNALS = 20


def _timestamp(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=int(seconds))


class BuyerIntelligenceService(buyer_intelligence_pb2_grpc.BuyerIntelligenceServiceServicer):  # type: ignore[misc]
    def __init__(self, holder: ServingStateHolder, clock: Clock, minimum: CohortMinimum) -> None:
        self._holder = holder
        self._clock = clock  # answers are computed at its time
        self._minimum = minimum

    def _open_deal(self, state: ServingState, deal_id: str) -> tuple[DealBundle, Deal, int]:
        """The requesting tenant's deal with what surrounds it, and the time to answer at."""
        _check_deal_id(deal_id)
        auth = current_auth()
        found = state.deals.find(auth.tenant, deal_id)
        owners = visible_owners(state.snapshot, auth)
        if found is None or (owners is not None and found[1].owner not in owners):  # a team key: its team's only
            raise NotFoundError("no such deal in your organisation's data")
        data, deal = found
        return data, deal, self._clock.now()

    def EstimateDealStage(
        self, request: pb.EstimateDealStageRequest, context: grpc.ServicerContext
    ) -> pb.EstimateDealStageResponse:
        _check_deal_id(request.deal_id)
        state = self._holder.current
        scorer = state.deal
        data, deal, as_of = self._open_deal(state, request.deal_id)
        if 0 <= deal.closed <= as_of:
            raise InvalidRequestError(
                [("deal_id", f"the deal is closed ({deal.outcome}); estimates are for open deals")]
            )
        # The refresh loop's estimate; computed now only for a deal it found closed (reopened since).
        estimate = state.answers.estimates.get((deal.tenant, deal.deal_id)) or scorer.estimate(data, deal, as_of)
        # Also when the CRM records no stage; never without a stage estimate (a model without a stage head).
        disagrees = bool(estimate.estimated_stage) and estimate.crm_stage != estimate.estimated_stage
        return pb.EstimateDealStageResponse(
            stages=[pb.StageProbability(stage=s, probability=p) for s, p in estimate.stages.items()],
            estimated_stage=estimate.estimated_stage,
            win_probability=estimate.win_probability,
            expected_close=_timestamp(estimate.close_p50),
            close_p10=_timestamp(estimate.close_p10),
            close_p90=_timestamp(estimate.close_p90),
            crm_stage=estimate.crm_stage,
            disagrees_with_crm=disagrees,
            suggested_stage=estimate.estimated_stage if disagrees else "",
            evidence=[pb.Evidence(description=d, contribution=c) for d, c in estimate.evidence],
            missing_evidence=estimate.missing_evidence,
            model_version=f"deal/{scorer.version}",
        )

    def ListDealSignals(
        self, request: pb.ListDealSignalsRequest, context: grpc.ServicerContext
    ) -> pb.ListDealSignalsResponse:
        limit = request.limit or DEFAULT_SIGNALS
        if not 1 <= limit <= MAX_SIGNALS:
            raise InvalidRequestError([("limit", f"must be between 1 and {MAX_SIGNALS} (0 means {DEFAULT_SIGNALS})")])
        state = self._holder.current
        data, deal, as_of = self._open_deal(state, request.deal_id)
        # The refresh loop's ranking, for an open deal; a closed one's is ranked now.
        signals = state.answers.signals.get((deal.tenant, deal.deal_id))
        if signals is None:
            signals = signal_messages(data, deal, as_of, limit)
        return pb.ListDealSignalsResponse(signals=signals[:limit], model_version=RANKER_VERSION)

    def PredictBuyerProcess(
        self, request: pb.PredictBuyerProcessRequest, context: grpc.ServicerContext
    ) -> pb.PredictBuyerProcessResponse:
        violations = _profile_violations(request)
        buyer = request.WhichOneof("buyer")
        if buyer is None:
            violations.append(("buyer", "set company_domain or cohort"))
        elif buyer == "company_domain":
            try:
                domain = normalize_domain(request.company_domain)
            except RecordError as exc:
                violations.append(("company_domain", exc.reason))
        else:
            if not is_code(request.cohort.industry):
                violations.append(("cohort.industry", "must be an industry code"))
            if request.cohort.size_band not in ("", *SIZE_BANDS):
                violations.append(("cohort.size_band", f"must be empty or one of {', '.join(SIZE_BANDS)}"))
        if violations:
            raise InvalidRequestError(violations)
        state = self._holder.current
        model = state.buyer
        if buyer == "company_domain":
            # Only a company the tenant's own records name: any other is answered like an unknown one.
            if not state.deals.names_company(current_auth().tenant, domain):
                raise NotFoundError("no such company in your organisation's data (name a cohort instead)")
            companies = state.snapshot.companies
            at = companies.index.get(domain)
            cohort = {
                "industry": companies.industry[at] if at is not None else "",
                "size_band": companies.size_band[at] if at is not None else "",
            }
        else:
            cohort = {"industry": request.cohort.industry, "size_band": request.cohort.size_band}
        answer = model.predict(
            {**cohort, "amount_band": amount_band(request.profile.amount), "product": request.profile.product},
            minimum=self._minimum,
            roll_up=buyer == "company_domain",
            eb_engaged_early="economic_buyer" in request.profile.engaged_roles,
        )
        start = request.start.seconds if request.HasField("start") else self._clock.now()
        return pb.PredictBuyerProcessResponse(
            stages=[
                pb.StageForecast(
                    stage=s.stage,
                    days=pb.DurationQuantiles(p10=s.p10, p50=s.p50, p90=s.p90),
                    stall_probability=s.stall_probability,
                )
                for s in answer.stages
            ],
            expected_close=_timestamp(start + int(answer.median_days_to_close * DAY)),
            drivers=[
                pb.Driver(
                    description=d.description,
                    effect_days=d.effect_days,
                    effect_win_probability=d.effect_win_probability,
                )
                for d in answer.drivers
            ],
            cohort=pb.Cohort(industry=answer.cohort["industry"], size_band=answer.cohort["size_band"]),
            cohort_deals=answer.cohort_deals,
            cohort_tenants=answer.cohort_tenants,
            rolled_up=answer.rolled_up,
            model_version=f"buyer/{model.version}",
        )


def _check_deal_id(deal_id: str) -> None:
    if not is_record_id(deal_id):
        raise InvalidRequestError([("deal_id", "must be a CRM deal id ([A-Za-z0-9][A-Za-z0-9_.:-], at most 128)")])


def _profile_violations(request: pb.PredictBuyerProcessRequest) -> list[tuple[str, str]]:
    profile = request.profile
    violations = [
        (f"profile.engaged_roles[{i}]", f"must be one of {', '.join(DEAL_CONTACT_ROLES)}")
        for i, role in enumerate(profile.engaged_roles)
        if role not in DEAL_CONTACT_ROLES
    ]
    if len(profile.engaged_roles) > len(DEAL_CONTACT_ROLES):
        violations.append(("profile.engaged_roles", f"at most {len(DEAL_CONTACT_ROLES)} roles"))
    if not (math.isfinite(profile.amount) and 0 <= profile.amount <= MAX_AMOUNT):
        violations.append(("profile.amount", f"must be a number between 0 and {MAX_AMOUNT:g}"))
    if profile.product and not is_code(profile.product):
        violations.append(("profile.product", "must be a product code"))
    if request.HasField("start") and not MIN_TIME <= request.start.seconds < MAX_TIME:
        violations.append(("start", "must lie between 1970-01-01 and 2100-01-01"))
    return violations
