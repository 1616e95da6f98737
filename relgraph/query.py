"""`relgraph query ...`: a real gRPC client for every relgraph.v1 read. `--server` (or
RELGRAPH_SERVER) and `--key` (or RELGRAPH_KEY) say where and as whom; a failed call exits 1 and
prints the status code name and its details (field violations, retry delay)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from relgraph.client import DEFAULT_SERVER, Client
from relgraph.v1 import buyer_intelligence_pb2 as bi
from relgraph.v1 import warm_paths_pb2 as wp

_LEVELS = {
    "ic": wp.TITLE_LEVEL_IC,
    "manager": wp.TITLE_LEVEL_MANAGER,
    "director": wp.TITLE_LEVEL_DIRECTOR,
    "vp": wp.TITLE_LEVEL_VP,
    "c_level": wp.TITLE_LEVEL_C_LEVEL,
}


def add_query_parser(sub: Any, run: Any) -> None:
    query = sub.add_parser("query", help="call the running gRPC server")
    kinds = query.add_subparsers(dest="rpc", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--server", default=os.environ.get("RELGRAPH_SERVER", DEFAULT_SERVER))
        p.add_argument("--key", default=os.environ.get("RELGRAPH_KEY"), help="API key (or RELGRAPH_KEY)")
        p.add_argument("--timeout", type=float, default=30.0, help="deadline in seconds")
        p.add_argument("--json", action="store_true")
        p.set_defaults(run=run)

    p = kinds.add_parser("warm-paths", help="warm-introduction paths to a person or a company")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-email")
    target.add_argument("--target-company", help="company web domain")
    p.add_argument(
        "--role",
        choices=("economic_buyer", *_LEVELS),
        help="with --target-company: the economic buyer, or this seniority and above",
    )
    p.add_argument("--function", action="append", default=[], help="with --target-company: keep these functions")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--rep", help="only paths starting at this rep (email)")
    source.add_argument("--team", help="only paths starting in this team")
    p.add_argument("--k", type=int, help="number of paths (default 10)")
    p.add_argument("--max-hops", type=int, help="1-3 (default 3)")
    p.add_argument("--cross-tenant", action="store_true", help="also use connections known only to other tenants")
    common(p)

    p = kinds.add_parser("deal-stage", help="where a deal really stands")
    p.add_argument("--deal", required=True)
    common(p)
    p = kinds.add_parser("buyer-process", help="how buyers like this one buy")
    p.add_argument("--company", required=True, help="the buyer's web domain")
    p.add_argument("--amount", type=float, default=0.0, help="deal amount (narrows the cohort to its amount band)")
    p.add_argument("--product", default="", help="product code (narrows the cohort)")
    p.add_argument(
        "--engaged",
        action="append",
        default=[],
        help="stakeholder role already engaged, e.g. economic_buyer (repeatable)",
    )
    common(p)
    p = kinds.add_parser("signals", help="signals that matter to a deal")
    p.add_argument("--deal", required=True)
    p.add_argument("--limit", type=int, default=20)
    common(p)


def _request(args: argparse.Namespace, client: Client) -> tuple[Any, Any]:
    if args.rpc == "warm-paths":
        request = wp.FindWarmPathsRequest(k=args.k, max_hops=args.max_hops, allow_cross_tenant=args.cross_tenant)
        if args.target_email:
            request.target_email = args.target_email
        else:
            request.target_company.domain = args.target_company
            role = request.target_company.role
            role.functions.extend(args.function)
            if args.role == "economic_buyer":
                role.economic_buyer = True
            elif args.role:
                role.min_title_level = _LEVELS[args.role]
        if args.rep:
            request.source.rep_email = args.rep
        elif args.team:
            request.source.team = args.team
        return client.warm_paths.FindWarmPaths, request
    if args.rpc == "deal-stage":
        return client.buyer_intelligence.EstimateDealStage, bi.EstimateDealStageRequest(deal_id=args.deal)
    if args.rpc == "buyer-process":
        return client.buyer_intelligence.PredictBuyerProcess, bi.PredictBuyerProcessRequest(
            company_domain=args.company,
            profile=bi.DealProfile(amount=args.amount, product=args.product, engaged_roles=args.engaged),
        )
    return client.buyer_intelligence.ListDealSignals, bi.ListDealSignalsRequest(deal_id=args.deal, limit=args.limit)


def describe_error(error: grpc.RpcError) -> str:
    lines = [f"{error.code().name}: {error.details()}"]
    status = rpc_status.from_call(error)
    for detail in status.details if status else []:
        bad_request, retry = error_details_pb2.BadRequest(), error_details_pb2.RetryInfo()
        if detail.Unpack(bad_request):
            lines += [f"  field {v.field}: {v.description}" for v in bad_request.field_violations]
        elif detail.Unpack(retry):
            lines.append(f"  retry after {retry.retry_delay.ToTimedelta().total_seconds():.3f} s")
    return "\n".join(lines)


def _person(view: wp.PersonView) -> str:  # type: ignore[name-defined]
    who = f"{view.pid[:12]}…" if view.identified else "(masked)"
    mark = " [your member]" if view.own_member else ""
    where = f" @ {view.company_domain}" if view.company_domain else ""
    return f"{who}{mark} {view.description}{where}"


def render_warm_paths(response: wp.FindWarmPathsResponse) -> str:
    lines = [
        f"{len(response.paths)} path(s) to {response.targets} target(s); strengths: {response.strength_source}; "
        f"snapshot age {response.snapshot_age_seconds:.1f} s"
    ]
    for i, path in enumerate(response.paths, start=1):
        lines.append(f"{i:>2}. {_strength(path.score, path.band, path.strength)}  from {_person(path.source)}")
        for hop in path.hops:
            e = hop.evidence
            if e.observed_by_requester:
                last = datetime.fromtimestamp(e.last_interaction.seconds, UTC).date()
                evidence = f"{e.interaction_count} interactions, last {last}, two-way {e.two_way_share:.0%}" + (
                    f", shared employers {', '.join(e.shared_employers)}"
                    if e.shared_employers
                    else f", {e.shared_employer_count} shared employer(s)"
                    if e.shared_employer_count
                    else ""
                )
            else:
                evidence = "known through the network (evidence withheld)"
            lines.append(f"      → {_person(hop.person)}  [{_strength(e.score, e.band, e.strength)}: {evidence}]")
    return "\n".join(lines)


def _strength(score: int, band: int, strength: float) -> str:
    """ "strong 87/100 (0.0051)": the score and band a rep reads, then the strength it comes from."""
    if band not in wp.StrengthBand.values() or not band:  # not scored, or a band newer than this client
        return f"strength {strength:.3g}"
    return f"{wp.StrengthBand.Name(band).removeprefix('STRENGTH_BAND_').lower()} {score}/100 ({strength:.2g})"


def _day(ts: Any) -> str:
    return str(datetime.fromtimestamp(ts.seconds, UTC).date())


def render_deal_stage(r: bi.EstimateDealStageResponse) -> str:
    stages = ", ".join(f"{s.stage} {s.probability:.0%}" for s in r.stages)
    lines = [
        f"estimated stage: {r.estimated_stage} ({stages}); CRM says {r.crm_stage or '(nothing)'}"
        + (f" -> suggested update: {r.suggested_stage} (for the rep to approve)" if r.suggested_stage else ""),
        f"win probability {r.win_probability:.0%}; expected close {_day(r.expected_close)} "
        f"(p10 {_day(r.close_p10)}, p90 {_day(r.close_p90)}); model {r.model_version}",
    ]
    lines += [f"  {e.contribution:+.3f}  {e.description}" for e in r.evidence]
    lines += [f"  missing: {m}" for m in r.missing_evidence]
    return "\n".join(lines)


def render_buyer_process(r: bi.PredictBuyerProcessResponse) -> str:
    cohort = ", ".join(x for x in (r.cohort.industry, r.cohort.size_band) if x) or "the whole network"
    lines = [
        f"cohort {cohort}: {r.cohort_deals} closed deals from {r.cohort_tenants} tenants"
        + (" (rolled up: the narrower cohort was too small)" if r.rolled_up else "")
        + f"; expected close {_day(r.expected_close)}; model {r.model_version}"
    ]
    lines += [
        f"  {s.stage:<12} p10 {s.days.p10:5.1f}  p50 {s.days.p50:5.1f}  p90 {s.days.p90:5.1f} days; "
        f"stalls {s.stall_probability:.0%}"
        for s in r.stages
    ]
    lines += [
        f"  driver: {d.description}: {d.effect_days:+.0f} days, {d.effect_win_probability:+.0%} win probability"
        for d in r.drivers
    ]
    return "\n".join(lines)


def render_signals(r: bi.ListDealSignalsResponse) -> str:
    lines = [f"{len(r.signals)} signal(s), ranked by {r.model_version}"]
    lines += [
        f"  {s.relevance:.2f}  {_day(s.time)}  {s.kind}/{s.topic}={s.value}  "
        f"{s.who.description if s.who.description != 'Person at a company' else ''}: {s.why}"
        for s in r.signals
    ]
    return "\n".join(lines)


_RENDER = {
    "warm-paths": render_warm_paths,
    "deal-stage": render_deal_stage,
    "buyer-process": render_buyer_process,
    "signals": render_signals,
}


def response_json(response: Message) -> str:
    """A response as JSON with every field: empty lists, zeros and empty strings included (protobuf
    leaves out default values) and an unset message as null, names as in the .proto, 64-bit
    integers as numbers. Scripts need no special cases."""
    as_dict = MessageToDict(
        response,
        always_print_fields_with_no_presence=True,
        preserving_proto_field_name=True,
        unquote_int64_if_possible=True,
    )
    return json.dumps(_with_unset_messages(response, as_dict), indent=2)


def _with_unset_messages(message: Message, data: dict[str, Any]) -> dict[str, Any]:
    for field in message.DESCRIPTOR.fields:
        kind = field.message_type
        if kind is None or kind.GetOptions().map_entry:
            continue
        well_known = kind.full_name.startswith("google.protobuf.")  # rendered as a value (e.g. a time)
        if field.is_repeated:
            if not well_known:
                for item, item_data in zip(getattr(message, field.name), data[field.name]):
                    _with_unset_messages(item, item_data)
        elif not message.HasField(field.name):
            data[field.name] = None
        elif not well_known:
            _with_unset_messages(getattr(message, field.name), data[field.name])
    return data


def run_query(args: argparse.Namespace) -> int:
    if not args.key:
        print("relgraph: error: an API key is needed: --key or RELGRAPH_KEY", file=sys.stderr)
        return 1
    with Client(args.server, args.key) as client:
        method, request = _request(args, client)
        try:
            response = client.call(method, request, timeout=args.timeout)
        except grpc.RpcError as error:
            print(describe_error(error), file=sys.stderr)
            return 1
    if args.json:
        print(response_json(response))
    else:
        print(_RENDER[args.rpc](response))
    return 0
