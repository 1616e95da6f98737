"""API keys and who may call what. A key `rgk_<key id>_<secret>` is stored as HMAC-SHA256(pepper,
secret); the interceptor turns a bearer key into an immutable `AuthContext` once per call, and the
tenant in it is the only tenant any handler ever uses.

Roles: member (the tenant's products: every read and ingest), partner (warm paths only, within
its scopes, rate-limited), admin (member rights plus erasure and tenant administration).
Partner scopes: `company:DOMAIN` (targets at that company only, repeatable), `max-hops:N`."""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

from graph import tenancy
from graph.pseudonymize import normalize_domain
from graph.store import GraphStore
from relgraph.config import RateLimit, ServerConfig
from relgraph.errors import AuthenticationError, InvalidInputError, PermissionDeniedError, RateLimitedError, RecordError, StoreError

ROLES = ("member", "partner", "admin")
KEY_PREFIX = "rgk"


@dataclass(frozen=True)
class AuthContext:
    """Who is calling, resolved once from the API key."""

    tenant: str
    role: str
    scopes: frozenset[str]
    key_id: str

    @property
    def company_scope(self) -> frozenset[str]:
        return frozenset(s.split(":", 1)[1] for s in self.scopes if s.startswith("company:"))

    @property
    def max_hops_scope(self) -> int | None:
        hops = [int(s.split(":", 1)[1]) for s in self.scopes if s.startswith("max-hops:")]
        return min(hops) if hops else None


_current: contextvars.ContextVar[AuthContext] = contextvars.ContextVar("relgraph_auth")


def current_auth() -> AuthContext:
    """The caller of the RPC being served (set by the interceptor)."""
    return _current.get()


def set_current_auth(auth: AuthContext) -> contextvars.Token[AuthContext]:
    return _current.set(auth)


def reset_current_auth(token: contextvars.Token[AuthContext]) -> None:
    _current.reset(token)


def validate_scopes(role: str, scopes: list[str]) -> list[str]:
    if role not in ROLES:
        raise InvalidInputError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
    if scopes and role != "partner":
        raise InvalidInputError("scopes apply to partner keys only")
    clean = []
    for scope in scopes:
        kind, _, value = scope.partition(":")
        if kind == "company":
            try:
                clean.append(f"company:{normalize_domain(value)}")
            except RecordError as exc:
                raise InvalidInputError(f"scope {scope!r}: {exc.reason}") from exc
        elif kind == "max-hops" and value in ("1", "2", "3"):
            clean.append(scope)
        else:
            raise InvalidInputError(f"unknown scope {scope!r}; use company:DOMAIN or max-hops:1|2|3")
    return clean


def _hash(pepper: str, secret: str) -> str:
    return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).hexdigest()


def create_api_key(store: GraphStore, pepper: str, *, tenant: str, role: str, scopes: list[str],
                   label: str = "") -> tuple[str, tenancy.ApiKeyRecord]:
    """Create and store a key; returns the whole key (shown once) and its record."""
    scopes = validate_scopes(role, scopes)
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(24)
    record = tenancy.ApiKeyRecord(key_id=key_id, tenant=tenant, role=role, scopes=tuple(scopes), label=label,
                                  hash=_hash(pepper, secret), created_at=int(time.time()), revoked=False)
    tenancy.create_key(store, record)
    return f"{KEY_PREFIX}_{key_id}_{secret}", record


class KeyRing:
    """Verifies bearer keys against the stored hashes, cached for `cache_s` so calls keep being
    authenticated while Neo4j is briefly unreachable."""

    def __init__(self, store: GraphStore, pepper: str, cache_s: float) -> None:
        self._store = store
        self._pepper = pepper
        self._cache_s = cache_s
        self._records: dict[str, tenancy.ApiKeyRecord] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def reload(self) -> None:
        records = {r.key_id: r for r in tenancy.keys(self._store)}
        with self._lock:
            self._records, self._loaded_at = records, time.monotonic()

    def verify(self, authorization: str | None) -> AuthContext:
        if not authorization:
            raise AuthenticationError("missing 'authorization: Bearer <key>' metadata")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("authorization must be 'Bearer <key>'")
        prefix, _, rest = token.strip().partition("_")
        key_id, _, secret = rest.partition("_")
        if prefix != KEY_PREFIX or not key_id or not secret:
            raise AuthenticationError("malformed API key")
        record = self._lookup(key_id)
        if record is None or not hmac.compare_digest(record.hash, _hash(self._pepper, secret)):
            raise AuthenticationError("unknown API key")
        if record.revoked:
            raise AuthenticationError("this API key was revoked")
        return AuthContext(tenant=record.tenant, role=record.role, scopes=frozenset(record.scopes), key_id=key_id)

    def _lookup(self, key_id: str) -> tenancy.ApiKeyRecord | None:
        stale = time.monotonic() - self._loaded_at > self._cache_s
        if stale or key_id not in self._records:
            try:
                self.reload()
            except StoreError:
                if self._loaded_at == float("-inf"):
                    raise
        return self._records.get(key_id)


# Which roles may call which RPC (full method names); anything not listed is member/admin only.
PARTNER_METHODS = frozenset({"/relgraph.v1.WarmPathsService/FindWarmPaths"})
ADMIN_METHODS = frozenset({"/relgraph.v1.IngestService/EraseSubject"} | {
    f"/relgraph.v1.AdminService/{m}" for m in ("CreateApiKey", "RevokeApiKey", "ListApiKeys")})


def authorize(auth: AuthContext, method: str) -> None:
    """Raise PermissionDeniedError unless the key's role may call `method`."""
    if auth.role == "partner" and method not in PARTNER_METHODS:
        raise PermissionDeniedError("partner keys may only call WarmPathsService.FindWarmPaths")
    if method in ADMIN_METHODS and auth.role != "admin":
        raise PermissionDeniedError(f"{method.rsplit('/', 1)[-1]} needs an admin key")


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """A token bucket per API key, sized by role."""

    config: ServerConfig
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _limit(self, role: str) -> RateLimit:
        return {"partner": self.config.partner_rate, "admin": self.config.admin_rate}.get(role, self.config.member_rate)

    def check(self, auth: AuthContext) -> None:
        limit = self._limit(auth.role)
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.setdefault(auth.key_id, _Bucket(tokens=float(limit.burst), updated=now))
            bucket.tokens = min(float(limit.burst), bucket.tokens + (now - bucket.updated) * limit.per_second)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return
            wait = (1.0 - bucket.tokens) / limit.per_second
        raise RateLimitedError(f"rate limit of {limit.per_second:g} requests/s for this key exceeded", retry_after_s=wait)
