"""The Python client of relgraph.v1: one channel to the server with the API key on every call,
a typed method per RPC, a deadline per call, retries with backoff when the server is unavailable
(idempotent calls only), and failures raised as `ApiError` with the server's rich details decoded.

    from relgraph.client import Client
    from relgraph.v1.warm_paths_pb2 import FindWarmPathsRequest

    with Client("127.0.0.1:50051", key) as relgraph:
        answer = relgraph.find_warm_paths(FindWarmPathsRequest(target_email="cfo@buyer.example", k=5))
        for path in answer.paths:
            print(path.score, path.source.description, [hop.person.description for hop in path.hops])

The raw stubs stay available (`client.warm_paths`, ...) with `client.call(stub_method, request)`
for callers that want gRPC's own errors and no retries (the tests and the benchmarks)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from relgraph.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    buyer_intelligence_pb2,
    buyer_intelligence_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    pipeline_pb2,
    pipeline_pb2_grpc,
    warm_paths_pb2,
    warm_paths_pb2_grpc,
)

DEFAULT_SERVER = "127.0.0.1:50051"
Answer = TypeVar("Answer")


@dataclass(frozen=True)
class ApiError(Exception):
    """A call the server (or the channel) refused: the status code's name (`INVALID_ARGUMENT`, ...),
    its message, and the decoded details: the request's field violations as (field, description),
    how long to wait before retrying when the server said, and the request id to quote."""

    code: str
    message: str
    field_violations: tuple[tuple[str, str], ...] = ()
    retry_after_s: float | None = None
    request_id: str = ""
    attempts: int = field(default=1, compare=False)

    def __str__(self) -> str:
        lines = [f"{self.code}: {self.message}"]
        lines += [f"  field {f}: {d}" for f, d in self.field_violations]
        if self.retry_after_s is not None:
            lines.append(f"  retry after {self.retry_after_s:.3f} s")
        return "\n".join(lines)

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError, attempts: int = 1) -> ApiError:
        violations: list[tuple[str, str]] = []
        retry_after: float | None = None
        status = rpc_status.from_call(error)
        for detail in status.details if status else []:
            bad_request, retry = error_details_pb2.BadRequest(), error_details_pb2.RetryInfo()
            if detail.Unpack(bad_request):
                violations += [(v.field, v.description) for v in bad_request.field_violations]
            elif detail.Unpack(retry):
                retry_after = retry.retry_delay.ToTimedelta().total_seconds()
        metadata = dict(error.initial_metadata() or ()) if hasattr(error, "initial_metadata") else {}
        return cls(
            code=error.code().name,
            message=error.details() or "",
            field_violations=tuple(violations),
            retry_after_s=retry_after,
            request_id=str(metadata.get("x-request-id", "")),
            attempts=attempts,
        )


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of an idempotent call answered UNAVAILABLE (server restarting, connection lost):
    exponential backoff with full jitter, within the call's deadline."""

    attempts: int = 4
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0

    def backoff_s(self, retry: int) -> float:
        return random.uniform(0, min(self.max_backoff_s, self.initial_backoff_s * 2**retry))


