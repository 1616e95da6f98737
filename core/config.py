"""The one typed configuration object. Defaults are named here; a TOML file (`RELGRAPH_CONFIG`)
and then environment variables override them. Secrets come only from the environment or from
files under the relgraph home, never from the repository.

| variable | setting | default |
|---|---|---|
| RELGRAPH_CONFIG | TOML file with [neo4j], [managed_neo4j], [ingest], [server] tables | none |
| RELGRAPH_HOME | state: managed Neo4j data, local development key, models/, runs/, cache/ | ~/.local/share/relgraph |
| RELGRAPH_CACHE | downloads: virtual environment, Neo4j jars | ~/.cache/relgraph |
| NEO4J_URI | an external Neo4j (then nothing is started) | the managed server |
| NEO4J_USER / NEO4J_PASSWORD | credentials | neo4j / generated for the managed server |
| NEO4J_DATABASE | database name | neo4j |
| RELGRAPH_NEO4J_PORT | Bolt port of the managed server (loopback only) | 7687 |
| RELGRAPH_NETWORK_KEY | HMAC key for pseudonyms (at least 16 characters) | none (demo makes a local key) |
| RELGRAPH_API_KEY_PEPPER | secret mixed into stored API-key hashes | none (demo makes a local one) |
| RELGRAPH_SERVER_HOST / RELGRAPH_SERVER_PORT | where `relgraph serve` listens | 127.0.0.1 / 50051 |
| RELGRAPH_METRICS_HOST / RELGRAPH_METRICS_PORT | Prometheus metrics HTTP address (port 0: off) | 127.0.0.1 / 9464 |
| RELGRAPH_LOG_LEVEL | `relgraph serve`'s log level: DEBUG adds a line per successful call | INFO |
| RELGRAPH_AS_OF | time deal answers are computed at (epoch seconds or ISO 8601; replaying a dataset) | now |
| RELGRAPH_MIN_COHORT_DEALS / RELGRAPH_MIN_COHORT_TENANTS | k and m of the minimum cohort (DESIGN §4) | 10 / 3 |
| MLFLOW_TRACKING_URI | where training and evaluation runs are tracked (a team's MLflow server) | RELGRAPH_HOME/mlflow |
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from core.errors import ConfigError, RelgraphError
from core.vocabulary import parse_time

DEFAULT_HOME = Path.home() / ".local" / "share" / "relgraph"
DEFAULT_CACHE = Path.home() / ".cache" / "relgraph"
DEFAULT_BOLT_PORT = 7687
DEFAULT_BATCH_SIZE = 10000
MIN_NETWORK_KEY_CHARS = 16


@dataclass(frozen=True, kw_only=True)
class Neo4jConfig:
    """Where relgraph's graph lives. `uri=None` means the managed local server."""

    uri: str | None = None
    user: str = "neo4j"
    password: str | None = None
    database: str = "neo4j"
    # How long a managed transaction keeps retrying transient failures (a restart, a deadlock)
    # before the error reaches the caller: long enough for a blip, short enough that a writer
    # learns the store is down well within a client's deadline.
    max_retry_time_s: float = 3.0
    # How long one operator query (`relgraph cypher`) may run before Neo4j stops it.
    operator_query_timeout_s: float = 30.0


@dataclass(frozen=True, kw_only=True)
class ManagedNeo4jConfig:
    """The Neo4j server that relgraph provisions and starts itself, on loopback."""

    port: int = DEFAULT_BOLT_PORT
    heap: str = "1g"
    pagecache: str = "1g"
    start_timeout_s: float = 180.0


