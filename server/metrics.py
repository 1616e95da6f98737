"""Prometheus metrics: request counts and latency by method and status code, snapshot age."""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    """Metrics of one server, in their own registry (several servers can live in one process)."""

    def __init__(self) -> None:
        self._http: WSGIServer | None = None
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "relgraph_requests_total", "RPCs by method and status code", ["method", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "relgraph_request_seconds",
            "RPC latency by method and status code",
            ["method", "code"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.snapshot_age = Gauge(
            "relgraph_snapshot_age_seconds", "Seconds since the serving snapshot was refreshed", registry=self.registry
        )
        self.snapshot_relationships = Gauge(
            "relgraph_snapshot_relationships", "KNOWS relationships in the snapshot", registry=self.registry
        )
        self.refresh_failures = Counter(
            "relgraph_snapshot_refresh_failures_total",
            "Snapshot refreshes that failed (the last snapshot kept serving)",
            registry=self.registry,
        )
        self.rows_skipped = Counter(
            "relgraph_snapshot_rows_skipped_total",
            "Graph rows a snapshot build or refresh skipped because they do not fit",
            registry=self.registry,
        )

    def observe(self, method: str, code: str, seconds: float) -> None:
        self.requests.labels(method, code).inc()
        self.latency.labels(method, code).observe(seconds)

    def serve(self, host: str, port: int) -> None:
        self._http, _ = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        """Stop serving metrics (if they were served)."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
