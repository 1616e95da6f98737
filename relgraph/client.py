"""A thin gRPC client of relgraph.v1, used by `relgraph query` and the benchmarks: a channel to
the server with the API key attached to every call."""

from __future__ import annotations

from typing import Any

import grpc

from relgraph.v1 import admin_pb2_grpc, buyer_intelligence_pb2_grpc, ingest_pb2_grpc, warm_paths_pb2_grpc

DEFAULT_SERVER = "127.0.0.1:50051"


class Client:
    """Stubs for every relgraph.v1 service over one channel."""

    def __init__(self, server: str, key: str) -> None:
        self.channel = grpc.insecure_channel(server)
        self._metadata = (("authorization", f"Bearer {key}"),)
        self.warm_paths = warm_paths_pb2_grpc.WarmPathsServiceStub(self.channel)
        self.buyer_intelligence = buyer_intelligence_pb2_grpc.BuyerIntelligenceServiceStub(self.channel)
        self.ingest = ingest_pb2_grpc.IngestServiceStub(self.channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)

    def call(self, method: Any, request: Any, timeout: float | None = 30.0) -> Any:
        return method(request, metadata=self._metadata, timeout=timeout)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
