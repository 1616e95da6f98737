"""API keys and who may call what. A key `rgk_<key id>_<secret>` is stored as HMAC-SHA256(pepper,
secret); the interceptor turns a bearer key into an immutable `AuthContext` once per call, and the
tenant in it is the only tenant any handler ever uses.

Roles: member (the tenant's products: every read and ingest), partner (warm paths only, within
its scopes, rate-limited), admin (member rights plus erasure and tenant administration).
Partner scopes: `company:DOMAIN` (targets at that company only, repeatable), `max-hops:N`. Member
scope: `team:CODE` (server/teams.py): the pipeline and deal RPCs answer about that team's deals only
(those its members own), and the key cannot write."""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass

from core.config import RateLimit, ServerConfig
from core.errors import AuthenticationError, InvalidInputError, PermissionDeniedError, RateLimitedError, RecordError
from core.vocabulary import echo, is_code
from graph import tenancy
from graph.pseudonymize import normalize_domain
from graph.reader import ALL_TENANTS, ApiKeyRecord, GraphReader
from graph.store import GraphStore

log = logging.getLogger("relgraph.server")

ROLES = ("member", "partner", "admin")
KEY_PREFIX = "rgk"
MAX_KEY_CHARS = 200
_MIN_RELOAD_INTERVAL_S = 1.0
# Compared against when a key id is unknown, so an unknown id costs what a wrong secret costs.
_NO_KEY_HASH = "0" * 64


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
    def team_scope(self) -> str | None:
        """The one team whose pipeline a member key sees; None: the tenant's whole pipeline."""
        return next((s.split(":", 1)[1] for s in self.scopes if s.startswith("team:")), None)

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


MAX_SCOPES = 20
MAX_LABEL_CHARS = 100
_LABEL = re.compile(r"^[\w .,:;@()/+-]*\Z")


def validate_scopes(role: str, scopes: list[str]) -> list[str]:
    if role not in ROLES:
        raise InvalidInputError(f"role must be one of {', '.join(ROLES)}; got {echo(role)}")
    if len(scopes) > MAX_SCOPES:
        raise InvalidInputError(f"at most {MAX_SCOPES} scopes per key")
    if role == "member":
        return _member_scopes(scopes)
    if scopes and role != "partner":
        raise InvalidInputError(f"{role} keys take no scopes")
    clean = []
    for scope in scopes:
        kind, _, value = scope.partition(":")
        if kind == "company":
            try:
                clean.append(f"company:{normalize_domain(value)}")
            except RecordError as exc:
                raise InvalidInputError(f"scope {echo(scope)}: {exc.reason}") from exc
        elif kind == "max-hops" and value in ("1", "2", "3"):
            clean.append(scope)
        else:
            raise InvalidInputError(f"unknown scope {echo(scope)}; use company:DOMAIN or max-hops:1|2|3")
    return clean


def _member_scopes(scopes: list[str]) -> list[str]:
    teams = [scope.partition(":")[2] for scope in scopes]
    if any(not scope.startswith("team:") or not is_code(team) for scope, team in zip(scopes, teams)) or len(teams) > 1:
        raise InvalidInputError(f"a member key takes at most one scope, team:CODE; got {echo(', '.join(scopes))}")
    return [f"team:{team}" for team in teams]


def validate_label(label: str) -> str:
    """A key's label: short, printable text for the key list (no control characters)."""
    if len(label) > MAX_LABEL_CHARS or not _LABEL.match(label):
        raise InvalidInputError(f"a key label is at most {MAX_LABEL_CHARS} letters, digits, spaces and .,:;@()/+-_")
    return label


def _hash(pepper: str, secret: str) -> str:
    return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).hexdigest()


def create_api_key(
    store: GraphStore, pepper: str, *, tenant: str, role: str, scopes: list[str], label: str = ""
) -> tuple[str, ApiKeyRecord]:
    """Create and store a key; returns the whole key (shown once) and its record."""
    scopes, label = validate_scopes(role, scopes), validate_label(label)
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(24)
    record = ApiKeyRecord(
        key_id=key_id,
        tenant=tenant,
        role=role,
        scopes=tuple(scopes),
        label=label,
        hash=_hash(pepper, secret),
        created_at=int(time.time()),
        revoked=False,
    )
    tenancy.create_key(store, record)
    return f"{KEY_PREFIX}_{key_id}_{secret}", record