@dataclass(frozen=True, kw_only=True)
class IngestConfig:
    batch_size: int = DEFAULT_BATCH_SIZE
    strict: bool = True
    # An ingest into the empty managed database loads in bulk (neo4j-admin import) from this input
    # size up, unless told otherwise: below it, stopping and starting the database costs more.
    initial_auto_mb: float = 64.0


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """Token bucket per API key: `per_second` sustained, `burst` at once."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not self.per_second > 0 or self.burst < 1:
            raise ConfigError("a rate limit needs per_second > 0 and burst >= 1")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051  # 0 picks a free port
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464  # 0 turns the metrics endpoint off
    http_port: int = 0  # HTTP/JSON (Connect), /openapi.json and the web page on `host`; 0 turns it off
    workers: int = 8  # threads answering RPCs; graph work runs there, never on an event loop
    refresh_interval_s: float = 5.0  # incremental snapshot refresh from Neo4j
    full_rebuild_interval_s: float = 600.0  # picks up attribute changes and erasures made elsewhere
    key_cache_s: float = 30.0  # API keys are re-read in the background this often, never in a request
    member_rate: RateLimit = field(default_factory=lambda: RateLimit(per_second=500.0, burst=1000))
    partner_rate: RateLimit = field(default_factory=lambda: RateLimit(per_second=5.0, burst=20))
    admin_rate: RateLimit = field(default_factory=lambda: RateLimit(per_second=50.0, burst=100))
    # Failed authentications per client address: once spent, that address is refused before any key
    # is looked at (RESOURCE_EXHAUSTED) until the bucket refills.
    auth_failure_rate: RateLimit = field(default_factory=lambda: RateLimit(per_second=5.0, burst=20))
    # Health answers NOT_SERVING once the snapshot is older than this (refreshes keep failing).
    max_snapshot_age_s: float = 300.0
    # How long erasure tombstones are kept for running servers to apply; at least one full rebuild.
    erasure_retention_s: float = 1200.0
    # The most partial paths (relationship slots) one warm-path search may examine: a request that
    # needs more is refused with RESOURCE_EXHAUSTED instead of starving the others.
    max_search_work: int = 5_000_000
    # Network statistics (buyer process) are shown only when they rest on at least this many closed
    # deals from at least this many tenants (DESIGN §4).
    min_cohort_deals: int = 10
    min_cohort_tenants: int = 3
    # The time answers are computed at (warm-path recency and deal answers), epoch seconds; 0 means
    # now. Set it to replay a dataset observed at a past time (the demo sets the generated world's).
    as_of: int = 0
    # INFO logs failed calls, refreshes and model changes; DEBUG also one line per successful call.
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if self.min_cohort_deals < 1 or self.min_cohort_tenants < 1:
            raise ConfigError("min_cohort_deals and min_cohort_tenants must be at least 1")
        if self.erasure_retention_s < self.full_rebuild_interval_s:
            raise ConfigError(
                "erasure_retention_s must be at least full_rebuild_interval_s, so every running "
                "server applies an erasure before its tombstone goes"
            )
        if self.max_search_work < 1000:
            raise ConfigError("max_search_work must be at least 1000")
        for name in ("port", "http_port", "metrics_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(f"{name} must be a port number, 0-65535, got {getattr(self, name)}")


@dataclass(frozen=True, kw_only=True)
class Config:
    home: Path = DEFAULT_HOME
    cache: Path = DEFAULT_CACHE
    neo4j: Neo4jConfig = field(default_factory=Neo4jConfig)
    managed_neo4j: ManagedNeo4jConfig = field(default_factory=ManagedNeo4jConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    network_key: str | None = None
    api_key_pepper: str | None = None
    tracking_uri: str | None = None  # MLflow's; None: the local store under `home`

    @property
    def neo4j_home(self) -> Path:
        return self.home / "neo4j"

    @property
    def models_dir(self) -> Path:
        """The model registry (gnn.registry)."""
        return self.home / "models"

    @property
    def runs_dir(self) -> Path:
        """Training runs and their checkpoints."""
        return self.home / "runs"

    @property
    def export_cache_dir(self) -> Path:
        """Cached training exports, keyed by data window, scope and graph fingerprint."""
        return self.home / "cache" / "exports"

    @property
    def tracking_store(self) -> str:
        """Where runs are tracked: `tracking_uri`, else a SQLite MLflow store under the home."""
        return self.tracking_uri or f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}"

    @property
    def local_key_path(self) -> Path:
        return self.home / "network.key"

    @property
    def uses_managed_neo4j(self) -> bool:
        return self.neo4j.uri is None


_T = TypeVar("_T")


def _section(cls: type[_T], values: Mapping[str, Any], name: str) -> _T:
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) in [{name}]: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**values)


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Build the configuration from defaults, the optional TOML file, then the environment."""
    env = os.environ if env is None else env
    file_values: dict[str, Any] = {}
    if path := env.get("RELGRAPH_CONFIG"):
        try:
            file_values = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read RELGRAPH_CONFIG={path}: {exc}") from exc

    neo4j = dict(file_values.pop("neo4j", {}))
    managed = dict(file_values.pop("managed_neo4j", {}))
    ingest = dict(file_values.pop("ingest", {}))
    server = dict(file_values.pop("server", {}))
    for role in ("member_rate", "partner_rate", "admin_rate", "auth_failure_rate"):
        if role in server:
            server[role] = _section(RateLimit, server[role], f"server.{role}")
    top: dict[str, Any] = {k: file_values.pop(k) for k in ("home", "cache") if k in file_values}
    if file_values:
        raise ConfigError(f"unknown setting(s) in {env['RELGRAPH_CONFIG']}: {', '.join(sorted(file_values))}")

    for var, key in (
        ("NEO4J_URI", "uri"),
        ("NEO4J_USER", "user"),
        ("NEO4J_PASSWORD", "password"),
        ("NEO4J_DATABASE", "database"),
    ):
        if env.get(var):
            neo4j[key] = env[var]
    if env.get("RELGRAPH_NEO4J_PORT"):
        try:
            managed["port"] = int(env["RELGRAPH_NEO4J_PORT"])
        except ValueError as exc:
            raise ConfigError(f"RELGRAPH_NEO4J_PORT must be an integer, got {env['RELGRAPH_NEO4J_PORT']!r}") from exc
    for var, key, cast in (
        ("RELGRAPH_SERVER_HOST", "host", str),
        ("RELGRAPH_SERVER_PORT", "port", int),
        ("RELGRAPH_HTTP_PORT", "http_port", int),
        ("RELGRAPH_METRICS_HOST", "metrics_host", str),
        ("RELGRAPH_METRICS_PORT", "metrics_port", int),
        ("RELGRAPH_LOG_LEVEL", "log_level", str),
        ("RELGRAPH_MIN_COHORT_DEALS", "min_cohort_deals", int),
        ("RELGRAPH_MIN_COHORT_TENANTS", "min_cohort_tenants", int),
    ):
        if env.get(var):
            try:
                server[key] = cast(env[var])
            except ValueError as exc:
                raise ConfigError(f"{var} must be an integer, got {env[var]!r}") from exc
    if env.get("RELGRAPH_AS_OF"):
        try:
            server["as_of"] = parse_time(env["RELGRAPH_AS_OF"], "RELGRAPH_AS_OF")
        except RelgraphError as exc:
            raise ConfigError(f"RELGRAPH_AS_OF: {exc}") from exc
    for var, key in (("RELGRAPH_HOME", "home"), ("RELGRAPH_CACHE", "cache")):
        if env.get(var):
            top[key] = env[var]

    network_key = env.get("RELGRAPH_NETWORK_KEY") or None
    if network_key is not None and len(network_key) < MIN_NETWORK_KEY_CHARS:
        raise ConfigError(f"RELGRAPH_NETWORK_KEY must have at least {MIN_NETWORK_KEY_CHARS} characters")
    return Config(
        home=Path(top.get("home", DEFAULT_HOME)).expanduser(),
        cache=Path(top.get("cache", DEFAULT_CACHE)).expanduser(),
        neo4j=_section(Neo4jConfig, neo4j, "neo4j"),
        managed_neo4j=_section(ManagedNeo4jConfig, managed, "managed_neo4j"),
        ingest=_section(IngestConfig, ingest, "ingest"),
        server=_section(ServerConfig, server, "server"),
        network_key=network_key,
        api_key_pepper=env.get("RELGRAPH_API_KEY_PEPPER") or None,
        tracking_uri=env.get("MLFLOW_TRACKING_URI") or None,
    )
