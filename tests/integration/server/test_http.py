"""relgraph.v1 over HTTP/JSON (the Connect protocol) on a real port, driven with plain HTTP and
compared with the gRPC answer to the same request from the same server."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import re
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from core.errors import ConfigError
from graph.store import connect
from relgraph.client import ApiError
from relgraph.v1 import admin_pb2, buyer_intelligence_pb2, ingest_pb2, pipeline_pb2, warm_paths_pb2
from server.app import create_server
from server.http_gateway import _CONNECTIONS_PER_CLIENT, _READ_DEADLINE_S, MAX_UNARY_BODY
from server.openapi import openapi_document
from tests.integration.server.conftest import Served, assert_same_answer

pytestmark = pytest.mark.neo4j
RPCS = [path.removeprefix("/relgraph.v1.") for path in openapi_document()["paths"]]


def post(
    served: Served, path: str, body: bytes, *, key: str | None = None, content_type: str = "application/json"
) -> tuple[int, dict[str, str], bytes]:
    """One POST over a fresh HTTP/1.1 connection: (status, headers, body)."""
    url = urlparse(served.http_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["Authorization"] = f"Bearer {served.keys.get(key, key)}"
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def call_json(served: Served, key: str, rpc: str, request: Message) -> tuple[int, dict[str, Any]]:
    status, _, body = post(served, f"/relgraph.v1.{rpc}", json_format.MessageToJson(request).encode(), key=key)
    return status, json.loads(body)


def envelope(flags: int, payload: bytes) -> bytes:
    return struct.pack(">BI", flags, len(payload)) + payload


def unenvelope(body: bytes) -> list[tuple[int, bytes]]:
    parts, at = [], 0
    while at < len(body):
        flags, length = struct.unpack_from(">BI", body, at)
        parts.append((flags, body[at + 5 : at + 5 + length]))
        at += 5 + length
    return parts


def _emails(network: Path, name: str, field: str) -> list[str]:
    return [json.loads(line)[field] for line in (network / "ingest" / f"{name}.jsonl").read_text().splitlines()]


def test_every_unary_rpc_answers_over_http_as_over_grpc(served: Served) -> None:
    target = _emails(served.network, "deal_contacts", "email")[0]
    deal = _emails(served.network, "deals", "id")[0]
    at = _emails(served.network, "deals", "account")[0]
    with served.client("admin_a") as administrator:
        spares = [
            administrator.create_api_key(admin_pb2.CreateApiKeyRequest(role=admin_pb2.ROLE_MEMBER)).info.key_id
            for _ in "ab"
        ]
    wp, bi, member, admin = warm_paths_pb2, buyer_intelligence_pb2, "member_a", "admin_a"
    # (key, RPC, its request over gRPC, over HTTP if another: revoking a key twice answers differently)
    cases: list[tuple[str, str, Message, Message | None]] = [
        (member, "WarmPathsService/FindWarmPaths", wp.FindWarmPathsRequest(target_email=target, k=5), None),
        (member, "WarmPathsService/FindWarmPaths", wp.FindWarmPathsRequest(target_company={"domain": at}), None),
        (member, "WarmPathsService/ResolvePeople", wp.ResolvePeopleRequest(emails=[target, "nobody@x.example"]), None),
        (member, "BuyerIntelligenceService/PredictBuyerProcess",bi.PredictBuyerProcessRequest(company_domain=at), None),
        (member, "BuyerIntelligenceService/EstimateDealStage", bi.EstimateDealStageRequest(deal_id=deal), None),
        (member, "BuyerIntelligenceService/ListDealSignals", bi.ListDealSignalsRequest(deal_id=deal, limit=5), None),
        (admin, "IngestService/EraseSubject", ingest_pb2.EraseSubjectRequest(email="never.seen@http.example"), None),
        (member, "AdminService/GetSnapshotStatus", admin_pb2.GetSnapshotStatusRequest(), None),
        (member, "AdminService/ListModelVersions", admin_pb2.ListModelVersionsRequest(), None),
        (admin, "AdminService/ListApiKeys", admin_pb2.ListApiKeysRequest(), None),
        (member, "PipelineService/GetPipelineHealth", pipeline_pb2.GetPipelineHealthRequest(), None),
        (member, "PipelineService/ForecastBookings", pipeline_pb2.ForecastBookingsRequest(period="month"), None),
        (member, "PipelineService/ListProposedUpdates", pipeline_pb2.ListProposedUpdatesRequest(), None),
        (admin, "AdminService/RevokeApiKey", *(admin_pb2.RevokeApiKeyRequest(key_id=k) for k in spares)),
        (member, "AdminService/CreateApiKey", admin_pb2.CreateApiKeyRequest(role=admin_pb2.ROLE_ADMIN), None),
    ]  # fmt: skip
    assert {rpc for _, rpc, *_ in cases} | {"IngestService/IngestEvents"} == set(RPCS)
    for key, rpc, request, http_request in cases:
        with served.client(key) as client:
            method = getattr(client, re.sub(r"(?<!^)(?=[A-Z])", "_", rpc.split("/")[1]).lower())
            try:
                expected: Message | ApiError = method(request)
            except ApiError as error:
                expected = error
        status, answer = call_json(served, key, rpc, http_request or request)
        if isinstance(expected, ApiError):
            assert status >= 400 and answer["code"] == expected.code.lower(), (rpc, answer)
            assert answer["message"] == expected.message
            continue
        assert status == 200, (rpc, answer)
        got = json_format.ParseDict(answer, type(expected)())
        for volatile in ("snapshot_age_seconds", "age_seconds"):  # the clock moved between the calls
            for message in (got, expected):
                if volatile in message.DESCRIPTOR.fields_by_name:
                    message.ClearField(volatile)
        assert_same_answer(got, expected)


def test_curl_finds_the_same_warm_paths_as_grpc(served: Served) -> None:
    target = _emails(served.network, "deal_contacts", "email")[0]
    done = subprocess.run(
        [
            "curl", "-sS", "-H", f"Authorization: Bearer {served.keys['member_a']}",
            "-H", "Content-Type: application/json", "-d", json.dumps({"targetEmail": target, "k": 3}),
            f"{served.http_url}/relgraph.v1.WarmPathsService/FindWarmPaths",
        ],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    over_http = json_format.Parse(done.stdout, warm_paths_pb2.FindWarmPathsResponse())
    with served.client("member_a") as member:
        over_grpc = member.find_warm_paths(warm_paths_pb2.FindWarmPathsRequest(target_email=target, k=3))
    assert over_grpc.paths
    over_http.snapshot_age_seconds = over_grpc.snapshot_age_seconds
    assert_same_answer(over_http, over_grpc)


def test_ingest_streams_over_connect_envelopes(served: Served) -> None:
    a = served.tenants[0]
    records = [
        ingest_pb2.IngestEventsRequest(member=ingest_pb2.MemberRecord(email="http.rep@http.example", role="rep")),
        ingest_pb2.IngestEventsRequest(
            interaction=ingest_pb2.InteractionRecord(
                type="email", ts="1760000000", **{"from": "http.rep@http.example"}, to=["buyer@http-buyer.example"]
            )
        ),
    ]
    body = b"".join(envelope(0, json_format.MessageToJson(r).encode()) for r in records)
    status, headers, answer = post(
        served, "/relgraph.v1.IngestService/IngestEvents", body, key="member_a", content_type="application/connect+json"
    )
    assert status == 200 and headers["Content-Type"] == "application/connect+json"
    (flags, message), (end_flags, end) = unenvelope(answer)
    assert (flags, end_flags, json.loads(end)) == (0, 2, {})
    over_http = json_format.Parse(message, ingest_pb2.IngestEventsResponse())
    with served.client("member_a") as member:
        over_grpc = member.ingest_events(records)  # the same records again: merged, nothing new
    assert (over_http.accepted, over_http.rejected) == (over_grpc.accepted, over_grpc.rejected) == (2, 0)
    assert over_http.events_added == 1 and over_grpc.events_added == 0
    assert a  # the stream is the key's tenant's

    # An error travels in the end-of-stream envelope; a cut envelope is refused before any write.
    status, _, answer = post(
        served,
        "/relgraph.v1.IngestService/IngestEvents",
        body,
        key="rgk_0000_nope",
        content_type="application/connect+json",
    )
    ((flags, end),) = unenvelope(answer)
    assert status == 200 and flags == 2 and json.loads(end)["error"]["code"] == "unauthenticated"
    status, _, answer = post(
        served,
        "/relgraph.v1.IngestService/IngestEvents",
        body[:-3],
        key="member_a",
        content_type="application/connect+json",
    )
    assert status == 400 and json.loads(answer)["code"] == "invalid_argument"


def test_errors_are_connect_errors_with_their_details(served: Served) -> None:
    find = "/relgraph.v1.WarmPathsService/FindWarmPaths"
    ok = json.dumps({"targetEmail": "x@y.example"}).encode()

    status, _, body = post(served, find, ok)
    assert (status, json.loads(body)["code"]) == (401, "unauthenticated")
    status, _, body = post(
        served, find, json.dumps({"targetEmail": "x@y.example", "maxHops": 4}).encode(), key="member_a"
    )
    error = json.loads(body)
    assert (status, error["code"]) == (400, "invalid_argument")
    (detail,) = error["details"]
    assert detail["type"] == "google.rpc.BadRequest"
    assert [v["field"] for v in detail["debug"]["fieldViolations"]] == ["max_hops"]
    status, _, body = post(
        served, "/relgraph.v1.BuyerIntelligenceService/ListDealSignals", b'{"dealId": "D1"}', key="partner_a"
    )
    assert (status, json.loads(body)["code"]) == (403, "permission_denied")

    for request_body, content_type, expected_status, words in [
        (b"{not json", "application/json", 400, "not a FindWarmPathsRequest"),
        (b'{"nickname": "x"}', "application/json", 400, "nickname"),
        (b'{"k": "many"}', "application/json", 400, "not a FindWarmPathsRequest"),
        (b"\xff\xfe", "application/json", 400, "not a FindWarmPathsRequest"),
        (b"[" * 100_000, "application/json", 400, "not a FindWarmPathsRequest"),
        (ok, "text/plain", 415, "Content-Type must be application/json"),
        (b" " * (MAX_UNARY_BODY + 1), "application/json", 413, "at most"),
    ]:
        status, _, body = post(served, find, request_body, key="member_a", content_type=content_type)
        error = json.loads(body)
        assert status == expected_status and words in error["message"], (request_body[:20], error)
    status, _, body = post(served, "/relgraph.v1.WarmPathsService/DropTables", ok, key="member_a")
    assert (status, json.loads(body)["code"]) == (404, "not_found")


def test_rate_limits_answer_429_with_retry_after(served: Served) -> None:
    find = "/relgraph.v1.WarmPathsService/FindWarmPaths"
    scoped = _emails(served.network, "deals", "account")[0]
    body = json.dumps({"targetCompany": {"domain": scoped}, "maxHops": 2}).encode()  # within the scope
    statuses = []
    for _ in range(12):  # the partner's bucket holds 4
        status, headers, answer = post(served, find, body, key="partner_a")
        statuses.append(status)
        if status == 429:
            assert int(headers["Retry-After"]) >= 1
            assert json.loads(answer)["details"][0]["type"] == "google.rpc.RetryInfo"
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) <= {200}


def test_openapi_and_the_page_are_served(served: Served) -> None:
    url = urlparse(served.http_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        connection.request("GET", "/openapi.json")
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read()) == openapi_document()
        connection.request("GET", "/")
        response = connection.getresponse()
        page = response.read().decode()
        assert response.status == 200 and "connect-src 'self'" in response.getheader("Content-Security-Policy", "")
        assert "FindWarmPaths" in page
        connection.request("GET", "/../../etc/passwd")
        response = connection.getresponse()
        assert response.status == 404 and b"root:" not in response.read()
    finally:
        connection.close()


def raw(served: Served, data: bytes, *, wait_s: float = 10.0) -> bytes:
    """Send bytes on a fresh connection and read until the server closes it or `wait_s` passes."""
    url = urlparse(served.http_url)
    with socket.create_connection((url.hostname, url.port), timeout=wait_s) as connection:
        connection.sendall(data)
        received = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := connection.recv(65536):
                received += chunk
        return received


def test_a_stream_is_authenticated_before_its_body_is_read(served: Served) -> None:
    """The answer comes while most of the declared body is still unsent: nothing waits for it."""
    path = "/relgraph.v1.IngestService/IngestEvents"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/connect+json\r\n"
        f"Authorization: Bearer rgk_0000_nope\r\nContent-Length: {16 << 20}\r\n\r\n"
    ).encode()
    answer = raw(served, head + envelope(0, b"{}") * 1000, wait_s=10)
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200") and b"unauthenticated" in body


def test_a_cut_stream_writes_nothing(served: Served) -> None:
    email = "cut.stream@http.example"
    good = envelope(0, json_format.MessageToJson(
        ingest_pb2.IngestEventsRequest(member=ingest_pb2.MemberRecord(email=email, role="rep"))).encode())  # fmt: skip
    status, _, answer = post(
        served, "/relgraph.v1.IngestService/IngestEvents", good + envelope(1, b"{}"), key="member_a",
        content_type="application/connect+json",
    )  # fmt: skip
    assert status == 400 and "compression" in json.loads(answer)["message"]
    served.server.holder.refresh()
    with served.client("member_a") as member:
        assert not member.resolve_people(warm_paths_pb2.ResolvePeopleRequest(emails=[email])).people


@pytest.mark.parametrize(
    ("headers", "status", "words"),
    [
        ("Content-Length: 2\r\nContent-Length: 40\r\n", 411, "exactly one Content-Length"),
        ("Content-Length: +2\r\n", 411, "exactly one Content-Length"),
        ("Transfer-Encoding: chunked\r\nContent-Length: 2\r\n", 411, "Transfer-Encoding"),
        ("Content-Length: 2\r\nAuthorization: Bearer \xe9\r\n", 400, "Authorization must be printable ASCII"),
        ("Content-Length: 2\r\nConnect-Timeout-Ms: \xb2\r\n", 400, "Connect-Timeout-Ms"),
        ("Content-Length: 2\r\nContent-Type: application/json; charset=utf-16\r\n", 415, "UTF-8"),
    ],
)
def test_hostile_headers_are_refused_with_json(served: Served, headers: str, status: int, words: str) -> None:
    content_type = "" if "Content-Type" in headers else "Content-Type: application/json\r\n"
    request = f"POST /relgraph.v1.WarmPathsService/FindWarmPaths HTTP/1.1\r\nHost: x\r\n{content_type}{headers}\r\n{{}}"
    head, _, body = raw(served, request.encode("latin-1")).partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status}".encode()), head
    assert words in json.loads(body)["message"]


def test_methods_other_than_get_and_post(served: Served) -> None:
    url = urlparse(served.http_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        for method, path, status in (
            ("HEAD", "/", 200),
            ("OPTIONS", "/relgraph.v1.WarmPathsService/FindWarmPaths", 405),
            ("GET", "/relgraph.v1.WarmPathsService/FindWarmPaths", 405),
            ("DELETE", "/", 405),
        ):
            connection.request(method, path)
            response = connection.getresponse()
            body = response.read()
            assert response.status == status, (method, path)
            assert body == b"" if method == "HEAD" else json.loads(body)["code"]
    finally:
        connection.close()


def test_connections_per_client_are_bounded_and_slow_ones_cut(served: Served) -> None:
    url = urlparse(served.http_url)
    idle = [socket.create_connection((url.hostname, url.port), timeout=10) for _ in range(_CONNECTIONS_PER_CLIENT)]
    try:
        time.sleep(0.5)
        refused = raw(served, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 503") and b"too many connections" in refused
    finally:
        for connection in idle:
            connection.close()
    time.sleep(0.5)
    # A client trickling a header line every two seconds is cut at the reading deadline.
    with socket.create_connection((url.hostname, url.port), timeout=5) as slow:
        slow.sendall(b"POST /relgraph.v1.WarmPathsService/FindWarmPaths HTTP/1.1\r\n")
        started, cut = time.monotonic(), False
        while time.monotonic() - started < _READ_DEADLINE_S + 10:
            time.sleep(2)
            try:
                slow.sendall(b"X-Slow: 1\r\n")
                if slow.recv(1, socket.MSG_DONTWAIT) == b"":
                    cut = True
                    break
            except BlockingIOError:
                continue
            except OSError:
                cut = True
                break
        assert cut and time.monotonic() - started < _READ_DEADLINE_S + 10


def test_a_taken_http_port_is_one_clear_error(served: Served) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = dataclasses.replace(
            served.config, server=dataclasses.replace(served.config.server, port=0, http_port=taken.getsockname()[1])
        )
        with pytest.raises(ConfigError, match="cannot serve HTTP on"):
            create_server(config, store=connect(served.config))
