"""PipelineService: the tenant's pipeline as a whole (a team's, for a member key scoped to one),
answered from the serving state (the deal index and the promoted deal model), never from Neo4j on
the request path."""

from __future__ import annotations

import grpc
from google.protobuf import timestamp_pb2

from core.clock import Clock
from core.errors import InvalidRequestError, NoModelError, RecordError
from gnn.deal_scoring import DealScorer
from gnn.forecast import PERIOD_KINDS, Forecast, forecast_open_deals
from gnn.pipeline_health import (
    DEFAULT_SAMPLE,
    DEFAULT_STALE_DAYS,
    HYGIENE_THRESHOLD,
    HygieneAudit,
    audit_open_deals,
)
from gnn.proposals import Proposal, acceptance_rates, proposals_for
from graph.deal_bundle import DealBundle
from graph.pseudonymize import Pseudonymizer
from graph.reader import ProposalDecision
from relgraph.v1 import pipeline_pb2 as pb
from relgraph.v1 import pipeline_pb2_grpc
from server.auth import current_auth
from server.state import ServingState, ServingStateHolder
from server.teams import owner_teams, visible_owners

MAX_STALE_DAYS = 365
MAX_SAMPLE = 200
MAX_PERIODS = 8
MAX_PROPOSALS = 1000
DEFAULT_PROPOSALS = 100
DEFAULT_PERIODS = 4


class PipelineService(pipeline_pb2_grpc.PipelineServiceServicer):  # type: ignore[misc]
    def __init__(self, holder: ServingStateHolder, clock: Clock, pseudo: Pseudonymizer) -> None:
        self._holder = holder
        self._clock = clock
        self._pseudo = pseudo

    def _tenant_deals(self) -> tuple[ServingState, DealBundle | None, frozenset[str] | None, int]:
        """The serving state, the caller's tenant's deals in it (None when it has none), the owners
        whose open deals the caller sees (its team's members for a key scoped to a team; None: all)
        and the time."""
        state, auth = self._holder.current, current_auth()
        owners = visible_owners(state.snapshot, auth)
        return state, state.deals.tenant_deals(auth.tenant), owners, self._clock.now()

    def GetPipelineHealth(
        self, request: pb.GetPipelineHealthRequest, context: grpc.ServicerContext
    ) -> pb.GetPipelineHealthResponse:
        violations = []
        if not 0 <= request.stale_days <= MAX_STALE_DAYS:
            violations.append(("stale_days", f"must be 1-{MAX_STALE_DAYS} (0 means {DEFAULT_STALE_DAYS})"))
        if request.HasField("sample_size") and not 0 <= request.sample_size <= MAX_SAMPLE:
            violations.append(("sample_size", f"must be 0-{MAX_SAMPLE}"))
        if violations:
            raise InvalidRequestError(violations)
        state, data, owners, t = self._tenant_deals()
        try:
            scorer: DealScorer | None = state.deal
        except NoModelError:
            scorer = None  # the audit still runs, without the stage check, and says so
        stale_days = request.stale_days or DEFAULT_STALE_DAYS
        sample = request.sample_size if request.HasField("sample_size") else DEFAULT_SAMPLE
        audit = audit_open_deals(data, scorer, t, stale_days=stale_days, sample=sample, owners=owners)
        return health_response(audit, f"deal/{scorer.version}" if scorer else "")

    def ForecastBookings(
        self, request: pb.ForecastBookingsRequest, context: grpc.ServicerContext
    ) -> pb.ForecastBookingsResponse:
        violations = []
        if request.period not in ("", *PERIOD_KINDS):
            violations.append(("period", f"must be one of {', '.join(PERIOD_KINDS)} (empty means quarter)"))
        if not 0 <= request.periods <= MAX_PERIODS:
            violations.append(("periods", f"must be 1-{MAX_PERIODS} (0 means {DEFAULT_PERIODS})"))
        if violations:
            raise InvalidRequestError(violations)
        state, data, owners, t = self._tenant_deals()
        scorer = state.deal  # FAILED_PRECONDITION without a promoted deal model
        period, periods = request.period or "quarter", request.periods or DEFAULT_PERIODS
        result = forecast_open_deals(data, scorer, t, period, periods, owners)
        teams = owner_teams(state.snapshot, current_auth().tenant, list(result.by_owner)) if request.by_team else None
        return forecast_response(result, f"deal/{scorer.version}", request.by_rep, teams)

    def ListProposedUpdates(
        self, request: pb.ListProposedUpdatesRequest, context: grpc.ServicerContext
    ) -> pb.ListProposedUpdatesResponse:
        violations: list[tuple[str, str]] = []
        rep = None
        if request.rep_email:
            try:
                rep = self._pseudo.pid(request.rep_email)
            except RecordError as exc:
                violations.append(("rep_email", exc.reason))
        if not 0 <= request.limit <= MAX_PROPOSALS:
            violations.append(("limit", f"must be 1-{MAX_PROPOSALS} (0 means {DEFAULT_PROPOSALS})"))
        if violations:
            raise InvalidRequestError(violations)
        state, data, team, t = self._tenant_deals()
        scorer = state.deal  # FAILED_PRECONDITION without a promoted deal model
        owners = team
        if rep is not None:  # one rep's deals, within the team's
            owners = frozenset({rep}) & team if team is not None else frozenset({rep})
        found, live = proposals_for(data, scorer, t, owners)
        # Acceptance, as the operator's queue counts it: the tenant's decisions, or its team's.
        decided = list(state.deals.decisions.get(current_auth().tenant, {}).values())
        if team is not None:
            owned = {deal.deal_id for deal in data.deals if deal.owner in team} if data else set()
            decided = [d for d in decided if d.deal_id in owned]
        return proposals_response(found[: request.limit or DEFAULT_PROPOSALS], live, f"deal/{scorer.version}", decided)


