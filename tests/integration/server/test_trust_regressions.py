"""The twelve ways one tenant could harm another, or one record the service, each as a named
regression test against a real server, a real channel and the real Neo4j (issue: multi-tenant
trust). Ground truth comes from Neo4j itself: a tenant holds a person when a relationship of its
own touches them."""

from __future__ import annotations

import dataclasses
import gzip
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from core.config import Config, RateLimit
from core.errors import ConfigError
from core.vocabulary import parse_time
from graph.export_cache import cached_interaction_log
from graph.ingest import ingest
from graph.interaction_log import ExportScope
from graph.neo4j_reader import Neo4jReader
from graph.neo4j_server import ManagedNeo4j
from graph.pseudonymize import Pseudonymizer
from graph.reader import ALL_TENANTS
from graph.records import activity_id
from graph.schema import migrate
from graph.store import GraphStore, Query, connect
from graph.tenancy import set_sharing
from jobs.generate import AS_OF
from relgraph.client import Client
from relgraph.v1 import admin_pb2, buyer_intelligence_pb2, ingest_pb2, warm_paths_pb2
from server import snapshot as snapshots
from server.app import RelgraphServer, create_server
from server.auth import create_api_key

pytestmark = pytest.mark.neo4j
PEPPER = "test-pepper-0123456789"
_CLEAR = Query("test.clear", "MATCH (n) WHERE NOT n:SchemaMigration DETACH DELETE n")
_HELD = Query(
    "test.held",
    """
MATCH (p:Person {pid: $pid})
RETURN EXISTS { (p)-[r]-() WHERE r.tenant_id = $tenant } AS held
""",
)
_TENANT_RELATIONSHIPS = Query(
    "test.tenant_relationships",
    """
MATCH (p:Person {pid: $pid})-[r]-() WHERE r.tenant_id = $tenant RETURN count(r) AS n
""",
)


@dataclass
class World:
    server: RelgraphServer
    address: str
    store: GraphStore
    network: Path
    tenants: list[str]  # a, b, c
    keys: dict[str, str]
    config: Config
    pseudo: Pseudonymizer

    def client(self, key: str) -> Client:
        return Client(self.address, self.keys.get(key, key))

    def records(self, name: str) -> list[dict[str, object]]:
        return [json.loads(line) for line in (self.network / "ingest" / f"{name}.jsonl").read_text().splitlines()]

    def held(self, pid: str, tenant: str) -> bool:
        rows = self.store.read(_HELD, pid=pid, tenant=tenant)
        return bool(rows and rows[0]["held"])

    def emails(self) -> list[str]:
        return sorted({str(r["email"]) for r in self.records("employment")})


@pytest.fixture(scope="module")
def world(neo4j_config: Config, small_network: Path, pseudo: Pseudonymizer) -> Iterator[World]:
    store = connect(neo4j_config)
    migrate(store)
    store.write(_CLEAR)
    ingest(store, [small_network / "ingest"], pseudo, progress=False)
    tenants = sorted(
        {json.loads(line)["tenant"] for line in (small_network / "ingest" / "members.jsonl").read_text().splitlines()}
    )
    a, b, _ = tenants
    scoped = json.loads((small_network / "ingest" / "deals.jsonl").read_text().partition("\n")[0])["account"]
    keys = {
        name: create_api_key(
            store, PEPPER, tenant=tenant, role=role, scopes=[f"company:{scoped}"] if role == "partner" else []
        )[0]
        for name, tenant, role in (
            ("member_a", a, "member"),
            ("admin_a", a, "admin"),
            ("member_b", b, "member"),
            ("admin_b", b, "admin"),
            ("partner_a", a, "partner"),
        )
    }
    config = dataclasses.replace(
        neo4j_config,
        api_key_pepper=PEPPER,
        server=dataclasses.replace(
            neo4j_config.server,
            port=0,
            metrics_port=0,
            refresh_interval_s=3600,
            key_cache_s=1.0,
            as_of=AS_OF,
            partner_rate=RateLimit(per_second=100.0, burst=100),
        ),
    )
    server, port = create_server(config, store=connect(neo4j_config))
    server.start()
    try:
        yield World(server, f"127.0.0.1:{port}", store, small_network, tenants, keys, config, pseudo)
    finally:
        server.stop()
        store.close()


