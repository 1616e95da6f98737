"""Who a call's failed authentications are counted against: the gateway's forwarded client
address only beside this process's gateway secret, else the connection's own peer."""

from __future__ import annotations

from typing import Any

from core.config import ServerConfig
from server.auth import RateLimiter
from server.interceptor import FORWARDED_FOR_KEY, GATEWAY_SECRET_KEY, ServiceInterceptor
from server.metrics import Metrics


class Peer:
    def peer(self) -> str:
        return "ipv4:127.0.0.1:53422"


def _address(metadata: dict[str, Any]) -> str:
    interceptor = ServiceInterceptor(None, RateLimiter(ServerConfig()), Metrics(), "the-secret")  # type: ignore[arg-type]
    return interceptor._client_address(Peer(), metadata)  # type: ignore[arg-type]


def test_the_gateway_vouches_for_its_clients_address() -> None:
    assert _address({GATEWAY_SECRET_KEY: "the-secret", FORWARDED_FOR_KEY: "http:203.0.113.9"}) == "http:203.0.113.9"


def test_a_forwarded_address_without_the_secret_is_ignored() -> None:
    for metadata in (
        {FORWARDED_FOR_KEY: "http:203.0.113.9"},
        {GATEWAY_SECRET_KEY: "a-guess", FORWARDED_FOR_KEY: "http:203.0.113.9"},
        {GATEWAY_SECRET_KEY: "", FORWARDED_FOR_KEY: "http:203.0.113.9"},
        {GATEWAY_SECRET_KEY: "the-secret"},
    ):
        assert _address(metadata) == "ipv4:127.0.0.1"
