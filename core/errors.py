"""The one error tree of relgraph. Each error names the gRPC status it maps to, so the server turns
any of them into a response with one interceptor, and the CLI prints them without a traceback.

    RelgraphError                      INTERNAL
    ├── ConfigError                    FAILED_PRECONDITION  a setting is missing or invalid
    ├── InvalidInputError              INVALID_ARGUMENT     bad records or request fields
    │   └── RecordError                                     one ingest record, with its reason
    │   └── InvalidRequestError                             request fields, as field violations
    ├── NotFoundError                  NOT_FOUND
    ├── AuthenticationError            UNAUTHENTICATED      no, unknown or revoked API key
    ├── PermissionDeniedError          PERMISSION_DENIED    the key's role or scopes do not allow it
    ├── RateLimitedError               RESOURCE_EXHAUSTED   per-key rate limit, with a retry delay
    ├── QueryTooCostlyError            RESOURCE_EXHAUSTED   one request would cost more than its work budget
    ├── DeadlineExceededError          DEADLINE_EXCEEDED    the client's deadline passed; the work stopped
    ├── NoModelError                   FAILED_PRECONDITION  no model promoted for this answer
    │   └── ModelSchemaError                                a model trained on other features than served
    ├── CohortTooSmallError            FAILED_PRECONDITION  network statistics would rest on too few deals or tenants
    ├── ProvisionError                 FAILED_PRECONDITION  the managed Neo4j could not be set up or started
    └── StoreError                     INTERNAL             Neo4j answered with an error
        ├── StoreUnavailableError      UNAVAILABLE          Neo4j cannot be reached (retryable)
        ├── StoreAuthError             UNAUTHENTICATED      Neo4j refused the credentials
        └── ReadOnlyViolationError     PERMISSION_DENIED    a write was sent through a read-only entry point
"""

from __future__ import annotations


class RelgraphError(Exception):
    """Root of all relgraph errors; `grpc_status` is the name of a grpc.StatusCode member."""

    grpc_status = "INTERNAL"


class ConfigError(RelgraphError):
    grpc_status = "FAILED_PRECONDITION"


class InvalidInputError(RelgraphError):
    grpc_status = "INVALID_ARGUMENT"


class RecordError(InvalidInputError):
    """One ingest record is invalid; `field` names the offending field when there is one."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


class InvalidRequestError(InvalidInputError):
    """Bad request fields; `violations` are (field path, description) pairs."""

    def __init__(self, violations: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {d}" for f, d in violations))
        self.violations = violations


class NotFoundError(RelgraphError):
    grpc_status = "NOT_FOUND"


class AuthenticationError(RelgraphError):
    grpc_status = "UNAUTHENTICATED"


class PermissionDeniedError(RelgraphError):
    grpc_status = "PERMISSION_DENIED"


class RateLimitedError(RelgraphError):
    grpc_status = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QueryTooCostlyError(RelgraphError):
    grpc_status = "RESOURCE_EXHAUSTED"


class DeadlineExceededError(RelgraphError):
    grpc_status = "DEADLINE_EXCEEDED"


class NoModelError(RelgraphError):
    grpc_status = "FAILED_PRECONDITION"


class ModelSchemaError(NoModelError):
    grpc_status = "FAILED_PRECONDITION"


class CohortTooSmallError(RelgraphError):
    grpc_status = "FAILED_PRECONDITION"


class ProvisionError(RelgraphError):
    grpc_status = "FAILED_PRECONDITION"


class StoreError(RelgraphError):
    grpc_status = "INTERNAL"


class StoreUnavailableError(StoreError):
    grpc_status = "UNAVAILABLE"


class StoreAuthError(StoreError):
    grpc_status = "UNAUTHENTICATED"


class ReadOnlyViolationError(StoreError):
    grpc_status = "PERMISSION_DENIED"
