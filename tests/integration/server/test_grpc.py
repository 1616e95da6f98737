"""The gRPC service on a real port over a real channel, backed by the real Neo4j."""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from core.config import Config
from graph.neo4j_server import ManagedNeo4j
from graph.pseudonymize import Pseudonymizer
from graph.store import GraphStore, Query
from graph.tenancy import set_sharing
from relgraph.client import ApiError, Client
from relgraph.v1 import admin_pb2, buyer_intelligence_pb2, ingest_pb2, warm_paths_pb2
from tests.integration.server.conftest import Served, assert_same_answer

pytestmark = pytest.mark.neo4j


def _emails(network: Path, name: str, field: str) -> list[str]:
    return [json.loads(line)[field] for line in (network / "ingest" / f"{name}.jsonl").read_text().splitlines()]


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value.code()  # type: ignore[no-any-return]


def _violations(error: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    fields = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
    return fields


def test_health_and_reflection_answer_without_a_key(served: Served) -> None:
    channel = grpc.insecure_channel(served.address)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "relgraph.v1.WarmPathsService"):
        assert (
            health.Check(health_pb2.HealthCheckRequest(service=service)).status
            == health_pb2.HealthCheckResponse.SERVING
        )
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in replies[0].list_services_response.service}
    assert {
        "relgraph.v1.WarmPathsService",
        "relgraph.v1.BuyerIntelligenceService",
        "relgraph.v1.IngestService",
        "relgraph.v1.AdminService",
        "grpc.health.v1.Health",
    } <= names


def test_auth_outcomes_for_each_role(served: Served) -> None:
    target = _emails(served.network, "deal_contacts", "email")[0]
    request = warm_paths_pb2.FindWarmPathsRequest(target_email=target)
    channel = grpc.insecure_channel(served.address)
    from relgraph.v1 import warm_paths_pb2_grpc

    anonymous = warm_paths_pb2_grpc.WarmPathsServiceStub(channel)
    assert _code(lambda: anonymous.FindWarmPaths(request)) == grpc.StatusCode.UNAUTHENTICATED
    with served.client("rgk_0000_nope") as bad:
        assert _code(lambda: bad.call(bad.warm_paths.FindWarmPaths, request)) == grpc.StatusCode.UNAUTHENTICATED
    with served.client("member_a") as member:
        member.call(member.warm_paths.FindWarmPaths, request)
        assert (
            _code(
                lambda: member.call(
                    member.buyer_intelligence.EstimateDealStage,
                    buyer_intelligence_pb2.EstimateDealStageRequest(deal_id="D0000001"),
                )
            )
            == grpc.StatusCode.FAILED_PRECONDITION
        )
        assert (
            _code(
                lambda: member.call(
                    member.admin.CreateApiKey, admin_pb2.CreateApiKeyRequest(role=admin_pb2.ROLE_MEMBER)
                )
            )
            == grpc.StatusCode.PERMISSION_DENIED
        )
        status = member.call(member.admin.GetSnapshotStatus, admin_pb2.GetSnapshotStatusRequest())
        assert status.relationships > 0 and status.bytes / status.relationships <= 32
    with served.client("partner_a") as partner:
        assert (
            _code(
                lambda: partner.call(
                    partner.buyer_intelligence.ListDealSignals,
                    buyer_intelligence_pb2.ListDealSignalsRequest(deal_id="D0000001"),
                )
            )
            == grpc.StatusCode.PERMISSION_DENIED
        )
        assert (
            _code(lambda: partner.call(partner.warm_paths.ResolvePeople, warm_paths_pb2.ResolvePeopleRequest()))
            == grpc.StatusCode.PERMISSION_DENIED
        )
    with served.client("admin_a") as admin:
        created = admin.call(admin.admin.CreateApiKey, admin_pb2.CreateApiKeyRequest(role=admin_pb2.ROLE_MEMBER))
        with Client(served.address, created.key) as fresh:
            fresh.call(fresh.warm_paths.FindWarmPaths, request)
            assert admin.call(
                admin.admin.RevokeApiKey, admin_pb2.RevokeApiKeyRequest(key_id=created.info.key_id)
            ).revoked
            assert _code(lambda: fresh.call(fresh.warm_paths.FindWarmPaths, request)) == grpc.StatusCode.UNAUTHENTICATED


