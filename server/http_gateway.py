"""relgraph.v1 over HTTP/1.1 with JSON bodies, for partners and browsers: the Connect protocol's
unary calls (`POST /relgraph.v1.<Service>/<Method>`, `Content-Type: application/json`) and its
enveloped client stream for `IngestEvents` (`application/connect+json`), plus `/openapi.json`
and the read-only web page at `/`.

Each call is forwarded to this process's own gRPC server over loopback, so the one interceptor
behind gRPC (keys, roles, rate limits, the visibility rule, validation, error details, metrics,
logs) answers HTTP too; nothing here decides what a caller may see. The gateway only adds what
HTTP needs: bounded bodies, JSON parsing with clear errors, the client's address (vouched for
with a per-process secret, so failed authentications are still counted per real client) and the
gRPC status written as a Connect error with its HTTP status."""

from __future__ import annotations

import base64
import json
import logging
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import resources
from typing import Any

import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from server.interceptor import FORWARDED_FOR_KEY, GATEWAY_SECRET_KEY
from server.openapi import CONNECT_STREAM, SERVICES, openapi_document

log = logging.getLogger("relgraph.server")

MAX_UNARY_BODY = 1 << 20  # a unary request is small; more is refused before it is read
MAX_STREAM_BODY = 64 << 20  # an IngestEvents stream; bigger loads go through gRPC or `relgraph ingest`
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 300.0
_CLIENT_TIMEOUT_S = 10.0  # a client that stalls mid-request (or idles on keep-alive) is dropped after this long
_END_STREAM = 0x02
_DRAINED = 1 << 20  # an oversized body up to this much bigger is read before the refusal