def _code(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()  # type: ignore[no-any-return]


def _violations(error: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(error)
    fields = []
    for detail in status.details if status else []:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
    return fields


def _interaction(ts: str, sender: str, to: list[str], **extra: str) -> ingest_pb2.IngestEventsRequest:
    return ingest_pb2.IngestEventsRequest(
        interaction=ingest_pb2.InteractionRecord(type="email", ts=ts, to=to, **{"from": sender}, **extra)
    )


def _wait_for_key(world: World, key: str) -> None:
    """A key stored by another process works once the server's background re-read has seen it
    (an unknown key id asks for one at once)."""
    deadline = time.monotonic() + 5
    with Client(world.address, key) as client:
        while True:
            try:
                client.call(client.admin.GetSnapshotStatus, admin_pb2.GetSnapshotStatusRequest())
                return
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAUTHENTICATED or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def _member_of(world: World, tenant: str) -> str:
    return next(str(r["email"]) for r in world.records("members") if r["tenant"] == tenant)


def _paths(world: World, key: str, **fields: object) -> warm_paths_pb2.FindWarmPathsResponse:
    with world.client(key) as client:
        return client.call(client.warm_paths.FindWarmPaths, warm_paths_pb2.FindWarmPathsRequest(**fields))


def _check_visibility(
    world: World, tenant: str, response: warm_paths_pb2.FindWarmPathsResponse, named: str | None, cross: bool
) -> int:
    """Every identified person is held by `tenant` (or named by it); every source is its member;
    without cross-tenant use every hop is its own; withheld evidence is empty. Returns how many
    people were checked."""
    checked = 0
    member = Query("test.member", "RETURN EXISTS { (:Person {pid: $pid})-[:MEMBER_OF {tenant_id: $tenant}]->() } AS m")
    for path in response.paths:
        assert path.source.own_member and world.store.read(member, pid=path.source.pid, tenant=tenant)[0]["m"]
        for view in [path.source, *(hop.person for hop in path.hops)]:
            checked += 1
            if view.identified:
                assert view.pid == named or world.held(view.pid, tenant), view
            else:
                assert view.pid == "" and view.company_domain == ""
            if view.company_domain:
                assert world.held(view.pid, tenant), view
        for hop in path.hops:
            e = hop.evidence
            assert cross or e.observed_by_requester
            if not e.observed_by_requester:
                assert (
                    e.interaction_count,
                    e.two_way_share,
                    e.last_interaction.seconds,
                    e.shared_employer_count,
                    list(e.shared_employers),
                ) == (0, 0.0, 0, 0, [])
    return checked


# -- 1: one record takes the service down -------------------------------------------------------


@pytest.mark.parametrize(
    "ts", ["9999-12-31T00:00:00Z", "1000000000000", "-1", "1e12", "1969-12-31T23:59:59Z", "99999999999999999999"]
)
def test_case01_times_outside_the_window_are_refused_with_the_field(world: World, ts: str) -> None:
    rep = _member_of(world, world.tenants[0])
    with world.client("member_a") as member:
        response = member.call(member.ingest.IngestEvents, iter([_interaction(ts, rep, ["new.person@fresh.example"])]))
    assert (response.accepted, response.rejected) == (0, 1)
    assert [r.field for r in response.first_rejections] == ["ts"]


def test_case01_a_stored_out_of_range_relationship_cannot_stop_refresh_or_start(world: World) -> None:
    a, b = (world.pseudo.pid(e) for e in world.emails()[:2])
    lo, hi = sorted((a, b))
    world.store.write(
        Query(
            "test.bad_knows",
            """
        MATCH (a:Person {pid: $lo}), (b:Person {pid: $hi})
        CREATE (a)-[:KNOWS {tenant_id: $tenant, count: 1, fwd: 1, rev: 0, two_way: 0, first_ts: 253402214400,
                            last_ts: 253402214400, events: [], updated_at: timestamp()}]->(b)""",
        ),
        lo=lo,
        hi=hi,
        tenant=world.tenants[2],
    )
    skipped = world.server.metrics.rows_skipped._value.get()
    try:
        served = world.server.holder.refresh()
        assert served is world.server.holder.current and served.store_reachable
        assert world.server.metrics.rows_skipped._value.get() > skipped
        # The refresh still applies good records after the bad one.
        rep, newcomer = _member_of(world, world.tenants[0]), "after.bad.record@fresh.example"
        with world.client("member_a") as member:
            member.call(member.ingest.IngestEvents, iter([_interaction("2026-06-01T10:00:00Z", rep, [newcomer])]))
        world.server.holder.refresh()
        assert _paths(world, "member_a", target_email=newcomer, max_hops=1).paths
        # And a fresh server starts on the same graph.
        fresh, _ = create_server(world.config, store=connect(world.config))
        fresh.stop()
    finally:
        world.store.write(Query("test.drop_bad", "MATCH ()-[k:KNOWS]->() WHERE k.last_ts > 4102444800 DELETE k"))


def test_case01_health_says_not_serving_once_the_snapshot_is_too_old(world: World) -> None:
    config = dataclasses.replace(world.config, server=dataclasses.replace(world.config.server, max_snapshot_age_s=3.0))
    server, port = create_server(config, store=connect(world.config))
    server.start()
    try:
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{port}"))

        def wait_for(wanted: int, seconds: float) -> bool:
            deadline = time.monotonic() + seconds
            while health.Check(health_pb2.HealthCheckRequest(service="")).status != wanted:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.1)
            return True

        assert wait_for(health_pb2.HealthCheckResponse.SERVING, 1.0)
        assert wait_for(health_pb2.HealthCheckResponse.NOT_SERVING, 10.0)  # no refresh for over 3 s
        server.holder.refresh()
        assert wait_for(health_pb2.HealthCheckResponse.SERVING, 1.8)
    finally:
        server.stop()


# -- 2: a new tenant that sorts first --------------------------------------------------------------


def test_case02_a_new_tenant_sorting_first_shifts_no_tenancy(world: World) -> None:
    a = world.tenants[0]
    newcomer_key = create_api_key(world.store, PEPPER, tenant="aaa-first", role="member", scopes=[])[0]
    _wait_for_key(world, newcomer_key)
    with Client(world.address, newcomer_key) as first:
        first.call(
            first.ingest.IngestEvents,
            iter(
                [
                    ingest_pb2.IngestEventsRequest(member=ingest_pb2.MemberRecord(email="founder@aaa-first.example")),
                    _interaction("2026-06-01T10:00:00Z", "founder@aaa-first.example", ["friend@elsewhere.example"]),
                ]
            ),
        )
    world.server.holder.refresh()
    full = snapshots.build(Neo4jReader(world.store))
    served = world.server.holder.current.snapshot

    def edges(s: snapshots.Snapshot) -> set[tuple[str, str, str, int]]:
        lo, hi = snapshots.edge_endpoints(s)
        return {
            (s.pid(x), s.pid(y), s.tenants.ids[t], c)
            for x, y, t, c in zip(lo.tolist(), hi.tolist(), s.edge_tenant.tolist(), s.edge_count.tolist())
        }

    assert edges(served) == edges(full)

    checked = 0
    for i, target in enumerate(world.emails()[::7][:40]):
        cross = bool(i % 2)
        response = _paths(world, "member_a", target_email=target, allow_cross_tenant=cross, k=20)
        checked += _check_visibility(world, a, response, world.pseudo.pid(target), cross)
    assert checked > 50
    everyone = world.emails()
    with world.client("member_a") as member:
        resolved = member.call(
            member.warm_paths.ResolvePeople, warm_paths_pb2.ResolvePeopleRequest(emails=everyone[:1000])
        )
    assert {p.email for p in resolved.people} == {e for e in everyone[:1000] if world.held(world.pseudo.pid(e), a)}


# -- 3: opt-out and sharing are late -------------------------------------------------------------


def test_case03_opt_out_and_sharing_apply_at_the_next_incremental_refresh(world: World) -> None:
    a, b, c = world.tenants
    targets = world.emails()[1::9][:40]

    def foreign_hops_and_shown_b_members() -> tuple[int, int]:
        foreign = shown = 0
        for target in targets:
            for path in _paths(world, "member_a", target_email=target, allow_cross_tenant=True).paths:
                foreign += sum(not hop.evidence.observed_by_requester for hop in path.hops)
                shown += sum(
                    hop.person.identified
                    and not world.held(hop.person.pid, a)
                    and hop.person.pid != world.pseudo.pid(target)
                    for hop in path.hops
                )
        return foreign, shown

    foreign, shown = foreign_hops_and_shown_b_members()
    assert foreign > 0 and shown == 0
    try:
        for other in (b, c):
            set_sharing(world.store, other, network_opt_out=True)
        world.server.holder.refresh()  # incremental; no relationship changed
        assert foreign_hops_and_shown_b_members()[0] == 0
        for other in (b, c):
            set_sharing(world.store, other, network_opt_out=False)
        set_sharing(world.store, b, share_identities=True)
        world.server.holder.refresh()
        assert foreign_hops_and_shown_b_members()[1] > 0
    finally:
        for other in (b, c):
            set_sharing(world.store, other, network_opt_out=False, share_identities=False)
        world.server.holder.refresh()


# -- 4: signals leak other tenants' data ---------------------------------------------------------


def test_case04_signals_show_nothing_another_tenant_alone_holds(world: World) -> None:
    a = world.tenants[0]
    deal = max((d for d in world.records("deals") if d["tenant"] == a), key=lambda d: int(str(d["created"])))
    vp = f"new.vp.{deal['id']}@{deal['account']}".lower()
    with world.client("member_b") as member_b:
        done = member_b.call(
            member_b.ingest.IngestEvents,
            iter(
                [
                    ingest_pb2.IngestEventsRequest(
                        employment=ingest_pb2.EmploymentRecord(
                            email=vp,
                            company=str(deal["account"]),
                            title="VP Finance",
                            **{"from": str(AS_OF - 10 * 86400)},
                        )
                    )
                ]
            ),
        )
    assert done.accepted == 1
    with world.client("member_a") as member:
        signals = member.call(
            member.buyer_intelligence.ListDealSignals,
            buyer_intelligence_pb2.ListDealSignalsRequest(deal_id=str(deal["id"]), limit=100),
        ).signals
    assert world.pseudo.pid(vp) not in {s.who.pid for s in signals}
    for s in signals:
        if s.who.identified:
            assert world.held(s.who.pid, a)
        else:
            assert s.who.pid == "" and s.kind == "went_silent"


# -- 5: one tenant's admin erases another tenant's data -----------------------------------------


def test_case05_a_tenant_admin_erases_only_its_own_data(world: World) -> None:
    a, b, _ = world.tenants
    counts = {}
    only_b = both = None
    for email in world.emails():
        pid = world.pseudo.pid(email)
        held_a, held_b = world.held(pid, a), world.held(pid, b)
        if held_b and not held_a and only_b is None:
            only_b = email
        if held_a and held_b and both is None:
            both = email
    assert only_b and both
    for email in (only_b, both):
        counts[email] = world.store.read(_TENANT_RELATIONSHIPS, pid=world.pseudo.pid(email), tenant=b)[0]["n"]
    with world.client("admin_a") as admin:
        nothing = admin.call(admin.ingest.EraseSubject, ingest_pb2.EraseSubjectRequest(email=only_b))
        assert not nothing.found and (nothing.nodes_deleted, nothing.relationships_deleted) == (0, 0)
        erased = admin.call(admin.ingest.EraseSubject, ingest_pb2.EraseSubjectRequest(email=both))
        assert erased.found
    for email in (only_b, both):
        assert world.store.read(_TENANT_RELATIONSHIPS, pid=world.pseudo.pid(email), tenant=b)[0]["n"] == counts[email]
    assert not world.held(world.pseudo.pid(both), a)


# -- 6: existence oracle ---------------------------------------------------------------------------


def test_case06_unknown_and_invisible_people_get_the_same_answer(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    import server.warm_paths_service as service

    searches: list[int] = []
    real_find_paths = service.find_paths
    monkeypatch.setattr(
        service,
        "find_paths",
        lambda snap, query, *rest: searches.append(query.targets.size) or real_find_paths(snap, query, *rest),
    )
    a = world.tenants[0]
    invisible = [e for e in world.emails() if not world.held(world.pseudo.pid(e), a)][:30]
    unknown = [f"nobody{i}@unknown-{i}.example" for i in range(30)]
    assert len(invisible) == 30
    for email in invisible + unknown:
        response = _paths(world, "member_a", target_email=email, allow_cross_tenant=False)
        assert (response.targets, len(response.paths)) == (0, 0), email
    # Both run one search of one target (an unknown address searches from a stand-in), so they cost alike.
    assert searches == [1] * 60
    # A partner scoped to one company: a person elsewhere is answered like an unknown one.
    scoped = json.loads((world.network / "ingest" / "deals.jsonl").read_text().partition("\n")[0])["account"]
    elsewhere = [
        str(r["email"])
        for r in world.records("employment")
        if r["company"] != scoped and "to" not in r and not world.held(world.pseudo.pid(str(r["email"])), a)
    ][:10]
    for email in elsewhere + unknown[:10]:
        response = _paths(world, "partner_a", target_email=email, max_hops=2, allow_cross_tenant=True)
        assert (response.targets, len(response.paths)) == (0, 0), email


# -- 7: read-only Cypher reads local files ---------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "LOAD CSV FROM 'file:///etc/passwd' AS l RETURN l",
        "LOAD CSV FROM 'http://127.0.0.1:9/x.csv' AS l RETURN l",
        "MATCH (n:Person) WITH n LIMIT 1 CALL (n) { LOAD CSV FROM 'file:///etc/hostname' AS l RETURN l } RETURN l",
        "TERMINATE TRANSACTIONS 'neo4j-transaction-1'",
        "SHOW TRANSACTIONS",
        "CALL dbms.listConfig()",
    ],
)
def test_case07_operator_cypher_refuses_reads_outside_the_graph(
    world: World, cli_env: dict[str, str], query: str
) -> None:
    done = subprocess.run(["relgraph", "cypher", query], env=cli_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "refused" in done.stderr and "root:" not in done.stdout, done.stderr


def test_case07_neo4j_itself_reads_no_files_and_operator_queries_time_out(
    world: World, cli_env: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(Exception, match="allow_csv_import_from_file_urls"):
        world.store.read(Query("test.load_csv", "LOAD CSV FROM 'file:///etc/passwd' AS l RETURN l"))
    settings = tmp_path / "relgraph.toml"
    settings.write_text("[neo4j]\noperator_query_timeout_s = 1.0\n")
    started = time.monotonic()
    slow = subprocess.run(
        ["relgraph", "cypher", "MATCH (a:Person), (b:Person), (c:Person) WHERE a.pid < b.pid < c.pid RETURN count(*)"],
        env={**cli_env, "RELGRAPH_CONFIG": str(settings)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert slow.returncode == 1 and "Traceback" not in slow.stderr and time.monotonic() - started < 60


# -- 8: deadlines inside a search ------------------------------------------------------------------


def test_case08_a_search_stops_at_the_deadline_and_at_its_work_budget(world: World) -> None:
    a, _, _ = world.tenants
    people = [f"clique{i}@clique.example" for i in range(200)]
    records = [
        ingest_pb2.IngestEventsRequest(
            employment=ingest_pb2.EmploymentRecord(
                email=p, company="clique.example", title="Director of Operations", **{"from": "2024-01-01"}
            )
        )
        for p in people
    ]
    records += [
        _interaction("2026-05-01T10:00:00Z", p, [people[(i + j) % 200] for j in range(1, 101)])
        for i, p in enumerate(people)
    ]
    with world.client("member_b") as member_b:
        assert member_b.call(member_b.ingest.IngestEvents, iter(records), timeout=300).accepted == len(records)
    world.server.holder.refresh()
    rep = _member_of(world, a)
    request = {
        "target_company": warm_paths_pb2.CompanyTarget(domain="clique.example"),
        "allow_cross_tenant": True,
        "k": 100,
        "source": warm_paths_pb2.SourceRestriction(rep_email=rep),
    }
    try:
        unbounded = dataclasses.replace(
            world.config, server=dataclasses.replace(world.config.server, max_search_work=10**12)
        )
        server, port = create_server(unbounded, store=connect(world.config))
        server.start()
        try:
            with Client(f"127.0.0.1:{port}", world.keys["member_a"]) as member:
                assert (
                    _code(
                        lambda: member.call(
                            member.warm_paths.FindWarmPaths, warm_paths_pb2.FindWarmPathsRequest(**request), timeout=0.4
                        )
                    )
                    == grpc.StatusCode.DEADLINE_EXCEEDED
                )
            observed = server.metrics.latency.labels("/relgraph.v1.WarmPathsService/FindWarmPaths", "DEADLINE_EXCEEDED")
            waited = time.monotonic()
            while observed._sum.get() == 0 and time.monotonic() - waited < 60:  # the server's own record of the call
                time.sleep(0.1)
            assert 0 < observed._sum.get() < 0.4 + 0.6, "the search kept working well past the deadline"
        finally:
            server.stop()
        with world.client("member_a") as member:  # the default work budget refuses it outright
            assert (
                _code(
                    lambda: member.call(member.warm_paths.FindWarmPaths, warm_paths_pb2.FindWarmPathsRequest(**request))
                )
                == grpc.StatusCode.RESOURCE_EXHAUSTED
            )
    finally:
        world.store.write(
            Query(
                "test.drop_clique",
                """
            MATCH (p:Person)-[:WORKED_AT]->(:Company {cid: 'clique.example'}) DETACH DELETE p""",
            )
        )
        world.server.holder.refresh(full=True)


# -- 10: erasure is late and incomplete -------------------------------------------------------------


def test_case10_a_network_erasure_reaches_running_servers_caches_and_derived_ids(
    world: World, cli_env: dict[str, str], tmp_path: Path
) -> None:

    a = world.tenants[0]
    operator_home = tmp_path / "operator"
    rep = _member_of(world, a)
    person = next(e for e in world.emails() if world.held(world.pseudo.pid(e), a) and e != rep)
    deal = next(d for d in world.records("deals") if d["tenant"] == a)
    with world.client("member_a") as member:  # an activity whose id is derived from the person's pseudonym
        member.call(
            member.ingest.IngestEvents,
            iter([_interaction("2026-06-02T10:00:00Z", rep, [person], deal=str(deal["id"]))]),
        )
    derived = activity_id(
        a, "email", parse_time("2026-06-02T10:00:00Z"), world.pseudo.pid(rep), world.pseudo.pid(person)
    )
    assert world.store.read(Query("test.activity", "MATCH (x:Activity {activity_id: $id}) RETURN x"), id=derived)
    world.server.holder.refresh()
    assert _paths(world, "member_a", target_email=person, allow_cross_tenant=True).paths
    cached_interaction_log(Neo4jReader(world.store), ExportScope(tenants=ALL_TENANTS), world.config.export_cache_dir)
    assert list(world.config.export_cache_dir.glob("*.npz"))

    # The operator erases from another machine (its own home): this server learns of it from Neo4j alone.
    env = {**cli_env, "RELGRAPH_HOME": str(operator_home)}
    done = subprocess.run(
        ["relgraph", "erase", "--email", person, "--network", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and json.loads(done.stdout)["found"], done.stderr
    assert list(world.config.export_cache_dir.glob("*.npz")), "the server's own cache is still there"
    world.server.holder.refresh()  # incremental: the tombstone reaches the running server
    gone = _paths(world, "member_a", target_email=person, allow_cross_tenant=True)
    assert (gone.targets, len(gone.paths)) == (0, 0)
    assert world.server.holder.current.snapshot.node(world.pseudo.pid(person)) is None
    assert list(world.config.export_cache_dir.glob("*.npz")) == []
    assert world.store.read(Query("test.activity", "MATCH (x:Activity {activity_id: $id}) RETURN x"), id=derived) == []
    audits = world.store.read(Query("test.audit", "MATCH (x:ErasureAudit) RETURN properties(x) AS p"))
    assert audits and world.pseudo.pid(person) not in json.dumps([r["p"] for r in audits], default=str)


# -- 11: tracebacks and silent acceptance ----------------------------------------------------------


def test_case11_bad_values_over_grpc_are_field_violations(world: World) -> None:
    deal = ingest_pb2.DealRecord(
        id="D-INF", account="buyer.example", owner=_member_of(world, world.tenants[0]), created="2026-01-01"
    )
    with world.client("member_a") as member:
        for amount in (float("inf"), float("nan"), -1.0, 1e300):
            bad = ingest_pb2.DealRecord()
            bad.CopyFrom(deal)
            bad.amount = amount
            response = member.call(member.ingest.IngestEvents, iter([ingest_pb2.IngestEventsRequest(deal=bad)]))
            assert response.accepted == 0 and [r.field for r in response.first_rejections] == ["amount"]
        early = ingest_pb2.DealRecord(close_date="2025-12-31")  # the CRM's close date before the deal's creation
        early.MergeFrom(deal)
        response = member.call(member.ingest.IngestEvents, iter([ingest_pb2.IngestEventsRequest(deal=early)]))
        assert response.accepted == 0 and [r.field for r in response.first_rejections] == ["close_date"]
        huge = "x" * 3_000_000 + ".example"
        for fields, field in (
            ({"target_company": {"domain": huge}}, "target_company.domain"),
            (
                {"target_company": {"domain": "buyer.example", "role": {"min_title_level": 99}}},
                "target_company.role.min_title_level",
            ),
            ({"target_email": "a" * 100_000 + "@x.example"}, "target_email"),
            ({"target_email": "x@y.example", "source": {"team": "Sales Team\n"}}, "source.team"),
        ):
            with pytest.raises(grpc.RpcError) as info:
                member.call(member.warm_paths.FindWarmPaths, warm_paths_pb2.FindWarmPathsRequest(**fields))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in _violations(info.value)
            assert len(info.value.details()) < 2000


def test_case11_files_that_are_not_text_end_in_a_summary_not_a_traceback(
    world: World, cli_env: dict[str, str], tmp_path: Path
) -> None:
    member = {"kind": "member", "tenant": "acme", "email": "rep@acme.example"}
    files = {
        "members-bom.jsonl": b"\xef\xbb\xbf" + json.dumps(member).encode() + b"\n",
        "members-latin1.jsonl": json.dumps(member).encode() + b"\n" + b'{"kind": "member", "email": "\xe9"}\n',
        "members-deep.jsonl": b"[" * 100_000 + b"\n",
        "members-huge.jsonl": b'{"kind": "member", "n": ' + b"9" * 5000 + b"}\n",
        "members-cut.jsonl.gz": gzip.compress(json.dumps(member).encode() * 2000)[:300],
        "members.csv": b"kind,tenant,email\nmember,acme,rep2@acme.example\n\x00,\n",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    done = subprocess.run(
        ["relgraph", "ingest", str(tmp_path), "--no-strict", "--json"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    summary = json.loads(done.stdout)
    reasons = " | ".join(e["reason"] for e in summary["first_errors"])
    assert summary["accepted_by_kind"]["member"] >= 2, summary  # the BOM file's record, and the CSV's first
    for words in ("UTF-8", "nested too deeply", "cannot be read past line", "not valid JSON"):
        assert words in reasons, reasons
    nan = subprocess.run(
        ["relgraph", "cypher", "RETURN 0.0 / 0.0 AS x, 1.0 / 0.0 AS y", "--json"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(nan.stdout) == [{"x": None, "y": None}]


def test_case11_a_port_in_use_is_refused(world: World, cli_env: dict[str, str]) -> None:
    port = int(world.address.rsplit(":", 1)[1])
    taken = dataclasses.replace(world.config, server=dataclasses.replace(world.config.server, port=port))
    with pytest.raises(ConfigError, match="in use"):
        create_server(taken, store=connect(world.config))
    env = {
        **cli_env,
        "RELGRAPH_SERVER_PORT": str(port),
        "RELGRAPH_METRICS_PORT": "0",
        "RELGRAPH_API_KEY_PEPPER": PEPPER,
    }
    served = subprocess.run(["relgraph", "serve"], env=env, capture_output=True, text=True, timeout=120)
    assert served.returncode == 1 and "in use" in served.stderr and "Traceback" not in served.stderr


# -- 12: key probing ----------------------------------------------------------------------------------


def test_case12_key_probing_is_rate_limited_and_never_reads_neo4j(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    refill_s = world.config.server.auth_failure_rate.burst / world.config.server.auth_failure_rate.per_second + 0.5
    time.sleep(refill_s)
    reads = []
    real_keys = Neo4jReader.api_keys
    monkeypatch.setattr(Neo4jReader, "api_keys", lambda *a, **kw: reads.append(1) or real_keys(*a, **kw))
    request = warm_paths_pb2.FindWarmPathsRequest(target_email="x@y.example")
    known_id = world.keys["member_a"].split("_")[1]
    codes = []
    for i in range(40):
        key = f"rgk_{i:012x}_guess{i}" if i % 2 else f"rgk_{known_id}_wrong-secret-{i}"
        with Client(world.address, key) as probe:
            with pytest.raises(grpc.RpcError) as info:
                probe.call(probe.warm_paths.FindWarmPaths, request)
            codes.append(info.value.code())
            if i < 2:
                assert info.value.details() == "unknown API key"
    assert codes[:20] == [grpc.StatusCode.UNAUTHENTICATED] * 20
    # Then the address is refused before any key is looked at (a token may refill meanwhile).
    assert codes[20:].count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 15
    # The keys are re-read in the background (every key_cache_s, and at most once a second on an
    # unknown id), never once per unknown id.
    assert len(reads) <= 3, "unknown key ids must not each re-read the keys"
    time.sleep(refill_s)
    with world.client("admin_a") as admin:
        with pytest.raises(grpc.RpcError) as info:
            admin.call(
                admin.admin.CreateApiKey,
                admin_pb2.CreateApiKeyRequest(role=admin_pb2.ROLE_MEMBER, label="x" * 2_000_000),
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "label" in _violations(info.value)


# -- 9: a Neo4j outage slows every read (last: it stops and restarts Neo4j) ---------------------------


def test_case09_reads_stay_fast_and_writes_fail_fast_while_neo4j_is_down(world: World, neo4j_config: Config) -> None:
    if not neo4j_config.uses_managed_neo4j:
        pytest.fail("this test stops Neo4j, so it needs the managed server; unset NEO4J_URI")
    target = world.emails()[3]
    neo4j = ManagedNeo4j(neo4j_config)
    neo4j.stop()
    try:
        time.sleep(world.config.server.key_cache_s * 2)  # past the key cache: keys must still not be re-read inline
        with world.client("member_a") as member:
            for _ in range(10):
                started = time.monotonic()
                member.call(member.warm_paths.FindWarmPaths, warm_paths_pb2.FindWarmPathsRequest(target_email=target))
                assert time.monotonic() - started < 1.0
            with Client(world.address, "rgk_000000000000_unknown") as stranger:
                started = time.monotonic()
                assert (
                    _code(
                        lambda: stranger.call(
                            stranger.warm_paths.FindWarmPaths, warm_paths_pb2.FindWarmPathsRequest(target_email=target)
                        )
                    )
                    == grpc.StatusCode.UNAUTHENTICATED
                )
                assert time.monotonic() - started < 1.0
            record = _interaction("2026-06-01T10:00:00Z", _member_of(world, world.tenants[0]), [target])
            started = time.monotonic()
            assert (
                _code(lambda: member.call(member.ingest.IngestEvents, iter([record]), timeout=60))
                == grpc.StatusCode.UNAVAILABLE
            )
            assert time.monotonic() - started < 8.0
            world.server.holder.refresh()  # the refresher finds Neo4j down: later writes fail at once
            started = time.monotonic()
            assert (
                _code(lambda: member.call(member.ingest.IngestEvents, iter([record]), timeout=60))
                == grpc.StatusCode.UNAVAILABLE
            )
            assert time.monotonic() - started < 0.5
    finally:
        neo4j.start()
    world.server.holder.refresh()
    assert world.server.holder.current.store_reachable