class KeyRing:
    """Verifies bearer keys against an in-memory copy of the stored key records. The copy is read
    at start and re-read in the background every `reload_s`, so no request ever waits on Neo4j
    (and keys keep working while it is down). An unknown key id asks for an early background
    re-read (at most one a second), so a key created elsewhere works moments after its first use;
    a known id with a wrong secret and an unknown id cost the same work and get the same answer."""

    def __init__(self, reader: GraphReader, pepper: str, reload_s: float) -> None:
        self._reader = reader
        self._pepper = pepper
        self._reload_s = reload_s
        self._records: dict[str, ApiKeyRecord] = {}
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reload()

    def reload(self) -> None:
        """Re-read every key record now (raises StoreError when Neo4j is unreachable)."""
        self._records = {r.key_id: r for r in self._reader.api_keys(ALL_TENANTS)}

    def add(self, record: ApiKeyRecord) -> None:
        """A key this server just stored: usable at once."""
        self._records = {**self._records, record.key_id: record}

    def verify(self, authorization: str | None) -> AuthContext:
        if not authorization:
            raise AuthenticationError("missing 'authorization: Bearer <key>' metadata")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("authorization must be 'Bearer <key>'")
        prefix, _, rest = token.strip().partition("_")
        key_id, _, secret = rest.partition("_")
        if prefix != KEY_PREFIX or not key_id or not secret or len(token) > MAX_KEY_CHARS:
            raise AuthenticationError("malformed API key")
        record = self._records.get(key_id)
        matches = hmac.compare_digest(record.hash if record else _NO_KEY_HASH, _hash(self._pepper, secret))
        if record is None:
            self._wanted.set()
        if record is None or not matches:
            raise AuthenticationError("unknown API key")
        if record.revoked:
            raise AuthenticationError("this API key was revoked")
        return AuthContext(tenant=record.tenant, role=record.role, scopes=frozenset(record.scopes), key_id=key_id)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="api-key-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            self._wanted.wait(self._reload_s)
            self._wanted.clear()
            if self._stop.is_set():
                return
            try:
                self.reload()
                failing = False
            except Exception as exc:  # keep the last copy; the loop must outlive any failure
                if not failing:
                    log.warning("API keys could not be re-read, keeping the last copy: %s", exc)
                failing = True
            self._stop.wait(_MIN_RELOAD_INTERVAL_S)


# Which roles may call which RPC (full method names); anything not listed is member/admin only.
PARTNER_METHODS = frozenset({"/relgraph.v1.WarmPathsService/FindWarmPaths"})
ADMIN_METHODS = frozenset(
    {"/relgraph.v1.IngestService/EraseSubject"}
    | {f"/relgraph.v1.AdminService/{m}" for m in ("CreateApiKey", "RevokeApiKey", "ListApiKeys")}
)
# A key scoped to a team reads: writing could move reps or deals into its team's view.
WRITE_METHODS = frozenset({"/relgraph.v1.IngestService/IngestEvents"}) | ADMIN_METHODS


def authorize(auth: AuthContext, method: str) -> None:
    """Raise PermissionDeniedError unless the key's role may call `method`."""
    if auth.role == "partner" and method not in PARTNER_METHODS:
        raise PermissionDeniedError("partner keys may only call WarmPathsService.FindWarmPaths")
    if method in ADMIN_METHODS and auth.role != "admin":
        raise PermissionDeniedError(f"{method.rsplit('/', 1)[-1]} needs an admin key")
    if auth.team_scope is not None and method in WRITE_METHODS:
        raise PermissionDeniedError("a key scoped to a team only reads; ingest with a key for the whole tenant")


class TokenBuckets:
    """One token bucket per key (an API key id, a client address), each sized by a RateLimit."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated)
        self._lock = threading.Lock()
        self._max_keys = max_keys

    def _tokens(self, key: str, limit: RateLimit, now: float) -> float:
        tokens, updated = self._buckets.get(key, (float(limit.burst), now))
        return min(float(limit.burst), tokens + (now - updated) * limit.per_second)

    def wait_s(self, key: str, limit: RateLimit) -> float:
        """Seconds until `key` has a token again (0: it has one now); takes nothing."""
        with self._lock:
            tokens = self._tokens(key, limit, time.monotonic())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / limit.per_second

    def take(self, key: str, limit: RateLimit) -> float:
        """Take a token for `key`; returns 0, or the seconds to wait when none is left."""
        now = time.monotonic()
        with self._lock:
            tokens = self._tokens(key, limit, now)
            if tokens >= 1.0:
                if len(self._buckets) >= self._max_keys:  # many one-off keys: forget the full buckets
                    self._buckets = {k: v for k, v in self._buckets.items() if v[0] < limit.burst - 1}
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / limit.per_second


class RateLimiter:
    """A token bucket per API key, sized by role, and one per client address for failed
    authentications, checked before any key is looked at."""

    def __init__(self, config: ServerConfig) -> None:
        self._config = config
        self._per_key = TokenBuckets()
        self._auth_failures = TokenBuckets()

    def _limit(self, role: str) -> RateLimit:
        return {"partner": self._config.partner_rate, "admin": self._config.admin_rate}.get(
            role, self._config.member_rate
        )

    def check(self, auth: AuthContext) -> None:
        limit = self._limit(auth.role)
        wait = self._per_key.take(auth.key_id, limit)
        if wait:
            raise RateLimitedError(
                f"rate limit of {limit.per_second:g} requests/s for this key exceeded", retry_after_s=wait
            )

    def check_peer(self, peer: str) -> None:
        """Refuse a client address that has spent its failed authentications."""
        wait = self._auth_failures.wait_s(peer, self._config.auth_failure_rate)
        if wait:
            raise RateLimitedError("too many failed authentications from this address", retry_after_s=wait)

    def failed_authentication(self, peer: str) -> None:
        self._auth_failures.take(peer, self._config.auth_failure_rate)
