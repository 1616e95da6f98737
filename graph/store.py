"""All Neo4j I/O goes through `GraphStore`: named constant queries with parameters, the database
named on every call, managed transactions that retry transient failures, driver errors mapped to
relgraph's own, and a read-only entry point for operators."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import neo4j
from neo4j.exceptions import AuthError, ClientError, DriverError, Neo4jError, ServiceUnavailable, SessionExpired

from core.config import Config
from core.errors import ConfigError, ReadOnlyViolationError, StoreAuthError, StoreError, StoreUnavailableError

_T = TypeVar("_T")


@dataclass(frozen=True)
class Query:
    """A named Cypher statement; the name travels as transaction metadata for query logs."""

    name: str
    text: str


def connect(config: Config) -> GraphStore:
    """Open a store on the configured Neo4j: NEO4J_URI if set, else the managed local server."""
    from graph.neo4j_server import ManagedNeo4j

    if config.neo4j.uri is not None:
        uri, password = config.neo4j.uri, config.neo4j.password
    else:
        managed = ManagedNeo4j(config)
        uri, password = managed.uri, config.neo4j.password or managed.password()
        if password is None:
            raise ConfigError(
                "the managed Neo4j has not been started yet: run `relgraph neo4j start` "
                "(or set NEO4J_URI/NEO4J_USER/NEO4J_PASSWORD for another server)"
            )
    if password is None:
        raise ConfigError("NEO4J_PASSWORD is required with NEO4J_URI")
    return GraphStore(
        uri,
        (config.neo4j.user, password),
        database=config.neo4j.database,
        max_retry_time_s=config.neo4j.max_retry_time_s,
    )


@contextmanager
def _translated(query_name: str) -> Iterator[None]:
    try:
        yield
    except AuthError as exc:
        raise StoreAuthError(f"Neo4j refused the credentials: {exc.message}") from exc
    except (ServiceUnavailable, SessionExpired) as exc:
        raise StoreUnavailableError(f"Neo4j is unavailable ({query_name}): {exc}") from exc
    except Neo4jError as exc:
        raise StoreError(f"{query_name}: {exc.code}: {exc.message}") from exc
    except DriverError as exc:
        raise StoreError(f"{query_name}: {exc}") from exc


class GraphStore:
    """A connection pool to one Neo4j database."""

    def __init__(
        self, uri: str, auth: tuple[str, str], *, database: str = "neo4j", max_retry_time_s: float = 3.0
    ) -> None:
        self.uri = uri
        self.database = database
        # Notifications (e.g. "label does not exist yet" on an empty database) are not errors for relgraph.
        self._driver = neo4j.GraphDatabase.driver(
            uri,
            auth=auth,
            max_connection_lifetime=3600,
            notifications_min_severity="OFF",
            max_transaction_retry_time=max_retry_time_s,
            connection_acquisition_timeout=max_retry_time_s,
            connection_timeout=max_retry_time_s,
        )

    def close(self) -> None:
        self._driver.close()

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GraphStore(uri={self.uri!r}, database={self.database!r})"

    def verify(self) -> None:
        with _translated("verify_connectivity"):
            self._driver.verify_connectivity()

    def read(self, query: Query, **params: Any) -> list[dict[str, Any]]:
        """Run a read query in a retried read transaction; rows as dicts."""
        return self.read_tx(query.name, lambda tx: _rows(tx, query, params))

    def write(self, query: Query, **params: Any) -> neo4j.SummaryCounters:
        """Run one write query in its own retried transaction; returns what it changed."""
        return self.write_tx(query.name, lambda tx: _consume(tx, query, params))

    def read_write(self, query: Query, **params: Any) -> list[dict[str, Any]]:
        """Run one write query that returns rows, in its own retried transaction."""
        return self.write_tx(query.name, lambda tx: _rows(tx, query, params))

    def read_tx(self, name: str, work: Callable[[neo4j.ManagedTransaction], _T]) -> _T:
        with (
            _translated(name),
            self._driver.session(database=self.database, default_access_mode=neo4j.READ_ACCESS) as session,
        ):
            return session.execute_read(neo4j.unit_of_work(metadata={"app": "relgraph", "query": name})(work))

    def write_tx(self, name: str, work: Callable[[neo4j.ManagedTransaction], _T]) -> _T:
        """Run `work` in one managed write transaction: all of it commits or none, retried on transient errors."""
        with _translated(name), self._driver.session(database=self.database) as session:
            return session.execute_write(neo4j.unit_of_work(metadata={"app": "relgraph", "query": name})(work))

    def schema(self, query: Query, **params: Any) -> None:
        """Schema statements (constraints, indexes) run in auto-commit transactions, as Neo4j requires."""
        with _translated(query.name), self._driver.session(database=self.database) as session:
            session.run(neo4j.Query(query.text, metadata={"app": "relgraph", "query": query.name}), params).consume()

    def read_only(
        self, text: str, params: Mapping[str, Any] | None = None, *, timeout_s: float = 30.0, max_rows: int = 10_000
    ) -> tuple[list[str], list[dict[str, Any]], bool]:
        """Run operator-supplied Cypher if it only reads the graph: Neo4j's planner must classify
        it read-only, and its plan may not load external data (LOAD CSV), run an administrative
        command (SHOW, TERMINATE) or call a procedure other than the schema reads in
        OPERATOR_PROCEDURES. Neo4j stops it after `timeout_s`; at most `max_rows` rows come back
        (keys, rows, and whether more were left out)."""
        params = dict(params or {})
        with (
            _translated("operator_cypher"),
            self._driver.session(database=self.database, default_access_mode=neo4j.READ_ACCESS) as session,
        ):
            try:
                plan = session.run(f"EXPLAIN {text}", params).consume()
            except ClientError as exc:
                raise StoreError(f"{exc.code}: {exc.message}") from exc
            if plan.query_type != "r":
                raise ReadOnlyViolationError(
                    f"refused: the query is classified {plan.query_type!r} "
                    "(writes or schema changes); `relgraph cypher` runs read-only queries"
                )
            for operator, details in _operators(plan.plan):
                refusal = _refusal(operator, details)
                if refusal:
                    raise ReadOnlyViolationError(f"refused: {refusal}; `relgraph cypher` reads the graph only")

            @neo4j.unit_of_work(timeout=timeout_s, metadata={"app": "relgraph", "query": "operator_cypher"})
            def work(tx: neo4j.ManagedTransaction) -> tuple[list[str], list[dict[str, Any]], bool]:
                result = tx.run(text, params)
                rows = [record.data() for record in itertools.islice(result, max_rows + 1)]
                return list(result.keys()), rows[:max_rows], len(rows) > max_rows

            return session.execute_read(work)


# Procedures an operator query may call: schema reads, nothing that reaches the DBMS or the disk.
OPERATOR_PROCEDURES = (
    "db.labels",
    "db.relationshipTypes",
    "db.propertyKeys",
    "db.schema.visualization",
    "db.schema.nodeTypeProperties",
    "db.schema.relTypeProperties",
)


def _operators(plan: Any) -> Iterator[tuple[str, str]]:
    """(operator type, details) of every operator in an EXPLAIN plan."""
    if not isinstance(plan, Mapping):
        return
    args = plan.get("args") or {}
    yield str(plan.get("operatorType", "")).split("@")[0], str(args.get("Details", ""))
    for child in plan.get("children") or ():
        yield from _operators(child)


def _refusal(operator: str, details: str) -> str | None:
    if operator == "LoadCSV":
        return "LOAD CSV reads outside the graph"
    if operator.startswith(("Show", "Terminate")):
        return f"{operator} is an administrative command"
    if operator == "ProcedureCall" and not details.startswith(tuple(f"{p}(" for p in OPERATOR_PROCEDURES)):
        return f"only the schema procedures {', '.join(OPERATOR_PROCEDURES)} may be called"
    return None


def _rows(tx: neo4j.ManagedTransaction, query: Query, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [record.data() for record in tx.run(query.text, dict(params))]


def _consume(tx: neo4j.ManagedTransaction, query: Query, params: Mapping[str, Any]) -> neo4j.SummaryCounters:
    return tx.run(query.text, dict(params)).consume().counters
