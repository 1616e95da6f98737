"""Pseudonymization at the edge: identities become keyed HMAC pseudonyms before anything is
written, so raw email addresses never reach the graph."""

from __future__ import annotations

import hashlib
import hmac
import re
from functools import lru_cache

from core.errors import RecordError
from core.vocabulary import MAX_ECHO_CHARS

MAX_DOMAIN_CHARS = 253  # RFC 1035
PID_HEX_CHARS = 32  # 128 bits: collision-free for any realistic network, half the storage of full SHA-256
_EMAIL = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~.-]+@([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+)\Z"
)
_DOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+\Z")


def normalize_email(raw: str) -> str:
    """Trim, drop a `mailto:` prefix and lower-case; raise RecordError when it is not an address."""
    if len(raw) > 4 * 254:  # far too long to be an address: refuse before any work on it
        raise RecordError(f"not a valid email address: {_redact(raw[:MAX_ECHO_CHARS])!r}")
    email = raw.strip().lower()
    if email.startswith("mailto:"):
        email = email[len("mailto:") :]
    if len(email) > 254 or not _EMAIL.match(email):
        raise RecordError(f"not a valid email address: {_redact(raw)!r}")
    return email


def normalize_domain(raw: str) -> str:
    """A company is keyed by its lower-cased web domain (an organisation, not a person)."""
    domain = raw.strip().lower().removeprefix("www.")
    if len(domain) > MAX_DOMAIN_CHARS or not _DOMAIN.match(domain):
        raise RecordError(f"not a valid company domain: {raw[:MAX_ECHO_CHARS]!r}")
    return domain


def _redact(raw: str) -> str:
    """Error messages must not echo a full address back into logs."""
    local, _, domain = raw.partition("@")
    return f"{local[:1]}***@{domain[:MAX_ECHO_CHARS]}" if domain else f"{raw[:3]}***"


class Pseudonymizer:
    """pid = first 32 hex chars of HMAC-SHA256(network_key, normalized email)."""

    def __init__(self, network_key: str | bytes) -> None:
        key = network_key.encode() if isinstance(network_key, str) else network_key
        self._template = hmac.new(key, digestmod=hashlib.sha256)
        self.pid_of_normalized = lru_cache(maxsize=1 << 18)(self._pid_of_normalized)
        # Ingest meets the same addresses again and again, written the same way: the pid of a raw
        # address is cached too, which skips normalizing it (a refused one raises each time).
        self.pid = lru_cache(maxsize=1 << 18)(self._pid)

    def _pid_of_normalized(self, email: str) -> str:
        mac = self._template.copy()
        mac.update(email.encode())
        return mac.hexdigest()[:PID_HEX_CHARS]

    def _pid(self, raw_email: str) -> str:
        return self.pid_of_normalized(normalize_email(raw_email))