class Client:
    """Every relgraph.v1 service over one channel. `timeout` is each call's deadline in seconds
    (retries included); a method's `timeout=` overrides it."""

    def __init__(self, server: str, key: str, *, timeout: float = 30.0, retry: RetryPolicy | None = None) -> None:
        self.channel = grpc.insecure_channel(server)
        self._metadata = (("authorization", f"Bearer {key}"),)
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self.warm_paths = warm_paths_pb2_grpc.WarmPathsServiceStub(self.channel)
        self.buyer_intelligence = buyer_intelligence_pb2_grpc.BuyerIntelligenceServiceStub(self.channel)
        self.ingest = ingest_pb2_grpc.IngestServiceStub(self.channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)
        self.pipeline = pipeline_pb2_grpc.PipelineServiceStub(self.channel)

    def call(self, method: Any, request: Any, timeout: float | None = 30.0) -> Any:
        """One attempt of a raw stub method; gRPC's own RpcError on failure."""
        return method(request, metadata=self._metadata, timeout=timeout)

    # Warm paths
    def find_warm_paths(
        self, request: warm_paths_pb2.FindWarmPathsRequest, *, timeout: float | None = None
    ) -> warm_paths_pb2.FindWarmPathsResponse:
        return self._unary(
            warm_paths_pb2.FindWarmPathsResponse, self.warm_paths.FindWarmPaths, request, timeout, idempotent=True
        )

    def resolve_people(
        self, request: warm_paths_pb2.ResolvePeopleRequest, *, timeout: float | None = None
    ) -> warm_paths_pb2.ResolvePeopleResponse:
        return self._unary(
            warm_paths_pb2.ResolvePeopleResponse, self.warm_paths.ResolvePeople, request, timeout, idempotent=True
        )

    # Buyer intelligence
    def predict_buyer_process(
        self, request: buyer_intelligence_pb2.PredictBuyerProcessRequest, *, timeout: float | None = None
    ) -> buyer_intelligence_pb2.PredictBuyerProcessResponse:
        return self._unary(
            buyer_intelligence_pb2.PredictBuyerProcessResponse,
            self.buyer_intelligence.PredictBuyerProcess,
            request,
            timeout,
            idempotent=True,
        )

    def estimate_deal_stage(
        self, request: buyer_intelligence_pb2.EstimateDealStageRequest, *, timeout: float | None = None
    ) -> buyer_intelligence_pb2.EstimateDealStageResponse:
        return self._unary(
            buyer_intelligence_pb2.EstimateDealStageResponse,
            self.buyer_intelligence.EstimateDealStage,
            request,
            timeout,
            idempotent=True,
        )

    def list_deal_signals(
        self, request: buyer_intelligence_pb2.ListDealSignalsRequest, *, timeout: float | None = None
    ) -> buyer_intelligence_pb2.ListDealSignalsResponse:
        return self._unary(
            buyer_intelligence_pb2.ListDealSignalsResponse,
            self.buyer_intelligence.ListDealSignals,
            request,
            timeout,
            idempotent=True,
        )

    # Pipeline
    def get_pipeline_health(
        self, request: pipeline_pb2.GetPipelineHealthRequest | None = None, *, timeout: float | None = None
    ) -> pipeline_pb2.GetPipelineHealthResponse:
        request = request or pipeline_pb2.GetPipelineHealthRequest()
        return self._unary(
            pipeline_pb2.GetPipelineHealthResponse, self.pipeline.GetPipelineHealth, request, timeout, idempotent=True
        )

    def forecast_bookings(
        self, request: pipeline_pb2.ForecastBookingsRequest | None = None, *, timeout: float | None = None
    ) -> pipeline_pb2.ForecastBookingsResponse:
        request = request or pipeline_pb2.ForecastBookingsRequest()
        return self._unary(
            pipeline_pb2.ForecastBookingsResponse, self.pipeline.ForecastBookings, request, timeout, idempotent=True
        )

    def list_proposed_updates(
        self, request: pipeline_pb2.ListProposedUpdatesRequest | None = None, *, timeout: float | None = None
    ) -> pipeline_pb2.ListProposedUpdatesResponse:
        request = request or pipeline_pb2.ListProposedUpdatesRequest()
        return self._unary(
            pipeline_pb2.ListProposedUpdatesResponse,
            self.pipeline.ListProposedUpdates,
            request,
            timeout,
            idempotent=True,
        )

    # Ingest: a stream is consumed as it is sent, so it is never retried.
    def ingest_events(
        self, requests: Iterable[ingest_pb2.IngestEventsRequest], *, timeout: float | None = None
    ) -> ingest_pb2.IngestEventsResponse:
        return self._unary(
            ingest_pb2.IngestEventsResponse, self.ingest.IngestEvents, iter(requests), timeout, idempotent=False
        )

    def erase_subject(
        self, request: ingest_pb2.EraseSubjectRequest, *, timeout: float | None = None
    ) -> ingest_pb2.EraseSubjectResponse:
        return self._unary(
            ingest_pb2.EraseSubjectResponse, self.ingest.EraseSubject, request, timeout, idempotent=True
        )  # erasing twice is once

    # Administration
    def get_snapshot_status(
        self, request: admin_pb2.GetSnapshotStatusRequest | None = None, *, timeout: float | None = None
    ) -> admin_pb2.GetSnapshotStatusResponse:
        request = request or admin_pb2.GetSnapshotStatusRequest()
        return self._unary(
            admin_pb2.GetSnapshotStatusResponse, self.admin.GetSnapshotStatus, request, timeout, idempotent=True
        )

    def list_model_versions(
        self, request: admin_pb2.ListModelVersionsRequest | None = None, *, timeout: float | None = None
    ) -> admin_pb2.ListModelVersionsResponse:
        request = request or admin_pb2.ListModelVersionsRequest()
        return self._unary(
            admin_pb2.ListModelVersionsResponse, self.admin.ListModelVersions, request, timeout, idempotent=True
        )

    def create_api_key(
        self, request: admin_pb2.CreateApiKeyRequest, *, timeout: float | None = None
    ) -> admin_pb2.CreateApiKeyResponse:
        return self._unary(
            admin_pb2.CreateApiKeyResponse, self.admin.CreateApiKey, request, timeout, idempotent=False
        )  # a retry makes two

    def revoke_api_key(
        self, request: admin_pb2.RevokeApiKeyRequest, *, timeout: float | None = None
    ) -> admin_pb2.RevokeApiKeyResponse:
        return self._unary(admin_pb2.RevokeApiKeyResponse, self.admin.RevokeApiKey, request, timeout, idempotent=True)

    def list_api_keys(
        self, request: admin_pb2.ListApiKeysRequest | None = None, *, timeout: float | None = None
    ) -> admin_pb2.ListApiKeysResponse:
        return self._unary(
            admin_pb2.ListApiKeysResponse,
            self.admin.ListApiKeys,
            request or admin_pb2.ListApiKeysRequest(),
            timeout,
            idempotent=True,
        )

    def _unary(
        self, answer: type[Answer], method: Callable[..., Any], request: Any, timeout: float | None, *, idempotent: bool
    ) -> Answer:
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        attempts = self._retry.attempts if idempotent else 1
        attempt = 1
        while True:
            try:
                left = max(0.0, deadline - time.monotonic())
                return cast(Answer, method(request, metadata=self._metadata, timeout=left))
            except grpc.RpcError as error:
                pause = self._retry.backoff_s(attempt - 1)
                retryable = error.code() == grpc.StatusCode.UNAVAILABLE and attempt < attempts
                if not retryable or time.monotonic() + pause >= deadline:
                    raise ApiError.from_rpc_error(error, attempt) from None
            time.sleep(pause)
            attempt += 1

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
