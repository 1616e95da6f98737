"""Server assembly: `create_server(config)` builds a ready-to-start gRPC server (services, the
interceptor, health checking, reflection, the serving state and its refresh loop) over the one
GraphReader and the one clock; `serve(config)` runs one until interrupted."""

from __future__ import annotations

import logging
import secrets
import signal
import socket
import threading
from concurrent import futures

import grpc
import torch
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from core.clock import Clock, clock_at
from core.config import Config, ServerConfig
from core.errors import ConfigError
from core.secrets import api_key_pepper, network_key
from gnn.buyer_process import CohortMinimum
from gnn.registry import ModelRegistry
from graph.neo4j_reader import Neo4jReader
from graph.operations import prune_erasure_tombstones
from graph.pseudonymize import Pseudonymizer
from graph.schema import migrate
from graph.store import GraphStore, connect
from relgraph.v1 import (
    admin_pb2_grpc,
    buyer_intelligence_pb2_grpc,
    ingest_pb2_grpc,
    pipeline_pb2_grpc,
    warm_paths_pb2_grpc,
)
from server.admin_service import AdminService
from server.auth import KeyRing, RateLimiter
from server.buyer_intelligence_service import BuyerIntelligenceService
from server.http_gateway import HttpGateway
from server.ingest_service import IngestService
from server.interceptor import ServiceInterceptor
from server.metrics import Metrics
from server.openapi import SERVICES
from server.pipeline_service import PipelineService
from server.state import ServingStateHolder
from server.warm_paths_service import WarmPathsService

log = logging.getLogger("relgraph.server")

_HEALTH_CHECK_S = 1.0
SERVICE_NAMES = tuple(service.full_name for service in SERVICES)


class RelgraphServer:
    """The gRPC server with the resources it owns; stopping it stops them too."""

    def __init__(
        self,
        server: grpc.Server,
        holder: ServingStateHolder,
        keys: KeyRing,
        store: GraphStore,
        metrics: Metrics,
        health: health.HealthServicer,
        http: HttpGateway | None,
    ) -> None:
        self.grpc_server = server
        self.http = http
        self.holder = holder
        self.keys = keys
        self.store = store
        self.metrics = metrics
        self._health = health
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch_health, name="health-watchdog", daemon=True)

    def start(self) -> None:
        self.grpc_server.start()
        if self.http:
            self.http.start()
        self.holder.start()
        self.keys.start()
        self._watchdog.start()

    def stop(self, grace: float | None = 2.0) -> None:
        self._stop.set()
        if self.http:
            self.http.stop()
        self.grpc_server.stop(grace).wait()
        self.holder.stop()
        self.keys.stop()
        self.store.close()
        self.metrics.close()

    def wait_for_termination(self) -> None:
        self.grpc_server.wait_for_termination()

    def _watch_health(self) -> None:
        """Health follows the snapshot's age: NOT_SERVING while it is older than the bound."""
        while not self._stop.wait(_HEALTH_CHECK_S):
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if self.holder.healthy
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in ("", *SERVICE_NAMES):
                self._health.set(name, status)


def create_server(
    config: Config, *, store: GraphStore | None = None, clock: Clock | None = None
) -> tuple[RelgraphServer, int]:
    """Build the server on `config.server.host:port` (port 0 picks a free one); returns it with the
    bound port. The metrics port is bound first and a port already in use is refused (no silent
    sharing through SO_REUSEPORT), both as ConfigError. The serving state is built from Neo4j now,
    so the server can answer once started. Answers are computed at `clock`'s time (by default
    `as_of` when set, else the wall clock). The server owns its store, the one given or the one it
    connects: closed when the server stops, or here when it cannot be built."""
    settings = config.server
    # A request's tensors are tiny, so intra-op threads only contend with the other requests'
    # threads (measured: 1.4 times the deal estimates per second on one thread than on two).
    torch.set_num_threads(1)
    metrics = Metrics()
    try:
        if settings.metrics_port:
            try:
                metrics.serve(settings.metrics_host, settings.metrics_port)
            except OSError as exc:
                raise ConfigError(
                    f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port} ({exc.strerror}); "
                    "set RELGRAPH_METRICS_PORT to a free port, or 0 to turn metrics off"
                ) from exc
        if settings.port and not _can_listen(settings.host, settings.port):
            raise _port_refused(settings.host, settings.port)  # before the models load, and without gRPC's log line
        store = store or connect(config)
        return _assemble(config, store, metrics, clock or clock_at(settings.as_of))
    except BaseException:
        metrics.close()
        if store is not None:
            store.close()
        raise


