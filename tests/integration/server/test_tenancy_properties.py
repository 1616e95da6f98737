"""Adversarial property tests of multi-tenant trust. Hypothesis drives sequences of events through
a real server, a real channel and the real Neo4j: tenants appear (some sorting before the others),
ingest records of every kind, opt out of the network and in to sharing, send invalid batches,
erase people (a tenant's own data, or the network's), and the refresher rebuilds. After every
step the incrementally refreshed snapshot must equal a full build, and every field of every answer
(warm paths, ResolvePeople, deal signals) must equal what the reference model in
tenancy_model.py derives from the raw records under the visibility rule.

RELGRAPH_PROPERTY_EXAMPLES sets how many event sequences run (default 25, each of up to 8 steps);
the queries checked are counted, and a CI run must check at least 1,000."""

from __future__ import annotations

import dataclasses
import os
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule, run_state_machine_as_test

from core.config import Config
from core.vocabulary import TITLE_LEVELS
from graph import strength_heuristic as heuristic
from graph.neo4j_reader import Neo4jReader
from graph.operations import NETWORK, erase_person
from graph.pseudonymize import Pseudonymizer
from graph.schema import migrate
from graph.store import GraphStore, Query, connect
from graph.tenancy import set_sharing
from relgraph.client import Client
from relgraph.v1 import buyer_intelligence_pb2, common_pb2, ingest_pb2, warm_paths_pb2
from server import snapshot as snapshots
from server.app import RelgraphServer, create_server
from server.auth import create_api_key
from tests.support.tenancy_model import (
    BUYERS,
    COMPANIES,
    COMPANY_SIZE,
    INDUSTRY,
    PEOPLE,
    TENANTS,
    UNKNOWN,
    View,
    World,
    company_of,
    groups,
    snapshot_content,
    title_of,
)

pytestmark = pytest.mark.neo4j
PEPPER = "test-pepper-0123456789"
DAY = 86400
AS_OF = 1_780_000_000  # 2026-05-28: answers are computed at this time
T0 = AS_OF - 200 * DAY
EXAMPLES = int(os.environ.get("RELGRAPH_PROPERTY_EXAMPLES", "25"))
MIN_QUERIES = 1000
_CLEAR = Query("test.clear", "MATCH (n) WHERE NOT n:SchemaMigration DETACH DELETE n")
QUERIES: Counter[str] = Counter()

# -- records ------------------------------------------------------------------------------------


