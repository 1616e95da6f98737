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
import contextlib
import itertools
import json
import logging
import re
import socket
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from http import HTTPStatus
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
MAX_STREAM_BODY = 16 << 20  # an IngestEvents stream; bigger loads go through gRPC or `relgraph ingest`
MAX_STREAM_MESSAGES = 100_000
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 300.0
_CLIENT_TIMEOUT_S = 10.0  # a client that sends nothing (or idles on keep-alive) this long is dropped
_READ_DEADLINE_S = 15.0  # a request's line, headers and (unary) body must all arrive within this
_SLOWEST_UPLOAD = 256 << 10  # bytes per second a stream body is given beyond that
_CONNECTIONS_PER_CLIENT = 16
_DIGITS = re.compile(r"[0-9]{1,12}\Z", re.ASCII)
_HEADER_VALUE = re.compile(r"[\x20-\x7e]{1,4096}\Z")
_PAGES = {"/": ("index.html", "text/html; charset=utf-8"), "/openapi.json": ("openapi.json", "application/json")}
_BUSY_BODY = b'{"code": "unavailable", "message": "too many connections; retry shortly"}'
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY
)
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

    def handle_one_request(self) -> None:
        # Reading a request (its line, headers and body) has a deadline, not only a timeout per
        # read: a client trickling bytes cannot hold a thread. The connection is cut when it passes.
        self._reading = threading.Timer(_READ_DEADLINE_S, self._cut_off)
        self._reading.start()
        self._head_only = False  # one handler answers every request of a keep-alive connection
        try:
            super().handle_one_request()
        finally:
            self._reading.cancel()

    def _cut_off(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _read_until(self, seconds: float) -> None:
        """Move the reading deadline to `seconds` from now (a long stream body is given longer)."""
        self._reading.cancel()
        self._reading = threading.Timer(seconds, self._cut_off)
        self._reading.start()

    def do_GET(self) -> None:
        self._reading.cancel()
        path = self.path.split("?", 1)[0]
        if path in routes():
            self._send_error(GatewayError(grpc.StatusCode.UNIMPLEMENTED, "RPCs are called with POST", 405))
        elif path not in _PAGES:
            self._send_error(GatewayError(grpc.StatusCode.NOT_FOUND, f"no page {path[:100]!r}"))
        else:
            name, content_type = _PAGES[path]
            self._send(200, content_type, _static(name), {"Cache-Control": "no-cache"})

    def do_HEAD(self) -> None:
        self._head_only = True
        self.do_GET()

    def _not_allowed(self) -> None:
        self._reading.cancel()
        self.close_connection = True  # a body, if any, is unread
        self._send_error(GatewayError(grpc.StatusCode.UNIMPLEMENTED, f"{self.command} is not served here", 405))

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def do_POST(self) -> None:
        route = routes().get(self.path.split("?", 1)[0])
        try:
            if route is None:
                raise GatewayError(grpc.StatusCode.NOT_FOUND, "no such RPC; see /openapi.json", 404)
            length = self._checked_headers(route)
            if route.client_streaming:
                answer, request_id = self._stream(route, length)
            else:
                body = self._read_exactly(length)
                self._reading.cancel()
                answer, request_id = self._forward(route, _parse(route.request, body))
        except GatewayError as error:
            self.close_connection = True  # the body may be unread
            self._send_error(error)
            return
        except grpc.RpcError as error:
            self.close_connection = self.close_connection or bool(route and route.client_streaming)
            self._send_rpc_error(error, bool(route and route.client_streaming))
            return
        except Exception:
            log.exception("http gateway: unexpected error on %s", self.path[:100])
            self.close_connection = True
            self._send_error(GatewayError(grpc.StatusCode.INTERNAL, "internal error"))
            return
        if route.client_streaming:
            self._send(200, CONNECT_STREAM, _envelope(0, answer) + _envelope(_END_STREAM, b"{}"), _id(request_id))
        else:
            self._send(200, "application/json", answer, _id(request_id))

    def _checked_headers(self, route: Route) -> int:
        """The body's length, once the headers are ones this gateway answers; refused otherwise."""
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        if self.headers.get_all("Transfer-Encoding"):
            raise GatewayError(invalid, "Transfer-Encoding is not accepted: send the body with a Content-Length", 411)
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) != 1 or not _DIGITS.match(lengths[0]):
            raise GatewayError(invalid, "exactly one Content-Length header, a number of bytes, is needed", 411)
        for header in ("Authorization", "X-Request-Id", "Connect-Timeout-Ms"):
            for value in self.headers.get_all(header) or []:
                if not _HEADER_VALUE.match(value):
                    raise GatewayError(invalid, f"{header} must be printable ASCII, at most 4096 characters")
        media, _, parameters = self.headers.get("Content-Type", "").partition(";")
        expected = CONNECT_STREAM if route.client_streaming else "application/json"
        charset = parameters.strip().lower().removeprefix("charset=") if parameters.strip() else "utf-8"
        if media.strip().lower() != expected or charset not in ("utf-8", '"utf-8"'):
            raise GatewayError(invalid, f"Content-Type must be {expected} (UTF-8), not {media.strip() or 'none'}", 415)
        length, limit = int(lengths[0]), MAX_STREAM_BODY if route.client_streaming else MAX_UNARY_BODY
        if length > limit:
            if length <= limit + _DRAINED:  # read (and drop) it, so that the client sees the answer, not a reset
                left = length
                while left > 0 and (chunk := self.rfile.read(min(1 << 16, left))):
                    left -= len(chunk)
            raise GatewayError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, f"the body may be at most {limit} bytes, this one is {length}", 413
            )
        return length

    def _read_exactly(self, length: int) -> bytes:
        body = self.rfile.read(length)
        if len(body) != length:
            raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, "the body ended before its Content-Length")
        return body

    def _stream(self, route: Route, length: int) -> tuple[bytes, str]:
        """An enveloped Connect stream, read and parsed one message at a time while the gRPC call
        consumes it: the key is checked before the body is read, and memory stays one message. A
        bad envelope cancels the call (nothing of a cancelled stream is written)."""
        self._read_until(_READ_DEADLINE_S + length / _SLOWEST_UPLOAD)
        failure: list[GatewayError] = []
        started, holder = threading.Event(), dict[str, Any]()

        def messages() -> Iterator[Message]:
            started.wait()
            try:
                yield from self._envelopes(route, length)
            except GatewayError as error:
                failure.append(error)
                holder["call"].cancel()  # before the iteration ends: a cut stream must not look complete
            finally:
                self._reading.cancel()

        call = self._stub(route).future(messages(), metadata=self._metadata(), timeout=self._timeout())
        holder["call"] = call
        started.set()
        try:
            response = call.result()
        except grpc.FutureCancelledError:
            raise (failure or [GatewayError(grpc.StatusCode.CANCELLED, "the stream was cancelled")])[0] from None
        return json_format.MessageToJson(response, indent=None).encode(), _request_id(call.initial_metadata())

    def _envelopes(self, route: Route, length: int) -> Iterator[Message]:
        """The messages of a Connect stream body of `length` bytes, read as they are needed."""
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        left = length
        for count in itertools.count(1):
            if left == 0:
                return
            if left < 5:
                raise GatewayError(invalid, "the stream ends inside an envelope header")
            flags, size = struct.unpack(">BI", self._read_exactly(5))
            if flags != 0:
                raise GatewayError(invalid, f"envelope flags {flags:#x}: compression is not accepted")
            if size > left - 5:
                raise GatewayError(invalid, "the stream ends inside a message")
            if count > MAX_STREAM_MESSAGES:
                raise GatewayError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, f"at most {MAX_STREAM_MESSAGES} messages a stream"
                )
            yield _parse(route.request, self._read_exactly(size))
            left -= 5 + size

    def _forward(self, route: Route, request: Message) -> tuple[bytes, str]:
        response, call = self._stub(route).with_call(request, metadata=self._metadata(), timeout=self._timeout())
        return json_format.MessageToJson(response, indent=None).encode(), _request_id(call.initial_metadata())

    def _stub(self, route: Route) -> Any:
        channel = self.server.gateway.channel
        return (channel.stream_unary if route.client_streaming else channel.unary_unary)(
            route.path,
            request_serializer=route.request.SerializeToString,
            response_deserializer=route.response.FromString,
        )

    def _metadata(self) -> list[tuple[str, str]]:
        metadata = [
            (GATEWAY_SECRET_KEY, self.server.gateway.secret),
            (FORWARDED_FOR_KEY, f"http:{self.client_address[0]}"),
        ]
        for header, key in (("Authorization", "authorization"), ("X-Request-Id", "x-request-id")):
            if value := self.headers.get(header):
                metadata.append((key, value))
        return metadata

    def _timeout(self) -> float:
        given = self.headers.get("Connect-Timeout-Ms")
        if given is None:
            return DEFAULT_TIMEOUT_S
        if not _DIGITS.match(given):
            raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, "Connect-Timeout-Ms must be a number of milliseconds")
        return min(int(given) / 1000, MAX_TIMEOUT_S)

    def _send_rpc_error(self, error: grpc.RpcError, streaming: bool) -> None:
        details, retry_after = _error_details(error)
        body = connect_error(error.code(), error.details() or "", details)
        headers = _id(_request_id(error.initial_metadata()))
        if retry_after is not None:
            headers["Retry-After"] = str(max(1, round(retry_after + 0.499)))
        if streaming:  # a stream's error travels in its end-of-stream envelope
            end = json.dumps({"error": body}).encode()
            self._send(200, CONNECT_STREAM, _envelope(_END_STREAM, end), headers)
        else:
            self._send(_CONNECT_CODES.get(error.code(), 500), "application/json", json.dumps(body).encode(), headers)

    def _send_error(self, error: GatewayError) -> None:
        self._send(error.http_status, "application/json", json.dumps(connect_error(error.code, str(error))).encode())

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a malformed request line, headers too long): JSON too."""
        self.close_connection = True
        body = json.dumps({"code": "invalid_argument", "message": message or HTTPStatus(code).phrase}).encode()
        self._send(code, "application/json", body)

    def _send(self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        if content_type.startswith("text/html"):
            # The page runs only its own inline script, calls only this origin and is never framed.
            self.send_header(
                "Content-Security-Policy",
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
                "frame-ancestors 'none'",
            )
            self.send_header("X-Frame-Options", "DENY")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not self._head_only:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s %s", self.client_address[0], format % args)


def _id(request_id: str) -> dict[str, str]:
    return {"X-Request-Id": request_id} if request_id else {}


def _request_id(metadata: Any) -> str:
    return str(dict(metadata or ()).get("x-request-id", ""))


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


class _GatewayServer(HTTPServer):
    """An HTTP server answering on a bounded pool of threads. Connections beyond what the pool and a
    short queue hold, or beyond a few per client address, are refused at once (503) rather than
    queued without bound."""

    request_queue_size = 128  # the listen backlog

    def __init__(self, address: tuple[str, int], gateway: HttpGateway, workers: int) -> None:
        self.gateway = gateway
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="http")
        self._capacity = 2 * workers  # connections being answered or waiting for a thread
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        client = client_address[0]
        with self._lock:
            admitted = self._open.get(client, 0) < _CONNECTIONS_PER_CLIENT and sum(self._open.values()) < self._capacity
            if admitted:
                self._open[client] = self._open.get(client, 0) + 1
        if not admitted:
            with contextlib.suppress(OSError):
                request.sendall(_BUSY)
            self.shutdown_request(request)
            return
        self._pool.submit(self._handle, request, client_address)

    def _handle(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # a broken connection must not end the worker
            log.debug("http connection from %s ended with an error", client_address, exc_info=True)
        finally:
            self.shutdown_request(request)
            with self._lock:
                left = self._open.pop(client_address[0], 1) - 1
                if left:
                    self._open[client_address[0]] = left

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