# The Connect protocol's code names and HTTP statuses for gRPC status codes.
_CONNECT_CODES = {
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
_DETAIL_TYPES = (error_details_pb2.BadRequest, error_details_pb2.RetryInfo)


@dataclass(frozen=True)
class Route:
    path: str
    request: type[Message]
    response: type[Message]
    client_streaming: bool


@cache
def routes() -> dict[str, Route]:
    return {
        f"/{service.full_name}/{method.name}": Route(
            f"/{service.full_name}/{method.name}",
            message_factory.GetMessageClass(method.input_type),
            message_factory.GetMessageClass(method.output_type),
            method.client_streaming,
        )
        for service in SERVICES
        for method in service.methods
    }


@cache
def _static(name: str) -> bytes:
    if name == "openapi.json":
        return json.dumps(openapi_document(), indent=2).encode()
    return resources.files("server").joinpath("web", name).read_bytes()


class GatewayError(Exception):
    """A request refused by the gateway itself, before any gRPC call."""

    def __init__(self, code: grpc.StatusCode, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status or _CONNECT_CODES[code]


def connect_error(code: grpc.StatusCode, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code.name.lower(), "message": message}
    if details:
        error["details"] = details
    return error


def _error_details(error: grpc.RpcError) -> tuple[list[dict[str, Any]], float | None]:
    """The status's rich details as Connect writes them (type, base64 value, JSON `debug`), and
    the retry delay when one was given."""
    status = rpc_status.from_call(error)
    details, retry_after = [], None
    for packed in status.details if status else []:
        for kind in _DETAIL_TYPES:
            detail = kind()
            if packed.Unpack(detail):
                details.append(
                    {
                        "type": detail.DESCRIPTOR.full_name,
                        "value": base64.b64encode(packed.value).decode().rstrip("="),
                        "debug": json_format.MessageToDict(detail),
                    }
                )
                if isinstance(detail, error_details_pb2.RetryInfo):
                    retry_after = detail.retry_delay.ToTimedelta().total_seconds()
    return details, retry_after


class _Handler(BaseHTTPRequestHandler):
    server: _GatewayServer
    protocol_version = "HTTP/1.1"  # keep-alive: a partner's many calls reuse one connection
    server_version = "relgraph"
    sys_version = ""
    timeout = _CLIENT_TIMEOUT_S

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        pages = {"/": ("index.html", "text/html; charset=utf-8"), "/openapi.json": ("openapi.json", "application/json")}
        if path not in pages:
            self._send_error(GatewayError(grpc.StatusCode.NOT_FOUND, f"no page {path[:100]!r}"))
            return
        name, content_type = pages[path]
        self._send(200, content_type, _static(name), {"Cache-Control": "no-cache"})

    def do_POST(self) -> None:
        request_id = ""
        try:
            route = routes().get(self.path.split("?", 1)[0])
            if route is None:
                raise GatewayError(grpc.StatusCode.NOT_FOUND, "no such RPC; see /openapi.json", 404)
            body = self._body(MAX_STREAM_BODY if route.client_streaming else MAX_UNARY_BODY)
            answer, request_id = self._call(route, body)
        except GatewayError as error:
            self.close_connection = True  # the body may be unread
            self._send_error(error)
            return
        except grpc.RpcError as error:
            self._send_rpc_error(error, route.client_streaming if route else False)
            return
        if route.client_streaming:
            self._send(200, CONNECT_STREAM, _envelope(0, answer) + _envelope(_END_STREAM, b"{}"), _id(request_id))
        else:
            self._send(200, "application/json", answer, _id(request_id))

    def _body(self, limit: int) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, "send the body with a Content-Length", 411)
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, "a Content-Length header is needed", 411) from None
        if length < 0 or length > limit:
            if length <= limit + _DRAINED:  # read it, so that the client sees the answer, not a reset
                left = length
                while left > 0 and (chunk := self.rfile.read(min(1 << 16, left))):
                    left -= len(chunk)
            raise GatewayError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, f"the body may be at most {limit} bytes, this one is {length}", 413
            )
        body = self.rfile.read(length)
        if len(body) != length:
            raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, "the body ended before its Content-Length")
        return body

    def _call(self, route: Route, body: bytes) -> tuple[bytes, str]:
        content_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        expected = CONNECT_STREAM if route.client_streaming else "application/json"
        if content_type != expected:
            raise GatewayError(
                grpc.StatusCode.INVALID_ARGUMENT, f"Content-Type must be {expected}, not {content_type or 'none'}", 415
            )
        messages = [_parse(route.request, part) for part in (_envelopes(body) if route.client_streaming else [body])]
        gateway = self.server.gateway
        metadata = [
            (GATEWAY_SECRET_KEY, gateway.secret),
            (FORWARDED_FOR_KEY, f"http:{self.client_address[0]}"),
        ]
        for header, key in (("Authorization", "authorization"), ("X-Request-Id", "x-request-id")):
            if value := self.headers.get(header):
                metadata.append((key, value))
        call = (gateway.channel.stream_unary if route.client_streaming else gateway.channel.unary_unary)(
            route.path,
            request_serializer=route.request.SerializeToString,
            response_deserializer=route.response.FromString,
        )
        request: Any = iter(messages) if route.client_streaming else messages[0]
        response, rpc = call.with_call(request, metadata=metadata, timeout=self._timeout())
        request_id = str(dict(rpc.initial_metadata() or ()).get("x-request-id", ""))
        return json_format.MessageToJson(response, indent=None).encode(), request_id

    def _timeout(self) -> float:
        given = self.headers.get("Connect-Timeout-Ms")
        if given is None:
            return DEFAULT_TIMEOUT_S
        if not given.isdigit() or len(given) > 10:
            raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, "Connect-Timeout-Ms must be a positive integer")
        return min(int(given) / 1000, MAX_TIMEOUT_S)

    def _send_rpc_error(self, error: grpc.RpcError, streaming: bool) -> None:
        details, retry_after = _error_details(error)
        body = connect_error(error.code(), error.details() or "", details)
        headers = _id(str(dict(error.initial_metadata() or ()).get("x-request-id", "")))
        if retry_after is not None:
            headers["Retry-After"] = str(max(1, round(retry_after + 0.499)))
        if streaming:  # a stream's error travels in its end-of-stream envelope
            end = json.dumps({"error": body}).encode()
            self._send(200, CONNECT_STREAM, _envelope(_END_STREAM, end), headers)
        else:
            self._send(_CONNECT_CODES.get(error.code(), 500), "application/json", json.dumps(body).encode(), headers)

    def _send_error(self, error: GatewayError) -> None:
        self._send(error.http_status, "application/json", json.dumps(connect_error(error.code, str(error))).encode())

    def _send(self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        if content_type.startswith("text/html"):
            # The page runs only its own inline script and calls only this origin.
            self.send_header(
                "Content-Security-Policy",
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            )
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s %s", self.client_address[0], format % args)


def _id(request_id: str) -> dict[str, str]:
    return {"X-Request-Id": request_id} if request_id else {}


def _parse(kind: type[Message], body: bytes) -> Message:
    try:
        return json_format.Parse(body.decode("utf-8"), kind())
    except (json_format.ParseError, UnicodeDecodeError, DecodeError, RecursionError) as exc:
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise GatewayError(
            grpc.StatusCode.INVALID_ARGUMENT, f"the body is not a {kind.DESCRIPTOR.name}: {reason}"
        ) from None


def _envelope(flags: int, payload: bytes) -> bytes:
    return struct.pack(">BI", flags, len(payload)) + payload


def _envelopes(body: bytes) -> Iterator[bytes]:
    """The messages of a Connect stream body; compressed or cut-short envelopes are refused."""
    at = 0
    while at < len(body):
        if len(body) - at < 5:
            raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, "the stream ends inside an envelope header")
        flags, length = struct.unpack_from(">BI", body, at)
        if flags != 0:
            raise GatewayError(
                grpc.StatusCode.INVALID_ARGUMENT, f"envelope flags {flags:#x}: compression is not accepted"
            )
        if at + 5 + length > len(body):
            raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, "the stream ends inside a message")
        yield body[at + 5 : at + 5 + length]
        at += 5 + length


class _GatewayServer(HTTPServer):
    """An HTTP server answering on a bounded pool of threads (a flood of connections queues
    instead of starting a thread each)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], gateway: HttpGateway, workers: int) -> None:
        super().__init__(address, _Handler)
        self.gateway = gateway
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="http")

    def process_request(self, request: Any, client_address: Any) -> None:
        self._pool.submit(self._handle, request, client_address)

    def _handle(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # a broken connection must not end the worker
            log.debug("http connection from %s ended with an error", client_address, exc_info=True)
        finally:
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class HttpGateway:
    """The HTTP/JSON face of a running gRPC server at `grpc_target`; `secret` is the one the
    server's interceptor accepts as proof that a forwarded client address is the gateway's."""

    def __init__(self, grpc_target: str, secret: str, host: str, port: int, workers: int) -> None:
        self.secret = secret
        self.channel = grpc.insecure_channel(grpc_target)
        # Connection threads mostly wait on clients: several per gRPC worker, so that a few slow
        # clients cannot hold every one.
        self._server = _GatewayServer((host, port), self, max(32, 4 * workers))
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-gateway", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.channel.close()
