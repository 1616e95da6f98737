"""`relgraph query ...`: a real gRPC client for every relgraph.v1 RPC. `--server` (or
RELGRAPH_SERVER) and `--key` (or RELGRAPH_KEY) say where and as whom; a failed call exits 1 and
prints the status code name and its details (field violations, retry delay)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from google.protobuf.message import Message

from core.errors import RecordError, RelgraphError
from graph.ingest import input_files, read_records
from relgraph.client import DEFAULT_SERVER, ApiError, Client
from relgraph.v1 import admin_pb2, ingest_pb2, pipeline_pb2
from relgraph.v1 import buyer_intelligence_pb2 as bi
from relgraph.v1 import warm_paths_pb2 as wp

_ROLES = {"member": admin_pb2.ROLE_MEMBER, "partner": admin_pb2.ROLE_PARTNER, "admin": admin_pb2.ROLE_ADMIN}
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
    p = kinds.add_parser("pipeline-health", help="the hygiene audit of your tenant's open deals")
    p.add_argument("--stale-days", type=int, default=0, help="days without an interaction that make a deal stale")
    p.add_argument("--sample", type=int, help="deals in the random sample (default 50)")
    common(p)
    p = kinds.add_parser("forecast", help="your tenant's bookings forecast beside the CRM's")
    p.add_argument("--period", choices=("quarter", "month"), default="quarter")
    p.add_argument("--periods", type=int, default=0, help="periods forecast (default 4)")
    p.add_argument(
        "--by", choices=("rep", "team"), help="also break the expected bookings down by deal owner, or by their team"
    )
    common(p)
    p = kinds.add_parser("proposals", help="CRM updates the evidence supports, for your reps to approve")
    p.add_argument("--rep", default="", help="only the deals this rep (email) owns")
    p.add_argument("--limit", type=int, default=0, help="most proposals (default 100)")
    common(p)
    p = kinds.add_parser("resolve", help="the pseudonyms of people your tenant knows")
    p.add_argument("--email", action="append", required=True, help="an email address (repeatable)")
    common(p)
    p = kinds.add_parser("ingest", help="stream files in the ingest format to the server, as your tenant's")
    p.add_argument("paths", nargs="+", help="files or folders; records may name one tenant at most (yours)")
    common(p)
    p = kinds.add_parser("erase", help="erase what your tenant holds about a person (admin keys)")
    p.add_argument("--email", required=True)
    common(p)
    p = kinds.add_parser("snapshot", help="the server's serving snapshot (admin keys)")
    common(p)
    p = kinds.add_parser("models", help="model versions of every kind, and which serve (admin keys)")
    common(p)
    p = kinds.add_parser("keys", help="your tenant's API keys: list, create or revoke (admin keys)")
    p.add_argument("action", choices=("list", "create", "revoke"))
    p.add_argument("--role", choices=tuple(_ROLES), help="create: the new key's role")
    p.add_argument("--scope", action="append", default=[], help="create: a partner scope (repeatable)")
    p.add_argument("--label", default="", help="create: a label for people")
    p.add_argument("--key-id", help="revoke: the key's id (its public part)")
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
        return client.find_warm_paths, request
    if args.rpc == "deal-stage":
        return client.estimate_deal_stage, bi.EstimateDealStageRequest(deal_id=args.deal)
    if args.rpc == "buyer-process":
        return client.predict_buyer_process, bi.PredictBuyerProcessRequest(
            company_domain=args.company,
            profile=bi.DealProfile(amount=args.amount, product=args.product, engaged_roles=args.engaged),
        )
    if args.rpc == "signals":
        return client.list_deal_signals, bi.ListDealSignalsRequest(deal_id=args.deal, limit=args.limit)
    if args.rpc == "pipeline-health":
        return client.get_pipeline_health, pipeline_pb2.GetPipelineHealthRequest(
            stale_days=args.stale_days, sample_size=args.sample
        )
    if args.rpc == "forecast":
        return client.forecast_bookings, pipeline_pb2.ForecastBookingsRequest(
            period=args.period, periods=args.periods, by_rep=args.by == "rep", by_team=args.by == "team"
        )
    if args.rpc == "proposals":
        return client.list_proposed_updates, pipeline_pb2.ListProposedUpdatesRequest(
            rep_email=args.rep, limit=args.limit
        )
    if args.rpc == "resolve":
        return client.resolve_people, wp.ResolvePeopleRequest(emails=args.email)
    if args.rpc == "ingest":
        return client.ingest_events, ingest_requests(args.paths)
    if args.rpc == "erase":
        return client.erase_subject, ingest_pb2.EraseSubjectRequest(email=args.email)
    if args.rpc == "snapshot":
        return client.get_snapshot_status, admin_pb2.GetSnapshotStatusRequest()
    if args.rpc == "models":
        return client.list_model_versions, admin_pb2.ListModelVersionsRequest()
    if args.action == "create":
        if args.role is None:
            raise UsageError("keys create needs --role")
        request = admin_pb2.CreateApiKeyRequest(role=_ROLES[args.role], scopes=args.scope, label=args.label)
        return client.create_api_key, request
    if args.action == "revoke":
        if not args.key_id:
            raise UsageError("keys revoke needs --key-id")
        return client.revoke_api_key, admin_pb2.RevokeApiKeyRequest(key_id=args.key_id)
    return client.list_api_keys, admin_pb2.ListApiKeysRequest()


class UsageError(Exception):
    """A request this command cannot send as asked: one line, exit 1, nothing sent."""


def ingest_requests(paths: list[str]) -> list[ingest_pb2.IngestEventsRequest]:
    """The records of files in the ingest format as one IngestEvents stream. A stream is its key's
    tenant's: records naming tenants are accepted only if they all name the same one (files
    holding several tenants' data must not land in one), and a field the gRPC records do not
    carry is refused here, with its file and line, rather than silently dropped."""
    requests, tenants = [], set()
    for path in input_files(paths):
        for line, record, default_kind in read_records(path):
            where = f"{path}:{line}"
            if isinstance(record, RecordError):
                raise UsageError(f"{where}: {record.reason}")
            record = dict(record)
            kind = record.pop("kind", None) or default_kind
            field = _RECORD_FIELDS.get(kind) if isinstance(kind, str) else None
            if field is None:
                raise UsageError(f"{where}: field 'kind' must be one of {', '.join(_RECORD_FIELDS)}")
            descriptor = field.message_type
            if tenant := record.pop("tenant", None):
                tenants.add(tenant)
            try:
                message = ParseDict(_for_message(record, descriptor), getattr(ingest_pb2, descriptor.name)())
            except ParseError as exc:
                raise UsageError(f"{where}: {exc}") from exc
            requests.append(ingest_pb2.IngestEventsRequest(**{field.name: message}))
    if len(tenants) > 1:
        raise UsageError(f"the records name {len(tenants)} tenants; a stream carries one tenant's (its key's)")
    return requests


# The record kinds of the ingest format, by their field in IngestEventsRequest's `record` oneof.
_RECORD_FIELDS = {f.name: f for f in ingest_pb2.IngestEventsRequest.DESCRIPTOR.oneofs_by_name["record"].fields}


def _for_message(record: dict[str, Any], descriptor: Any) -> dict[str, Any]:
    """An ingest-format record shaped for its gRPC message: times and numbers as the strings the
    messages carry them as, a CSV list ("a;b") as a list; empty values left out. A field the
    message lacks stays, for ParseDict to name it."""
    shaped: dict[str, Any] = {}
    for name, value in record.items():
        if value is None or value == "":
            continue
        field = descriptor.fields_by_name.get(name)
        if field is not None and field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated and isinstance(value, str):
                value = [item for item in value.split(";") if item]
            elif isinstance(value, int | float) and not isinstance(value, bool):
                value = str(value)
        elif field is not None and field.message_type is not None and isinstance(value, list):
            value = [_for_message(item, field.message_type) if isinstance(item, dict) else item for item in value]
        shaped[name] = value
    return shaped


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


def render_resolve(r: wp.ResolvePeopleResponse) -> str:
    lines = [f"{len(r.people)} known to your tenant"]
    lines += [f"  {p.email} -> {p.pid}" for p in r.people]
    return "\n".join(lines)


def render_ingest(r: ingest_pb2.IngestEventsResponse) -> str:
    lines = [
        f"read {r.records_read} records: {r.accepted} accepted, {r.rejected} rejected; created {r.nodes_created} "
        f"nodes and {r.relationships_created} relationships ({r.events_added} events added)"
    ]
    lines += [f"  record {x.index}: {x.reason}" for x in r.first_rejections]
    return "\n".join(lines)


def render_erase(r: ingest_pb2.EraseSubjectResponse) -> str:
    if not r.found:
        return "your tenant holds nothing about this person"
    return f"erased: {r.nodes_deleted} nodes and {r.relationships_deleted} relationships deleted"


def render_snapshot(r: admin_pb2.GetSnapshotStatusResponse) -> str:
    return (
        f"snapshot of {r.people} people and {r.relationships} relationships, {r.bytes / 2**20:.1f} MiB; "
        f"refreshed {r.age_seconds:.1f} s ago; Neo4j {'reachable' if r.store_reachable else 'UNREACHABLE'}"
    )


def render_models(r: admin_pb2.ListModelVersionsResponse) -> str:
    lines = [f"{len(r.versions)} model version(s)"]
    lines += [
        f"  {v.kind:<6} {v.version:<32} {_day(v.created_at)}{'  serving' if v.promoted else ''}" for v in r.versions
    ]
    return "\n".join(lines)


def render_pipeline_health(r: pipeline_pb2.GetPipelineHealthResponse) -> str:
    verdict = "below" if r.below_threshold else "at or above"
    lines = [
        f"CRM hygiene {r.score:.0%} of {r.open_deals} open deals clean: {verdict} the {r.threshold:.0%} threshold "
        "(under it, automating on the CRM does worse than a coin flip)"
        + (f"; stage estimates from {r.model_version}" if r.model_version else ""),
    ]
    lines += [f"  {c.pass_share:6.1%}  {c.check:<22} {c.description} ({c.deals} deals)" for c in r.checks if c.deals]
    lines += [f"  not audited: {line}" for line in r.not_audited]
    flagged = [d for d in r.sample if d.issues]
    lines.append(f"sample of {len(r.sample)} deals, {len(flagged)} with findings:")
    for d in flagged:
        estimate = f", behaviour {d.estimated_stage}" if d.estimated_stage else ""
        lines.append(f"  {d.deal_id} (CRM {d.crm_stage or 'no stage'}{estimate}): {'; '.join(d.issues)}")
    return "\n".join(lines)


def render_forecast(r: pipeline_pb2.ForecastBookingsResponse) -> str:
    lines = [
        f"expected bookings of {r.open_deals} open deals ({r.model_version}), beside the CRM-weighted pipeline "
        "and the commit",
        f"{'period':<9} {'relgraph':>10} {'p10':>10} {'p50':>10} {'p90':>10} {'weighted':>10} {'commit':>10}",
    ]
    for p in r.periods:
        values = (p.expected, p.p10, p.p50, p.p90, p.weighted_pipeline, p.commit)
        lines.append(f"{p.label:<9} " + " ".join(f"{v:>10,.0f}" for v in values))
    for rep in sorted(r.by_rep, key=lambda b: -sum(b.expected)):
        lines.append(f"  rep {rep.rep_pid[:12]}… " + " ".join(f"{v:>10,.0f}" for v in rep.expected))
    for team in sorted(r.by_team, key=lambda b: -sum(b.expected)):
        name = f"team {team.team or '(none)'} ({team.reps} reps)"
        lines.append(f"  {name:<40} " + " ".join(f"{v:>10,.0f}" for v in team.expected))
    return "\n".join(lines)


def render_proposed_updates(r: pipeline_pb2.ListProposedUpdatesResponse) -> str:
    lines = [f"{len(r.updates)} proposed CRM updates over {r.open_deals} open deals ({r.model_version})"]
    for u in r.updates:
        current = f"{u.current_value or '(empty)'} -> " if u.field in ("stage", "close_date") else ""
        decided = f" [{u.decision}ed]" if u.decision else ""
        lines.append(
            f"  {u.proposal_id} {u.deal_id} {u.field}: {current}{u.proposed_value} (confidence {u.confidence:.0%})"
            f"{decided}; " + "; ".join(u.evidence)
        )
    for a in r.acceptance:
        lines.append(f"accepted {a.accepted_share:.0%} of {a.decided} decided {a.field} proposals")
    return "\n".join(lines)


def _key_line(k: admin_pb2.ApiKeyInfo) -> str:
    role = admin_pb2.Role.Name(k.role).removeprefix("ROLE_").lower()
    scopes = f" scopes {', '.join(k.scopes)}" if k.scopes else ""
    return f"  {k.key_id}  {role:<7} {k.label or '-'}{scopes}  created {_day(k.created_at)}" + (
        "  REVOKED" if k.revoked else ""
    )


def render_keys(r: Message) -> str:
    if isinstance(r, admin_pb2.CreateApiKeyResponse):
        return f"{r.key}\n(shown once: keep it now)\n{_key_line(r.info)}"
    if isinstance(r, admin_pb2.RevokeApiKeyResponse):
        return "revoked" if r.revoked else "no such active key of your tenant"
    keys = cast(admin_pb2.ListApiKeysResponse, r).keys
    return "\n".join([f"{len(keys)} key(s)", *map(_key_line, keys)])


_RENDER: dict[str, Callable[[Any], str]] = {
    "warm-paths": render_warm_paths,
    "deal-stage": render_deal_stage,
    "buyer-process": render_buyer_process,
    "signals": render_signals,
    "pipeline-health": render_pipeline_health,
    "forecast": render_forecast,
    "proposals": render_proposed_updates,
    "resolve": render_resolve,
    "ingest": render_ingest,
    "erase": render_erase,
    "snapshot": render_snapshot,
    "models": render_models,
    "keys": render_keys,
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
        try:
            method, request = _request(args, client)
        except (UsageError, RelgraphError) as error:
            print(f"relgraph: error: {error}", file=sys.stderr)
            return 1
        try:
            response = method(request, timeout=args.timeout)
        except ApiError as error:
            print(error, file=sys.stderr)
            return 1
    if args.json:
        print(response_json(response))
    else:
        print(_RENDER[args.rpc](response))
    return 0