def proposals_response(
    found: list[Proposal], open_deals: int, model_version: str, decided: list[ProposalDecision]
) -> pb.ListProposedUpdatesResponse:
    decision = {d.proposal_id: d.decision for d in decided}
    rates = acceptance_rates([(d.field, d.decision) for d in decided])
    return pb.ListProposedUpdatesResponse(
        updates=[
            pb.ProposedUpdate(
                proposal_id=p.proposal_id,
                deal_id=p.deal_id,
                rep_pid=p.owner,
                field=p.field,
                current_value=p.current,
                proposed_value=p.proposed,
                evidence=p.evidence,
                confidence=p.confidence,
                decision=decision.get(p.proposal_id, ""),
            )
            for p in found
        ],
        open_deals=open_deals,
        model_version=model_version,
        acceptance=[
            pb.FieldAcceptance(field=field, decided=int(rate["decided"]), accepted_share=rate["accepted"])
            for field, rate in rates.items()
        ],
    )


def forecast_response(
    result: Forecast, model_version: str, by_rep: bool, teams: dict[str, str] | None = None
) -> pb.ForecastBookingsResponse:
    """The forecast's message; `teams` (owner -> team) rolls it up by team when given."""
    return pb.ForecastBookingsResponse(
        periods=[
            pb.PeriodBookings(
                label=row.period.label,
                start=timestamp_pb2.Timestamp(seconds=row.period.start),
                end=timestamp_pb2.Timestamp(seconds=row.period.end),
                expected=row.expected,
                p10=row.p10,
                p50=row.p50,
                p90=row.p90,
                weighted_pipeline=row.weighted_pipeline,
                commit=row.commit,
            )
            for row in result.periods
        ],
        by_rep=[pb.RepBookings(rep_pid=owner, expected=e) for owner, e in result.by_owner.items()] if by_rep else [],
        by_team=[
            pb.TeamBookings(team=team, expected=expected, reps=reps)
            for team, (expected, reps) in result.by_team(teams).items()
        ]
        if teams is not None
        else [],
        open_deals=result.open_deals,
        model_version=model_version,
    )


def health_response(audit: HygieneAudit, model_version: str) -> pb.GetPipelineHealthResponse:
    return pb.GetPipelineHealthResponse(
        open_deals=audit.open_deals,
        score=audit.score,
        threshold=HYGIENE_THRESHOLD,
        below_threshold=audit.below_threshold,
        checks=[
            pb.HygieneCheck(check=c.check.code, description=c.check.description, deals=c.deals, pass_share=c.pass_share)
            for c in audit.checks
        ],
        sample=[
            pb.DealHygiene(deal_id=f.deal_id, crm_stage=f.crm_stage, estimated_stage=f.estimated_stage, issues=f.issues)
            for f in audit.sample
        ],
        not_audited=audit.not_audited,
        model_version=model_version,
    )
