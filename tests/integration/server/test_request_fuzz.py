"""Fuzzing of every RPC's request validation through a real server: hypothesis fills each request
message field by field (hostile strings, extreme numbers, unknown enum values, nested messages)
and the oracle is a clear status (never UNKNOWN or INTERNAL), nothing written by a refused ingest
stream, and a server that still answers health checks and real queries afterwards."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import Config, RateLimit
from core.vocabulary import MAX_TIME, MIN_TIME
from gnn.buyer_process import CohortMinimum
from gnn.registry import ModelRegistry
from graph.ingest import ingest
from graph.neo4j_reader import Neo4jReader
from graph.pseudonymize import Pseudonymizer
from graph.reader import ALL_TENANTS
from graph.schema import migrate
from graph.store import GraphStore, Query, connect
from jobs.generate import AS_OF
from jobs.train_buyer import train_buyer_model
from relgraph.client import Client
from relgraph.v1 import admin_pb2, buyer_intelligence_pb2, ingest_pb2, warm_paths_pb2
from server.app import RelgraphServer, create_server
from server.auth import create_api_key

pytestmark = pytest.mark.neo4j
PEPPER = "test-pepper-0123456789"
# Every code a well-formed refusal may have; UNKNOWN, INTERNAL and UNAVAILABLE would be defects here.
CLEAR = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
_COUNT = Query(
    "test.count", "MATCH (n) WITH count(n) AS nodes MATCH ()-[r]->() RETURN nodes, count(r) AS relationships"
)

_STRINGS = st.one_of(
    st.sampled_from(
        [
            "",
            "rep@acme.example",
            "x@y.example",
            "buyer.example",
            "D0000001",
            "finance",
            "economic_buyer",
            "2026-01-01T00:00:00Z",
            "9999-12-31T00:00:00Z",
            "-1",
            "NaN",
            "a\nb",
            "x" * 70_000,
            "é" * 300,
            "\x00",
            "company:buyer.example",
            "max-hops:9",
        ]
    ),
    st.text(max_size=40),
)
_NUMBERS = {
    FieldDescriptor.TYPE_DOUBLE: st.one_of(st.floats(), st.sampled_from([float("inf"), float("nan"), -0.0, 1e308])),
    FieldDescriptor.TYPE_FLOAT: st.floats(width=32),
}
_INTS = {
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
}


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    """A hostile value for one field (a list of them for a repeated field)."""
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if field.message_type.full_name == "google.protobuf.Timestamp":
            one: st.SearchStrategy[Any] = st.fixed_dictionaries({"seconds": st.integers(-62135596800, 253402300799)})
        else:
            one = messages(field.message_type, depth + 1) if depth < 3 else st.just({})
    elif field.type == FieldDescriptor.TYPE_ENUM:
        one = st.integers(-(2**31), 2**31 - 1) | st.sampled_from([v.number for v in field.enum_type.values])
    elif field.type == FieldDescriptor.TYPE_BOOL:
        one = st.booleans()
    elif field.type == FieldDescriptor.TYPE_STRING:
        one = _STRINGS
    elif field.type in _NUMBERS:
        one = _NUMBERS[field.type]
    else:
        one = _INTS.get(field.type, st.integers(0, 2**31))
    return st.lists(one, max_size=4) if field.is_repeated else one


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Field values for a message of `descriptor`: any subset of its fields, each hostile."""
    return st.fixed_dictionaries({}, optional={f.name: _value(f, depth) for f in descriptor.fields})


def _paths(descriptor: Descriptor, depth: int = 0) -> list[tuple[FieldDescriptor, ...]]:
    """Every field of a message and of its nested (non-repeated) messages, as paths."""
    out: list[tuple[FieldDescriptor, ...]] = []
    for field in descriptor.fields:
        out.append((field,))
        if (
            field.type == FieldDescriptor.TYPE_MESSAGE
            and not field.is_repeated
            and depth < 3
            and field.message_type.full_name != "google.protobuf.Timestamp"
        ):
            out += [(field, *rest) for rest in _paths(field.message_type, depth + 1)]
    return out


@st.composite
def requests(draw: st.DrawFn, descriptor: Descriptor, valid: dict[str, Any]) -> dict[str, Any]:
    """Mostly a valid request with one or two fields made hostile (so the hostile value is what
    validation meets), sometimes a request hostile throughout."""
    paths = _paths(descriptor)
    if not paths or draw(st.integers(0, 4)) == 0:
        return draw(messages(descriptor))
    values = copy.deepcopy(valid)
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=2)):
        node = values
        for field in path[:-1]:
            node = node.setdefault(field.name, {})
            if not isinstance(node, dict):
                break
        else:
            node[path[-1].name] = draw(_value(path[-1], len(path)))
    return values