def _member(tenant: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from([p for p in PEOPLE if company_of(p) == f"{tenant}.example"]).map(
        lambda email: {"kind": "member", "email": email, "title": title_of(email)[2]}
    )


@st.composite
def _employment(draw: st.DrawFn) -> dict[str, Any]:
    email = draw(st.sampled_from(PEOPLE))
    old = [T0 - 900 * DAY, T0 - 400 * DAY]
    if draw(st.booleans()):  # a past job elsewhere: employers in common, never a current employer
        company = draw(st.sampled_from([c for c in COMPANIES if c != company_of(email)]))
        start, end = draw(st.sampled_from(old)), True
    else:  # the person's own company, now (started long ago or days ago) or in the past
        company, start = company_of(email), draw(st.sampled_from([*old, AS_OF - 5 * DAY]))
        end = start < T0 and draw(st.booleans())
    record = {
        "kind": "employment",
        "email": email,
        "company": company,
        "from": start,
        "title": title_of(email)[2],
        "company_size": COMPANY_SIZE[company],
        "company_industry": INDUSTRY[company],
    }
    if end:
        record["to"] = start + 100 * DAY
    return record


@st.composite
def _interaction(draw: st.DrawFn) -> dict[str, Any]:
    sender = draw(st.sampled_from(PEOPLE))
    to = draw(st.lists(st.sampled_from([p for p in PEOPLE if p != sender]), min_size=1, max_size=2, unique=True))
    return {
        "kind": "interaction",
        "type": draw(st.sampled_from(["email", "meeting", "call", "message"])),
        "ts": T0 + draw(st.integers(0, 199)) * DAY,
        "from": sender,
        "to": to,
    }


def _deal(tenant: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(st.integers(0, 1), st.sampled_from(BUYERS), _member(tenant)).map(
        lambda t: {"kind": "deal", "id": f"D-{tenant}-{t[0]}", "account": t[1], "owner": t[2]["email"], "created": T0}
    )


@st.composite
def _signal(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "kind": "signal",
        "id": f"S-{draw(st.integers(0, 5))}",
        "type": "poll_answer",
        "topic": "contract_expiry",
        "value": "4-6_months",
        "email": draw(st.sampled_from(PEOPLE)),
        "ts": AS_OF - draw(st.integers(1, 60)) * DAY,
    }


def _records(tenant: str) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(
        st.one_of(_member(tenant), _employment(), _interaction(), _interaction(), _deal(tenant), _signal()),
        min_size=1,
        max_size=6,
    )


# Invalid records: each must make a strict stream write nothing.
BAD_RECORDS = (
    {"kind": "interaction", "type": "email", "ts": "9999-12-31T00:00:00Z", "from": PEOPLE[0], "to": [PEOPLE[1]]},
    {"kind": "interaction", "type": "email", "ts": "99999999999999999999", "from": PEOPLE[0], "to": [PEOPLE[1]]},
    {"kind": "interaction", "type": "fax", "ts": T0, "from": PEOPLE[0], "to": [PEOPLE[1]]},
    {"kind": "interaction", "type": "email", "ts": T0, "from": "not an address", "to": [PEOPLE[1]]},
    {"kind": "deal", "id": "D-bad", "account": "x" * 300 + ".example", "owner": PEOPLE[0], "created": T0},
    {"kind": "deal", "id": "D-bad", "account": BUYERS[0], "owner": PEOPLE[0], "created": T0, "amount": float("inf")},
    {
        "kind": "deal",
        "id": "D-bad",
        "account": BUYERS[0],
        "owner": PEOPLE[0],
        "created": AS_OF,
        "outcome": "won",
        "closed": T0,
    },
    {
        "kind": "signal",
        "id": "S-bad",
        "type": "poll_answer",
        "topic": "Our contract ends in spring",
        "ts": T0,
        "email": PEOPLE[0],
    },
    {"kind": "employment", "email": PEOPLE[0], "company": BUYERS[0], "from": -5},
)


def _message(record: dict[str, Any]) -> ingest_pb2.IngestEventsRequest:
    """An ingest-format record as a stream message (the tenant comes from the key)."""
    kind = record["kind"]
    fields = {k: v for k, v in record.items() if k != "kind"}
    if kind == "deal":
        return ingest_pb2.IngestEventsRequest(
            deal=ingest_pb2.DealRecord(
                id=fields["id"],
                account=fields["account"],
                owner=fields["owner"],
                created=str(fields["created"]),
                amount=fields.get("amount", 0.0),
                outcome=fields.get("outcome", ""),
                closed=str(fields.get("closed", "")),
            )
        )
    strings = {k: (v if isinstance(v, list) else str(v)) for k, v in fields.items()}
    if kind == "employment":
        strings["company_size"] = int(fields.get("company_size", 0))  # type: ignore[assignment]
    message_type = {
        "member": ingest_pb2.MemberRecord,
        "employment": ingest_pb2.EmploymentRecord,
        "interaction": ingest_pb2.InteractionRecord,
        "signal": ingest_pb2.SignalRecord,
    }[kind]
    return ingest_pb2.IngestEventsRequest(**{kind: message_type(**strings)})


# -- the machine ----------------------------------------------------------------------------------


class TenancyMachine(RuleBasedStateMachine):
    config: Config
    pseudo: Pseudonymizer

    def __init__(self) -> None:
        super().__init__()
        self.store: GraphStore = connect(self.config)
        self.store.write(_CLEAR)
        self.world = World(self.pseudo)
        self.server: RelgraphServer | None = None
        self.keys: dict[tuple[str, str], str] = {}
        self.deals: set[tuple[str, str]] = set()

    @initialize()
    def start(self) -> None:
        self.server, port = create_server(self.config, store=connect(self.config))
        self.server.start()
        self.address = f"127.0.0.1:{port}"

    def teardown(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.store.close()

    def key(self, tenant: str, role: str = "member") -> str:
        if (tenant, role) not in self.keys:
            self.keys[(tenant, role)] = create_api_key(self.store, PEPPER, tenant=tenant, role=role, scopes=[])[0]
            assert self.server is not None
            self.server.keys.reload()
            self.world.share.setdefault(tenant, False)
            self.world.opt_out.setdefault(tenant, False)
        return self.keys[(tenant, role)]

    # -- events ---------------------------------------------------------------------------------

    @rule(data=st.data(), tenant=st.sampled_from(TENANTS))
    def ingest(self, data: st.DataObject, tenant: str) -> None:
        records = data.draw(_records(tenant))
        with Client(self.address, self.key(tenant)) as client:
            response = client.call(client.ingest.IngestEvents, iter([_message(r) for r in records]))
        assert (response.accepted, response.rejected) == (len(records), 0), response
        for record in records:
            self.world.ingest(tenant, record)
            if record["kind"] == "deal":
                self.deals.add((tenant, record["id"]))
        self.refresh_and_check(data)

    @rule(data=st.data(), tenant=st.sampled_from(TENANTS), bad=st.sampled_from(BAD_RECORDS))
    def ingest_a_bad_batch(self, data: st.DataObject, tenant: str, bad: dict[str, Any]) -> None:
        records = data.draw(_records(tenant))
        position = data.draw(st.integers(0, len(records)))
        stream = [_message(r) for r in records]
        stream.insert(position, _message(bad))
        with Client(self.address, self.key(tenant)) as client:
            response = client.call(client.ingest.IngestEvents, iter(stream))
        assert response.accepted == 0 and response.rejected == len(stream)
        assert [r.index for r in response.first_rejections] == [position + 1]
        self.refresh_and_check(data)

    @precondition(lambda self: bool(self.keys))
    @rule(
        data=st.data(),
        tenant=st.sampled_from(TENANTS),
        share=st.none() | st.booleans(),
        opt_out=st.none() | st.booleans(),
    )
    def configure(self, data: st.DataObject, tenant: str, share: bool | None, opt_out: bool | None) -> None:
        self.key(tenant)
        set_sharing(self.store, tenant, share_identities=share, network_opt_out=opt_out)
        if share is not None:
            self.world.share[tenant] = share
        if opt_out is not None:
            self.world.opt_out[tenant] = opt_out
        self.refresh_and_check(data)

    @precondition(lambda self: bool(self.keys))
    @rule(data=st.data(), tenant=st.sampled_from(TENANTS), email=st.sampled_from(PEOPLE + UNKNOWN))
    def tenant_erases(self, data: st.DataObject, tenant: str, email: str) -> None:
        with Client(self.address, self.key(tenant, "admin")) as admin:
            response = admin.call(admin.ingest.EraseSubject, ingest_pb2.EraseSubjectRequest(email=email))
        assert response.found == self.world.erase(email, tenant)
        self.refresh_and_check(data)

    @rule(data=st.data(), email=st.sampled_from(PEOPLE))
    def network_erases(self, data: st.DataObject, email: str) -> None:
        report = erase_person(self.store, self.pseudo.pid(email), scope=NETWORK, actor="test", retention_s=3600)
        assert report.found == self.world.erase(email, None)
        self.refresh_and_check(data)

    @rule(data=st.data())
    def rebuild(self, data: st.DataObject) -> None:
        assert self.server is not None
        self.server.holder.refresh(full=True)
        self.check(data.draw(st.randoms(use_true_random=False)))

    # -- checks -----------------------------------------------------------------------------------

    def refresh_and_check(self, data: st.DataObject) -> None:
        assert self.server is not None
        self.server.holder.refresh()  # incremental: every change must be applied by the next one
        refreshed = snapshot_content(self.server.holder.current.snapshot)
        built = snapshot_content(snapshots.build(Neo4jReader(self.store)))
        for part in built:
            differ = (
                {k: (refreshed[part].get(k), v) for k, v in built[part].items() if refreshed[part].get(k) != v}
                if isinstance(built[part], dict)
                else None
            )
            assert refreshed[part] == built[part], (part, differ)
        self.check(data.draw(st.randoms(use_true_random=False)))

    def check(self, rng: random.Random) -> None:
        for tenant in sorted({t for t, _ in self.keys}):
            with Client(self.address, self.key(tenant)) as client:
                # Five per tenant and step: the examples vary between processes (about 900 to 1,130
                # answers with four), and every run must check at least MIN_QUERIES.
                for _ in range(5):
                    self.check_warm_paths(client, tenant, rng)
                self.check_resolve(client, tenant)
                for deal_tenant, deal in sorted(self.deals):
                    if deal_tenant == tenant:
                        self.check_signals(client, tenant, deal)

    def check_resolve(self, client: Client, tenant: str) -> None:
        response = client.call(
            client.warm_paths.ResolvePeople, warm_paths_pb2.ResolvePeopleRequest(emails=list(PEOPLE + UNKNOWN))
        )
        assert {(p.email, p.pid) for p in response.people} == {
            (e, self.pseudo.pid(e)) for e in PEOPLE if self.world.held(tenant, e)
        }
        QUERIES["ResolvePeople"] += 1

    def check_signals(self, client: Client, tenant: str, deal: str) -> None:
        response = client.call(
            client.buyer_intelligence.ListDealSignals,
            buyer_intelligence_pb2.ListDealSignalsRequest(deal_id=deal, limit=100),
        )
        by_pid = {self.pseudo.pid(e): e for e in PEOPLE}
        for signal in response.signals:
            who = signal.who
            if who.identified:
                email = by_pid[who.pid]
                assert self.world.held(tenant, email) or self.world.shared(email), (tenant, email, signal)
                assert not who.company_domain or who.company_domain == self.world.current_company(email)
            else:
                assert (who.pid, who.company_domain, signal.kind) == ("", "", "went_silent")
        QUERIES["ListDealSignals"] += 1

    def check_warm_paths(self, client: Client, tenant: str, rng: random.Random) -> None:
        world = self.world
        members = {e for e in PEOPLE if e in world.members.get(tenant, set())}
        request = warm_paths_pb2.FindWarmPathsRequest(
            k=rng.choice([1, 3, 10]), max_hops=rng.choice([1, 2, 3]), allow_cross_tenant=rng.random() < 0.7
        )
        named = None
        if rng.random() < 0.75:
            named = rng.choice(PEOPLE + UNKNOWN)
            request.target_email = named
            targets = [named] if world.exists(named) else []
        else:
            domain = rng.choice((*COMPANIES, "nowhere.example"))
            request.target_company.domain = domain
            level = rng.choice([0, 0, 3, 4])
            request.target_company.role.min_title_level = level
            targets = [
                e
                for e in PEOPLE
                if world.exists(e)
                and world.current_company(e) == domain
                and (not level or TITLE_LEVELS.index(title_of(e)[0]) >= level - 1)
            ]
        sources = members
        if rng.random() < 0.2:
            rep = rng.choice(PEOPLE)
            request.source.rep_email = rep
            if rep not in members:
                with pytest.raises(grpc.RpcError) as info:
                    client.call(client.warm_paths.FindWarmPaths, request)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                QUERIES["FindWarmPaths"] += 1
                return
            sources = {rep}
        response = client.call(client.warm_paths.FindWarmPaths, request)
        QUERIES["FindWarmPaths"] += 1

        ranked = world.paths(
            tenant, targets, sources, max_hops=request.max_hops, cross=request.allow_cross_tenant, as_of=AS_OF
        )
        assert len(response.paths) == min(request.k, len(ranked))
        assert response.strength_source == heuristic.NAME
        expected = [(score, tuple(world.view(tenant, e, named=e == named) for e in seq)) for score, seq, _ in ranked]
        got = [
            (path.strength, tuple(_view(v) for v in [path.source, *(hop.person for hop in path.hops)]))
            for path in response.paths
        ]
        _same_top_k(got, expected)
        # The people each answered path stands for: a masked one is whoever the model's path with the
        # same rendering has there.
        stands_for: dict[tuple[View, ...], list[tuple[str, ...]]] = {}
        for (_, rendered), (_, seq, _) in zip(expected, ranked):
            stands_for.setdefault(rendered, []).append(seq)
        answered = [stands_for[rendered].pop(0) for _, rendered in got]
        reached = {seq[-1] for seq in answered}
        assert response.targets == sum(1 for t in targets if world.held(tenant, t) or t in reached)
        for path, seq in zip(response.paths, answered):
            self.check_evidence(tenant, path, list(seq), request.allow_cross_tenant)

    def check_evidence(self, tenant: str, path: warm_paths_pb2.WarmPath, emails: list[str], cross: bool) -> None:
        """Each hop's strength is the strongest usable relationship's; its evidence shows only if it
        is the tenant's own."""
        world = self.world
        for hop, a, b in zip(path.hops, emails, emails[1:]):
            e = hop.evidence
            if not e.observed_by_requester:
                assert (
                    e.interaction_count,
                    e.two_way_share,
                    e.last_interaction.seconds,
                    e.shared_employer_count,
                    list(e.shared_employers),
                ) == (0, 0.0, 0, 0, [])
                assert cross
            top, edges = world.best_edges(a, b, tenant, cross, AS_OF)
            assert abs(e.strength - top) <= 1e-9 * top
            if e.observed_by_requester:
                own = next(x for x in edges if x.tenant == tenant)
                assert (e.interaction_count, e.last_interaction.seconds) == (own.count, own.last_ts)
                assert abs(e.two_way_share - min(1.0, 2 * own.two_way / own.count)) < 1e-12
                assert set(e.shared_employers) == world.employers(a) & world.employers(b)
            else:
                assert any(x.tenant != tenant for x in edges)


def _view(person: common_pb2.PersonView) -> View:
    return View(
        pid=person.pid,
        identified=person.identified,
        own_member=person.own_member,
        title_level=person.title_level,
        function=person.function,
        company_domain=person.company_domain,
        company_size_band=person.company_size_band,
        company_industry=person.company_industry,
        description=person.description,
    )


def _same_top_k(got: list[tuple[float, Any]], expected: list[tuple[float, Any]]) -> None:
    """`got` is the top of `expected`: equal strength groups hold the same paths, and the group cut
    by k holds a subset of the expected candidates."""
    got_groups, expected_groups = groups(got), groups(expected)
    for i, (strength, paths) in enumerate(got_groups):
        assert i < len(expected_groups) and expected_groups[i][0] == strength, (got_groups, expected_groups[: i + 2])
        candidates = Counter(expected_groups[i][1])
        if i < len(got_groups) - 1:
            assert Counter(paths) == candidates
        else:
            assert not Counter(paths) - candidates, (paths, candidates)


@pytest.fixture(scope="module")
def machine_settings(neo4j_config: Config, pseudo: Pseudonymizer) -> Iterator[None]:
    with connect(neo4j_config) as store:
        migrate(store)
    TenancyMachine.config = dataclasses.replace(
        neo4j_config,
        api_key_pepper=PEPPER,
        server=dataclasses.replace(neo4j_config.server, port=0, metrics_port=0, refresh_interval_s=3600, as_of=AS_OF),
    )
    TenancyMachine.pseudo = pseudo
    return


def test_every_answer_obeys_the_visibility_rule_through_any_sequence_of_events(machine_settings: None) -> None:
    QUERIES.clear()
    run_state_machine_as_test(
        TenancyMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=8,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        ),
    )
    total = sum(QUERIES.values())
    print(f"checked {total} answers: {dict(QUERIES)}")
    if EXAMPLES >= 25:
        assert total >= MIN_QUERIES, QUERIES
