"""One interceptor for every RPC: request id, authentication into an immutable AuthContext,
role and rate checks, translation of relgraph errors into gRPC statuses with rich details
(google.rpc.BadRequest field violations, RetryInfo), a structured log line and metrics."""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from core.errors import AuthenticationError, InvalidRequestError, RateLimitedError, RelgraphError
from server.auth import KeyRing, RateLimiter, authorize, reset_current_auth, set_current_auth
from server.metrics import Metrics

log = logging.getLogger("relgraph.server")

# Standard services that must answer without a key (load balancers, grpcurl).
_OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


# The HTTP gateway (server/http_gateway.py) forwards its calls over loopback with the client's
# address under FORWARDED_FOR_KEY; that address is believed only beside this process's gateway
# secret, so a gRPC client cannot pick the address its failed authentications are counted under.
GATEWAY_SECRET_KEY = "x-relgraph-gateway-secret"
FORWARDED_FOR_KEY = "x-relgraph-forwarded-for"

# A status travels in response trailers, which clients cap (8 KiB by default): messages and details
# are kept well under that whatever the request held.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")  # a client's id is echoed only if it is this tame
MAX_MESSAGE_CHARS = 1000
MAX_VIOLATIONS = 20
MAX_VIOLATION_CHARS = 200


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _status(exc: RelgraphError) -> status_pb2.Status:
    code = getattr(code_pb2, exc.grpc_status)
    status = status_pb2.Status(code=code, message=_clip(str(exc), MAX_MESSAGE_CHARS))
    details: Any = None
    if isinstance(exc, InvalidRequestError):
        violations = [
            error_details_pb2.BadRequest.FieldViolation(
                field=_clip(f, MAX_VIOLATION_CHARS), description=_clip(d, MAX_VIOLATION_CHARS)
            )
            for f, d in exc.violations[:MAX_VIOLATIONS]
        ]
        if len(exc.violations) > MAX_VIOLATIONS:
            violations.append(
                error_details_pb2.BadRequest.FieldViolation(
                    field="...", description=f"and {len(exc.violations) - MAX_VIOLATIONS} more"
                )
            )
        details = error_details_pb2.BadRequest(field_violations=violations)
    elif isinstance(exc, RateLimitedError):
        retry = duration_pb2.Duration()
        retry.FromNanoseconds(int(exc.retry_after_s * 1e9))
        details = error_details_pb2.RetryInfo(retry_delay=retry)
    if details is not None:
        packed = any_pb2.Any()
        packed.Pack(details)
        status.details.append(packed)
    return status


def _address(peer: str) -> str:
    """The client address of a gRPC peer ("ipv4:127.0.0.1:5000" -> "ipv4:127.0.0.1"), without its port."""
    return peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer


class ServiceInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, keys: KeyRing, limiter: RateLimiter, metrics: Metrics, gateway_secret: str) -> None:
        self._keys = keys
        self._gateway_secret = gateway_secret.encode()
        self._limiter = limiter
        self._metrics = metrics

    def intercept_service(self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        method = details.method
        if handler is None or method.startswith(_OPEN_PREFIXES):
            return handler
        for kind, factory in (
            ("unary_unary", grpc.unary_unary_rpc_method_handler),
            ("stream_unary", grpc.stream_unary_rpc_method_handler),
        ):
            behavior = getattr(handler, kind)
            if behavior is not None:
                return factory(
                    self._guard(method, behavior),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler

    def _client_address(self, context: grpc.ServicerContext, metadata: dict[str, Any]) -> str:
        forwarded = metadata.get(FORWARDED_FOR_KEY)
        vouched = hmac.compare_digest(str(metadata.get(GATEWAY_SECRET_KEY, "")).encode(), self._gateway_secret)
        return str(forwarded) if forwarded and vouched else _address(context.peer())

    def _guard(self, method: str, behavior: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            metadata = dict(context.invocation_metadata())
            given = metadata.get("x-request-id", "")
            request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
            context.send_initial_metadata((("x-request-id", request_id),))
            code, tenant = "OK", ""
            peer = self._client_address(context, metadata)
            try:
                self._limiter.check_peer(peer)
                try:
                    auth = self._keys.verify(metadata.get("authorization"))
                except AuthenticationError:
                    self._limiter.failed_authentication(peer)
                    raise
                tenant = auth.tenant
                authorize(auth, method)
                self._limiter.check(auth)
                token = set_current_auth(auth)
                try:
                    return behavior(request, context)
                finally:
                    reset_current_auth(token)
            except RelgraphError as exc:
                code = exc.grpc_status
                context.abort_with_status(rpc_status.to_status(_status(exc)))
            except Exception:
                # A bug must not echo its exception text (it may quote the request) nor look like
                # the client's fault: INTERNAL with the request id; the traceback goes to the log.
                code = "INTERNAL"
                log.exception("unhandled error in %s (request %s)", method, request_id)
                context.abort(grpc.StatusCode.INTERNAL, f"internal error; request id {request_id}")
            finally:
                seconds = time.perf_counter() - started
                self._metrics.observe(method, code, seconds)
                # Every call is counted and timed in the metrics; the log line of a successful one
                # is debug-level, as writing it costs about a tenth of a warm-path answer.
                log.log(
                    logging.DEBUG if code == "OK" else logging.INFO,
                    json.dumps(
                        {
                            "event": "rpc",
                            "request_id": request_id,
                            "method": method,
                            "tenant": tenant,
                            "code": code,
                            "latency_ms": round(seconds * 1000, 3),
                        }
                    ),
                )

        return guarded