def test_partner_scope_and_rate_limit(served: Served) -> None:
    scoped = json.loads((served.network / "ingest" / "deals.jsonl").read_text().partition("\n")[0])["account"]
    other = next(c for c in _emails(served.network, "deals", "account") if c != scoped)
    with served.client("partner_a") as partner:
        call = partner.warm_paths.FindWarmPaths
        partner.call(
            call,
            warm_paths_pb2.FindWarmPathsRequest(target_company=warm_paths_pb2.CompanyTarget(domain=scoped), max_hops=2),
        )
        assert (
            _code(
                lambda: partner.call(
                    call,
                    warm_paths_pb2.FindWarmPathsRequest(
                        target_company=warm_paths_pb2.CompanyTarget(domain=other), max_hops=2
                    ),
                )
            )
            == grpc.StatusCode.PERMISSION_DENIED
        )
        assert (
            _code(
                lambda: partner.call(
                    call,
                    warm_paths_pb2.FindWarmPathsRequest(
                        target_company=warm_paths_pb2.CompanyTarget(domain=scoped), max_hops=3
                    ),
                )
            )
            == grpc.StatusCode.PERMISSION_DENIED
        )
        request = warm_paths_pb2.FindWarmPathsRequest(
            target_company=warm_paths_pb2.CompanyTarget(domain=scoped), max_hops=2
        )
        with pytest.raises(grpc.RpcError) as info:  # noqa: PT012 - the limit trips within ten calls
            for _ in range(10):
                partner.call(call, request)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        status = rpc_status.from_call(info.value)
        retry = error_details_pb2.RetryInfo()
        assert status is not None and any(d.Unpack(retry) for d in status.details)
        assert retry.retry_delay.ToTimedelta().total_seconds() > 0


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({}, "target"),
        ({"target_email": "x@y.example", "k": 0}, "k"),
        ({"target_email": "x@y.example", "k": 100000}, "k"),
        ({"target_email": "x@y.example", "max_hops": 4}, "max_hops"),
        ({"target_email": "not an email"}, "target_email"),
        ({"target_company": {"domain": "not a domain"}}, "target_company.domain"),
        ({"target_email": "x@y.example", "source": {"rep_email": "x@y.example"}}, "source.rep_email"),
    ],
)
def test_bad_requests_name_the_field(served: Served, request_fields: dict, field: str) -> None:
    request = warm_paths_pb2.FindWarmPathsRequest(**request_fields)
    with served.client("member_a") as member, pytest.raises(grpc.RpcError) as info:
        member.call(member.warm_paths.FindWarmPaths, request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in _violations(info.value)


def test_the_client_librarys_typed_calls_and_decoded_errors(served: Served) -> None:
    target = _emails(served.network, "deal_contacts", "email")[0]
    with served.client("member_a") as member:
        raw = member.call(member.warm_paths.FindWarmPaths, warm_paths_pb2.FindWarmPathsRequest(target_email=target))
        typed = member.find_warm_paths(warm_paths_pb2.FindWarmPathsRequest(target_email=target))
        typed.snapshot_age_seconds = raw.snapshot_age_seconds
        assert_same_answer(typed, raw)
        assert member.get_snapshot_status().people > 0
        with pytest.raises(ApiError) as info:
            member.find_warm_paths(warm_paths_pb2.FindWarmPathsRequest(target_email="x@y.example", max_hops=4))
    error = info.value
    assert error.code == "INVALID_ARGUMENT" and [f for f, _ in error.field_violations] == ["max_hops"]
    assert len(error.request_id) == 32 and error.attempts == 1


def _known_to(store: GraphStore, pid: str, tenant: str) -> bool:
    rows = store.read(
        Query(
            "test.known",
            """
        MATCH (p:Person {pid: $pid})
        RETURN EXISTS { (p)-[:MEMBER_OF]->(:Tenant {tenant_id: $tenant}) }
            OR EXISTS { (p)-[:KNOWS {tenant_id: $tenant}]-() } AS known""",
        ),
        pid=pid,
        tenant=tenant,
    )
    return bool(rows and rows[0]["known"])


def test_tenant_isolation_randomized(served: Served) -> None:
    """Tenant A never sees B's raw identities nor B's private evidence, across many targets."""
    rng = random.Random(5)
    people = sorted(set(_emails(served.network, "employment", "email")))
    pseudo = Pseudonymizer(served.config.network_key or "")
    checked = 0
    for name, tenant in (("member_a", served.tenants[0]), ("member_b", served.tenants[1])):
        with served.client(name) as client:
            for target in rng.sample(people, 40):
                response = client.call(
                    client.warm_paths.FindWarmPaths,
                    warm_paths_pb2.FindWarmPathsRequest(target_email=target, allow_cross_tenant=True, k=20),
                )
                for path in response.paths:
                    views = [path.source] + [hop.person for hop in path.hops]
                    assert path.source.own_member
                    for view in views:
                        if view.identified:
                            assert view.pid == pseudo.pid(target) or _known_to(served.store, view.pid, tenant)
                            checked += 1
                        else:
                            assert view.pid == "" and view.company_domain == ""
                    for hop in path.hops:
                        if not hop.evidence.observed_by_requester:
                            e = hop.evidence
                            assert (e.interaction_count, e.two_way_share, e.last_interaction.seconds) == (0, 0.0, 0)
                            assert list(e.shared_employers) == []
    assert checked > 50


def test_cross_tenant_connectors_are_masked_unless_shared(served: Served) -> None:
    _a, b = served.tenants
    rng = random.Random(9)
    people = sorted(set(_emails(served.network, "employment", "email")))
    request_targets = rng.sample(people, 60)

    def b_members_shown() -> tuple[int, int]:
        shown = masked = 0
        with served.client("member_a") as client:
            for target in request_targets:
                response = client.call(
                    client.warm_paths.FindWarmPaths,
                    warm_paths_pb2.FindWarmPathsRequest(target_email=target, allow_cross_tenant=True),
                )
                for path in response.paths:
                    for hop in path.hops[:-1]:
                        if hop.person.company_domain.startswith(b) or (not hop.person.identified):
                            shown += hop.person.identified and hop.person.company_domain.startswith(b)
                            masked += not hop.person.identified
        return shown, masked

    _, masked_before = b_members_shown()
    assert masked_before > 0
    set_sharing(served.store, b, share_identities=True)
    served.server.holder.refresh(full=True)
    try:
        shown_after, masked_after = b_members_shown()
        assert shown_after > 0 and masked_after < masked_before
    finally:
        set_sharing(served.store, b, share_identities=False)
        served.server.holder.refresh(full=True)


def test_ingest_stream_then_snapshot_refresh_then_erase(served: Served) -> None:
    a = served.tenants[0]
    rep = next(
        json.loads(line)["email"]
        for line in (served.network / "ingest" / "members.jsonl").read_text().splitlines()
        if json.loads(line)["tenant"] == a
    )
    newcomer = "new.buyer@fresh-account.example"
    record = ingest_pb2.IngestEventsRequest(
        interaction=ingest_pb2.InteractionRecord(
            type="meeting", ts="2026-06-01T10:00:00Z", to=[newcomer], **{"from": rep}
        )
    )
    bad = ingest_pb2.IngestEventsRequest(interaction=ingest_pb2.InteractionRecord(type="fax", ts="1", to=[newcomer]))
    with served.client("member_a") as member:
        refused = member.call(member.ingest.IngestEvents, iter([record, bad]))
        assert refused.accepted == 0 and refused.rejected == 2
        assert [(r.index, r.field) for r in refused.first_rejections] == [(2, "type")]
        assert (
            served.store.read(
                Query("test.newcomer", "MATCH (p:Person {pid: $pid}) RETURN p"),
                pid=Pseudonymizer(served.config.network_key or "").pid(newcomer),
            )
            == []
        )
        done = member.call(member.ingest.IngestEvents, iter([record]))
        assert done.accepted == 1 and done.events_added == 1
        served.server.holder.refresh()
        paths = member.call(
            member.warm_paths.FindWarmPaths, warm_paths_pb2.FindWarmPathsRequest(target_email=newcomer, max_hops=1)
        )
        assert len(paths.paths) == 1 and paths.paths[0].hops[0].evidence.interaction_count == 1
        assert (
            _code(lambda: member.call(member.ingest.EraseSubject, ingest_pb2.EraseSubjectRequest(email=newcomer)))
            == grpc.StatusCode.PERMISSION_DENIED
        )
    with served.client("admin_a") as admin:
        erased = admin.call(admin.ingest.EraseSubject, ingest_pb2.EraseSubjectRequest(email=newcomer))
        assert erased.found and erased.relationships_deleted >= 1
        gone = admin.call(admin.warm_paths.FindWarmPaths, warm_paths_pb2.FindWarmPathsRequest(target_email=newcomer))
        assert gone.targets == 0 and len(gone.paths) == 0


def test_query_cli_is_a_real_client(served: Served) -> None:
    target = _emails(served.network, "deal_contacts", "email")[0]
    env = {
        "PATH": subprocess.os.environ["PATH"],
        "RELGRAPH_SERVER": served.address,
        "RELGRAPH_KEY": served.keys["member_a"],
    }
    ok = subprocess.run(
        ["relgraph", "query", "warm-paths", "--target-email", target, "--cross-tenant", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert "paths" in json.loads(ok.stdout) or json.loads(ok.stdout).get("targets") == 1
    bad = subprocess.run(
        ["relgraph", "query", "warm-paths", "--target-email", target, "--max-hops", "4"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr and "field max_hops" in bad.stderr
    stage = subprocess.run(
        ["relgraph", "query", "deal-stage", "--deal", "D0000001"], env=env, capture_output=True, text=True, timeout=60
    )
    assert stage.returncode == 1 and "FAILED_PRECONDITION: no deal model promoted" in stage.stderr


def test_reads_keep_working_with_neo4j_stopped(served: Served, neo4j_config: Config) -> None:
    if not neo4j_config.uses_managed_neo4j:
        pytest.fail("this test stops Neo4j, so it needs the managed server; unset NEO4J_URI")
    target = _emails(served.network, "deal_contacts", "email")[0]
    neo4j = ManagedNeo4j(neo4j_config)
    with served.client("member_a") as member, served.client("admin_a") as admin:
        before = member.call(member.warm_paths.FindWarmPaths, warm_paths_pb2.FindWarmPathsRequest(target_email=target))
        neo4j.stop()
        try:
            during = member.call(
                member.warm_paths.FindWarmPaths, warm_paths_pb2.FindWarmPathsRequest(target_email=target)
            )

            def people(response: warm_paths_pb2.FindWarmPathsResponse) -> list[list[str]]:
                return [[p.source.pid] + [h.person.pid or h.person.description for h in p.hops] for p in response.paths]

            assert during.paths and people(during) == people(before)
            record = ingest_pb2.IngestEventsRequest(
                signal=ingest_pb2.SignalRecord(
                    type="page_visit", ts="2026-06-01T10:00:00Z", email=target, topic="pricing"
                )
            )
            # Writes fail with UNAVAILABLE once the store's bounded retries give up (well before 60 s).
            assert (
                _code(lambda: member.call(member.ingest.IngestEvents, iter([record]), timeout=60))
                == grpc.StatusCode.UNAVAILABLE
            )
            assert (
                _code(
                    lambda: admin.call(
                        admin.ingest.EraseSubject, ingest_pb2.EraseSubjectRequest(email=target), timeout=60
                    )
                )
                == grpc.StatusCode.UNAVAILABLE
            )
            served.server.holder.refresh()
            assert not served.server.holder.current.store_reachable
        finally:
            neo4j.start()
        served.server.holder.refresh()
        assert served.server.holder.current.store_reachable


def test_team_restriction_and_resolve_people(served: Served) -> None:
    a = served.tenants[0]
    members = [
        json.loads(line)
        for line in (served.network / "ingest" / "members.jsonl").read_text().splitlines()
        if json.loads(line)["tenant"] == a
    ]
    pseudo = Pseudonymizer(served.config.network_key or "")
    sales = {pseudo.pid(m["email"]) for m in members if m.get("function") == "sales"}
    target = _emails(served.network, "deal_contacts", "email")[0]
    with served.client("member_a") as member:
        request = warm_paths_pb2.FindWarmPathsRequest(target_email=target, allow_cross_tenant=True, k=20)
        request.source.team = "no-such-team"  # a team without members is a bad request, not an empty answer
        with pytest.raises(grpc.RpcError) as info:
            member.call(member.warm_paths.FindWarmPaths, request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "source.team" in _violations(info.value)
        rep = next(m["email"] for m in members if pseudo.pid(m["email"]) in sales)
        request.source.rep_email = rep
        for path in member.call(member.warm_paths.FindWarmPaths, request).paths:
            assert path.source.pid == pseudo.pid(rep)
        outsider = next(
            e for e in _emails(served.network, "members", "email") if e not in {m["email"] for m in members}
        )
        resolved = member.call(
            member.warm_paths.ResolvePeople,
            warm_paths_pb2.ResolvePeopleRequest(emails=[rep, outsider, "nobody@nowhere.example"]),
        )
        assert next((p.email, p.pid) for p in resolved.people) == (rep, pseudo.pid(rep))
        assert "nobody@nowhere.example" not in {p.email for p in resolved.people}


def test_network_opt_out_keeps_a_tenants_relationships_to_itself(served: Served) -> None:
    a, _b = served.tenants
    rng = random.Random(11)
    people = sorted(set(_emails(served.network, "employment", "email")))
    targets = rng.sample(people, 40)

    def foreign_hops() -> int:
        count = 0
        with served.client("member_a") as client:
            for target in targets:
                response = client.call(
                    client.warm_paths.FindWarmPaths,
                    warm_paths_pb2.FindWarmPathsRequest(target_email=target, allow_cross_tenant=True),
                )
                count += sum(not hop.evidence.observed_by_requester for p in response.paths for hop in p.hops)
        return count

    assert foreign_hops() > 0
    for other in served.store.read(Query("test.tenants", "MATCH (t:Tenant) RETURN t.tenant_id AS t")):
        if other["t"] != a:
            set_sharing(served.store, other["t"], network_opt_out=True)
    served.server.holder.refresh(full=True)
    try:
        assert foreign_hops() == 0
    finally:
        for other in served.store.read(Query("test.tenants", "MATCH (t:Tenant) RETURN t.tenant_id AS t")):
            set_sharing(served.store, other["t"], network_opt_out=False)
        served.server.holder.refresh(full=True)


def test_every_rpc_has_a_query_command(served: Served, tmp_path: Path, pseudo: Pseudonymizer) -> None:
    a, b = served.tenants
    env = {
        "PATH": os.environ["PATH"],
        "RELGRAPH_SERVER": served.address,
        "RELGRAPH_KEY": served.keys["admin_a"],
    }

    def query(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["relgraph", "query", *args], env=env, capture_output=True, text=True, timeout=60)

    def answer(*args: str) -> dict[str, Any]:
        done = query(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    newcomer, colleague = "new.joiner@cli.example", "old.hand@cli.example"
    records: list[dict[str, Any]] = [  # the ingest format as files hold it: epoch times, codes, a list of recipients
        {"kind": "member", "tenant": a, "email": newcomer, "role": "rep", "title_level": "vp", "function": "sales"},
        {"kind": "employment", "tenant": a, "email": colleague, "company": "cli.example", "from": 1700000000,
         "company_size": 40, "title_level": "director", "function": "it"},
        {"kind": "interaction", "tenant": a, "type": "email", "ts": 1760000000, "from": newcomer, "to": [colleague]},
    ]  # fmt: skip
    stream = tmp_path / "records.jsonl"
    stream.write_text("".join(json.dumps(r) + "\n" for r in records))
    ingested = answer("ingest", str(stream))
    assert (ingested["accepted"], ingested["rejected"], ingested["events_added"]) == (3, 0, 1)
    served.server.holder.refresh()
    resolved = answer("resolve", "--email", newcomer, "--email", "nobody@cli.example")
    assert resolved["people"] == [{"email": newcomer, "pid": pseudo.pid(newcomer)}]

    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(json.dumps(records[0]) + "\n" + json.dumps({**records[1], "tenant": b}) + "\n")
    refused = query("ingest", str(mixed))
    assert refused.returncode == 1 and "name 2 tenants" in refused.stderr
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps({**records[0], "nickname": "jo"}) + "\n")
    refused = query("ingest", str(unknown))
    assert refused.returncode == 1 and f"{unknown}:1" in refused.stderr and "nickname" in refused.stderr

    assert answer("erase", "--email", newcomer)["found"] is True
    assert answer("snapshot")["people"] > 0
    assert "versions" in answer("models")
    created = answer("keys", "create", "--role", "partner", "--scope", "company:cli.example", "--label", "cli-test")
    key_id = created["info"]["key_id"]
    listed = query("keys", "list")
    assert listed.returncode == 0 and key_id in listed.stdout and "cli-test" in listed.stdout
    assert answer("keys", "revoke", "--key-id", key_id)["revoked"] is True
    missing = query("keys", "create")
    assert missing.returncode == 1 and "keys create needs --role" in missing.stderr
