"""The Python client's own logic (retries, deadlines, decoded errors) over a real gRPC channel to
a scripted AdminService on a real port; the client against the real server is tested in
tests/integration/server/test_grpc.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from relgraph.client import ApiError, Client, RetryPolicy
from relgraph.v1 import admin_pb2, admin_pb2_grpc

FAST_RETRY = RetryPolicy(attempts=4, initial_backoff_s=0.01, max_backoff_s=0.05)


class ScriptedAdmin(admin_pb2_grpc.AdminServiceServicer):  # type: ignore[misc]
    """Fails the first `failures` calls with UNAVAILABLE, then answers; counts calls."""

    def __init__(self) -> None:
        self.failures = 0
        self.calls = 0

    def _answer(self, context: grpc.ServicerContext, response: Any) -> Any:
        self.calls += 1
        context.send_initial_metadata((("x-request-id", "req-7"),))
        if self.calls <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        return response

    def GetSnapshotStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._answer(context, admin_pb2.GetSnapshotStatusResponse(people=3))

    def CreateApiKey(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._answer(context, admin_pb2.CreateApiKeyResponse(key="k"))

    def RevokeApiKey(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls += 1
        context.send_initial_metadata((("x-request-id", "req-8"),))
        status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="bad request")
        for detail in (
            error_details_pb2.BadRequest(
                field_violations=[error_details_pb2.BadRequest.FieldViolation(field="key_id", description="empty")]
            ),
            error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1, nanos=500_000_000)),
        ):
            packed = any_pb2.Any()
            packed.Pack(detail)
            status.details.append(packed)
        context.abort_with_status(rpc_status.to_status(status))


@pytest.fixture
def scripted() -> Iterator[tuple[ScriptedAdmin, str]]:
    admin = ScriptedAdmin()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    admin_pb2_grpc.add_AdminServiceServicer_to_server(admin, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield admin, f"127.0.0.1:{port}"
    finally:
        server.stop(None)


def test_an_idempotent_call_is_retried_while_the_server_is_unavailable(scripted: tuple[ScriptedAdmin, str]) -> None:
    admin, address = scripted
    admin.failures = 2
    with Client(address, "key", retry=FAST_RETRY) as client:
        assert client.get_snapshot_status().people == 3
    assert admin.calls == 3


def test_retries_stop_at_the_policys_attempts(scripted: tuple[ScriptedAdmin, str]) -> None:
    admin, address = scripted
    admin.failures = 99
    with Client(address, "key", retry=FAST_RETRY) as client, pytest.raises(ApiError) as info:
        client.get_snapshot_status()
    assert (info.value.code, info.value.attempts, admin.calls) == ("UNAVAILABLE", 4, 4)
    assert info.value.request_id == "req-7"


def test_a_call_that_is_not_idempotent_is_never_retried(scripted: tuple[ScriptedAdmin, str]) -> None:
    admin, address = scripted
    admin.failures = 1
    with Client(address, "key", retry=FAST_RETRY) as client, pytest.raises(ApiError) as info:
        client.create_api_key(admin_pb2.CreateApiKeyRequest(role=admin_pb2.ROLE_MEMBER))
    assert (info.value.code, info.value.attempts, admin.calls) == ("UNAVAILABLE", 1, 1)


def test_the_deadline_bounds_the_retries(scripted: tuple[ScriptedAdmin, str]) -> None:
    admin, address = scripted
    admin.failures = 10_000
    slow = RetryPolicy(attempts=1000, initial_backoff_s=0.05, max_backoff_s=0.05)
    started = time.monotonic()
    with Client(address, "key", retry=slow) as client, pytest.raises(ApiError):
        client.get_snapshot_status(timeout=0.5)
    assert time.monotonic() - started < 10  # without the deadline, 1000 attempts would take 50 s
    assert admin.calls < 1000


def test_rich_error_details_are_decoded(scripted: tuple[ScriptedAdmin, str]) -> None:
    _, address = scripted
    with Client(address, "key", retry=FAST_RETRY) as client, pytest.raises(ApiError) as info:
        client.revoke_api_key(admin_pb2.RevokeApiKeyRequest())
    error = info.value
    assert error.code == "INVALID_ARGUMENT" and error.message == "bad request"
    assert error.field_violations == (("key_id", "empty"),)
    assert error.retry_after_s == pytest.approx(1.5)
    assert error.request_id == "req-8" and error.attempts == 1
    rendered = ["INVALID_ARGUMENT: bad request", "  field key_id: empty", "  retry after 1.500 s"]
    assert str(error).splitlines() == rendered


def test_an_unreachable_server_is_an_api_error_not_a_grpc_one() -> None:
    with Client("127.0.0.1:1", "key", retry=FAST_RETRY) as client, pytest.raises(ApiError) as info:
        client.get_snapshot_status(timeout=1.0)
    assert info.value.code in {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