def _assemble(config: Config, store: GraphStore, metrics: Metrics, clock: Clock) -> tuple[RelgraphServer, int]:
    settings = config.server
    migrate(store)
    reader = Neo4jReader(store)
    pseudo = Pseudonymizer(network_key(config))
    pepper = api_key_pepper(config)
    registry = ModelRegistry(config.models_dir)
    holder = ServingStateHolder(
        reader,
        clock,
        metrics,
        registry,
        refresh_interval_s=settings.refresh_interval_s,
        full_rebuild_interval_s=settings.full_rebuild_interval_s,
        max_snapshot_age_s=settings.max_snapshot_age_s,
        export_cache=config.export_cache_dir,
        prune_tombstones=lambda: prune_erasure_tombstones(store, settings.erasure_retention_s),
    )
    keys = KeyRing(reader, pepper, settings.key_cache_s)
    gateway_secret = secrets.token_urlsafe(32)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="rpc"),
        interceptors=[ServiceInterceptor(keys, RateLimiter(settings), metrics, gateway_secret)],
        options=[("grpc.so_reuseport", 0)],
    )
    warm_paths_pb2_grpc.add_WarmPathsServiceServicer_to_server(
        WarmPathsService(holder, pseudo, clock, max_work=settings.max_search_work), server
    )
    buyer_intelligence_pb2_grpc.add_BuyerIntelligenceServiceServicer_to_server(
        BuyerIntelligenceService(holder, clock, CohortMinimum(settings.min_cohort_deals, settings.min_cohort_tenants)),
        server,
    )
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(
        IngestService(store, holder, pseudo, config.ingest.batch_size, settings.erasure_retention_s), server
    )
    admin_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminService(store, reader, holder, keys, pepper, registry), server
    )
    pipeline_pb2_grpc.add_PipelineServiceServicer_to_server(PipelineService(holder, clock, pseudo), server)

    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)

    try:
        port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    except RuntimeError:
        port = 0
    if port == 0:  # taken since the check in create_server
        raise _port_refused(settings.host, settings.port)
    http = _http_gateway(settings, port, gateway_secret) if settings.http_port else None
    return RelgraphServer(server, holder, keys, store, metrics, health_servicer, http), port


def _http_gateway(settings: ServerConfig, grpc_port: int, secret: str) -> HttpGateway:
    """The HTTP/JSON gateway on `http_port`, calling the gRPC server over loopback."""
    loopback = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(settings.host, settings.host)
    try:
        return HttpGateway(f"{loopback}:{grpc_port}", secret, settings.host, settings.http_port, settings.workers)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve HTTP on {settings.host}:{settings.http_port} ({exc.strerror}); "
            "set RELGRAPH_HTTP_PORT (or --http-port) to a free port, or 0 to turn HTTP off"
        ) from exc


def _can_listen(host: str, port: int) -> bool:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds: TIME_WAIT is no obstacle
            probe.bind(address)
    except OSError:
        return False
    return True


def _port_refused(host: str, port: int) -> ConfigError:
    return ConfigError(
        f"cannot listen on {host}:{port}: the port is in use or the address is not this machine's; "
        "set RELGRAPH_SERVER_PORT (or --port) to a free port"
    )


def serve(config: Config) -> None:
    """Run a server until SIGINT/SIGTERM."""
    logging.basicConfig(level=config.server.log_level, format="%(message)s")
    server, port = create_server(config)
    server.start()
    snap = server.holder.current.snapshot
    log.info(
        f"relgraph gRPC listening on {config.server.host}:{port}; snapshot {snap!r}"
        + (f"; HTTP/JSON and the web page on http://{config.server.host}:{server.http.port}/" if server.http else "")
        + (
            f"; metrics on http://{config.server.metrics_host}:{config.server.metrics_port}/metrics"
            if config.server.metrics_port
            else ""
        )
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