def build(message_type: type[Message], values: dict[str, Any]) -> Message:
    message = message_type()
    for name, value in values.items():
        field = message.DESCRIPTOR.fields_by_name[name]
        try:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                if field.is_repeated:
                    for item in value:
                        getattr(message, name).append(build(type(getattr(message, name).add()), item))
                else:
                    getattr(message, name).CopyFrom(build(type(getattr(message, name)), value))
            elif field.is_repeated:
                getattr(message, name).extend(value)
            else:
                setattr(message, name, value)
        except (ValueError, TypeError):  # a value the message itself cannot hold never reaches a server
            pass
    return message


@dataclasses.dataclass
class Served:
    server: RelgraphServer
    address: str
    store: GraphStore
    keys: dict[str, str]
    deal: str
    account: str


@pytest.fixture(scope="module")
def served(
    neo4j_config: Config, small_network: Path, pseudo: Pseudonymizer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    store = connect(neo4j_config)
    migrate(store)
    store.write(Query("test.clear", "MATCH (n) WHERE NOT n:SchemaMigration DETACH DELETE n"))
    ingest(store, [small_network / "ingest"], pseudo, progress=False)
    # A buyer model serves, so PredictBuyerProcess answers (and is checked) past its validation.
    home = tmp_path_factory.mktemp("fuzz-home")
    registry = ModelRegistry(home / "models")
    version = train_buyer_model(
        Neo4jReader(store).deal_bundle(ALL_TENANTS),
        as_of=AS_OF,
        registry=registry,
        scope={},
        minimum=CohortMinimum(1, 1),
    )
    registry.promote("buyer", version.name)
    tenant = json.loads((small_network / "ingest" / "members.jsonl").read_text().partition("\n")[0])["tenant"]
    keys = {
        "member": create_api_key(store, PEPPER, tenant=tenant, role="member", scopes=[])[0],
        "admin": create_api_key(store, PEPPER, tenant="fuzz-admin", role="admin", scopes=[])[0],
    }
    deal, account = next(
        (d["id"], d["account"])
        for d in map(json.loads, (small_network / "ingest" / "deals.jsonl").read_text().splitlines())
        if d["tenant"] == tenant
    )
    config = dataclasses.replace(
        neo4j_config,
        home=home,
        api_key_pepper=PEPPER,
        server=dataclasses.replace(
            neo4j_config.server,
            port=0,
            metrics_port=0,
            refresh_interval_s=3600,
            min_cohort_deals=1,
            min_cohort_tenants=1,
            member_rate=RateLimit(per_second=10_000.0, burst=10_000),
            admin_rate=RateLimit(per_second=10_000.0, burst=10_000),
        ),
    )
    server, port = create_server(config, store=connect(neo4j_config))
    server.start()
    try:
        yield Served(server, f"127.0.0.1:{port}", store, keys, deal, account)
    finally:
        server.stop()
        store.close()


def _clear_status(call: Any) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        assert error.code() in CLEAR, (error.code(), error.details())  # noqa: PT017 - any clear status is valid
        assert len(error.details() or "") <= 1000  # noqa: PT017
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


# Each RPC with a valid request to start from (the deal id and company are the world's).
_RPCS = [
    (
        "warm_paths",
        "FindWarmPaths",
        warm_paths_pb2.FindWarmPathsRequest,
        "member",
        {
            "target_company": {"domain": "ACCOUNT", "role": {"min_title_level": 3, "functions": ["finance"]}},
            "k": 5,
            "max_hops": 2,
            "allow_cross_tenant": True,
        },
    ),
    ("warm_paths", "ResolvePeople", warm_paths_pb2.ResolvePeopleRequest, "member", {"emails": ["rep@acme.example"]}),
    (
        "buyer_intelligence",
        "EstimateDealStage",
        buyer_intelligence_pb2.EstimateDealStageRequest,
        "member",
        {"deal_id": "DEAL"},
    ),
    (
        "buyer_intelligence",
        "ListDealSignals",
        buyer_intelligence_pb2.ListDealSignalsRequest,
        "member",
        {"deal_id": "DEAL", "limit": 10},
    ),
    (
        "buyer_intelligence",
        "PredictBuyerProcess",
        buyer_intelligence_pb2.PredictBuyerProcessRequest,
        "member",
        {
            "company_domain": "ACCOUNT",
            "profile": {"amount": 1000.0, "product": "platform", "engaged_roles": ["champion"]},
            "start": {"seconds": 1770000000},
        },
    ),
    ("admin", "GetSnapshotStatus", admin_pb2.GetSnapshotStatusRequest, "member", {}),
    ("admin", "ListModelVersions", admin_pb2.ListModelVersionsRequest, "member", {}),
    (
        "admin",
        "CreateApiKey",
        admin_pb2.CreateApiKeyRequest,
        "admin",
        {"role": 2, "scopes": ["company:buyer.example"], "label": "partner portal"},
    ),
    ("admin", "RevokeApiKey", admin_pb2.RevokeApiKeyRequest, "admin", {"key_id": "0123456789ab"}),
    ("admin", "ListApiKeys", admin_pb2.ListApiKeysRequest, "admin", {}),
    ("ingest", "EraseSubject", ingest_pb2.EraseSubjectRequest, "admin", {"email": "nobody@nowhere.example"}),
]


@pytest.mark.parametrize(("service", "method", "message_type", "role", "valid"), _RPCS, ids=[r[1] for r in _RPCS])
def test_every_request_field_is_validated(
    served: Served, service: str, method: str, message_type: type[Message], role: str, valid: dict[str, Any]
) -> None:
    codes: set[grpc.StatusCode] = set()
    valid = json.loads(json.dumps(valid).replace("ACCOUNT", served.account).replace("DEAL", served.deal))

    @FUZZ
    @given(requests(message_type.DESCRIPTOR, valid))
    def fuzz(values: dict[str, Any]) -> None:
        request = build(message_type, values)
        with Client(served.address, served.keys[role]) as client:
            code = _clear_status(lambda: client.call(getattr(getattr(client, service), method), request, timeout=30))
        if code == grpc.StatusCode.OK:
            _assert_well_formed(request)
        codes.add(code)

    fuzz()
    _still_healthy(served)


_RECORD = {
    "interaction": {
        "type": "email",
        "ts": "2026-02-01T10:00:00Z",
        "from": "rep@acme.example",
        "to": ["ops@buyer.example"],
    }
}


@FUZZ
@given(st.lists(requests(ingest_pb2.IngestEventsRequest.DESCRIPTOR, _RECORD), min_size=1, max_size=5))
def test_an_ingest_stream_is_written_whole_or_not_at_all(served: Served, stream: list[dict[str, Any]]) -> None:
    requests = [build(ingest_pb2.IngestEventsRequest, values) for values in stream]
    for request in requests:
        request.lenient = False  # the first message decides; strict everywhere
    before = served.store.read(_COUNT)
    with Client(served.address, served.keys["member"]) as client:
        response = client.call(client.ingest.IngestEvents, iter(requests), timeout=60)
    assert response.records_read == len(requests)
    if response.rejected:
        assert response.accepted == 0 and served.store.read(_COUNT) == before
        assert all(r.reason and len(r.reason) < 400 for r in response.first_rejections)


def _assert_well_formed(message: Message) -> None:
    """What any accepted request must hold, whatever its RPC: defined enum values, finite numbers,
    times within the documented window."""
    for field, value in message.ListFields():
        for item in value if field.is_repeated else [value]:
            if field.type == FieldDescriptor.TYPE_ENUM:
                assert item in field.enum_type.values_by_number, (field.full_name, item)
            elif field.type == FieldDescriptor.TYPE_DOUBLE:
                assert math.isfinite(item), (field.full_name, item)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                if field.message_type.full_name == "google.protobuf.Timestamp":
                    assert MIN_TIME <= item.seconds < MAX_TIME, (field.full_name, item)
                else:
                    _assert_well_formed(item)


def _still_healthy(served: Served) -> None:
    channel = grpc.insecure_channel(served.address)
    assert (
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest()).status
        == health_pb2.HealthCheckResponse.SERVING
    )
    with Client(served.address, served.keys["member"]) as client:
        client.call(client.warm_paths.FindWarmPaths, warm_paths_pb2.FindWarmPathsRequest(target_email="x@y.example"))
        client.call(
            client.buyer_intelligence.ListDealSignals,
            buyer_intelligence_pb2.ListDealSignalsRequest(deal_id=served.deal),
        )
