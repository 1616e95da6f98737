"""AdminService: snapshot status, model versions, and the tenant's own API keys."""

from __future__ import annotations

import calendar
import re
import time

import grpc
from google.protobuf import timestamp_pb2

from core.errors import InvalidInputError, InvalidRequestError
from gnn.model_kinds import MODEL_KINDS
from gnn.registry import ModelRegistry
from graph import tenancy
from graph.reader import ApiKeyRecord, GraphReader, TenantScope
from graph.store import GraphStore
from relgraph.v1 import admin_pb2 as pb
from relgraph.v1 import admin_pb2_grpc
from server.auth import KeyRing, create_api_key, current_auth, validate_label, validate_scopes
from server.state import ServingStateHolder

_KEY_ID = re.compile(r"^[0-9a-f]{12}\Z")
_ROLE_NAMES = {pb.ROLE_MEMBER: "member", pb.ROLE_PARTNER: "partner", pb.ROLE_ADMIN: "admin"}
_ROLE_ENUMS = {name: value for value, name in _ROLE_NAMES.items()}


def _info(record: ApiKeyRecord) -> pb.ApiKeyInfo:
    return pb.ApiKeyInfo(
        key_id=record.key_id,
        role=_ROLE_ENUMS[record.role],
        scopes=list(record.scopes),
        label=record.label,
        created_at=timestamp_pb2.Timestamp(seconds=record.created_at),
        revoked=record.revoked,
    )


class AdminService(admin_pb2_grpc.AdminServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        store: GraphStore,
        reader: GraphReader,
        holder: ServingStateHolder,
        keys: KeyRing,
        pepper: str,
        registry: ModelRegistry,
    ) -> None:
        self._store = store
        self._reader = reader
        self._registry = registry
        self._holder = holder
        self._keys = keys
        self._pepper = pepper

    def GetSnapshotStatus(
        self, request: pb.GetSnapshotStatusRequest, context: grpc.ServicerContext
    ) -> pb.GetSnapshotStatusResponse:
        state = self._holder.current
        snap = state.snapshot
        return pb.GetSnapshotStatusResponse(
            people=snap.people,
            relationships=snap.relationships,
            refreshed_at=timestamp_pb2.Timestamp(seconds=int(snap.refreshed_at)),
            age_seconds=self._holder.age_seconds(),
            bytes=snap.adjacency_bytes,
            store_reachable=state.store_reachable,
        )

    def ListModelVersions(
        self, request: pb.ListModelVersionsRequest, context: grpc.ServicerContext
    ) -> pb.ListModelVersionsResponse:
        versions = []
        for kind in MODEL_KINDS:
            for version in reversed(self._registry.versions(kind)):
                created = calendar.timegm(time.strptime(version.manifest["created"], "%Y-%m-%dT%H:%M:%SZ"))
                versions.append(
                    pb.ModelVersion(
                        version=version.name,
                        kind=kind,
                        promoted=version.promoted,
                        created_at=timestamp_pb2.Timestamp(seconds=created),
                    )
                )
        return pb.ListModelVersionsResponse(versions=versions)

    def CreateApiKey(self, request: pb.CreateApiKeyRequest, context: grpc.ServicerContext) -> pb.CreateApiKeyResponse:
        role = _ROLE_NAMES.get(request.role)
        if role is None:
            raise InvalidRequestError([("role", "must be ROLE_MEMBER, ROLE_PARTNER or ROLE_ADMIN")])
        violations = []
        for field, check in (
            ("scopes", lambda: validate_scopes(role, list(request.scopes))),
            ("label", lambda: validate_label(request.label)),
        ):
            try:
                check()
            except InvalidInputError as exc:
                violations.append((field, str(exc)))
        if violations:
            raise InvalidRequestError(violations)
        key, record = create_api_key(
            self._store,
            self._pepper,
            tenant=current_auth().tenant,
            role=role,
            scopes=list(request.scopes),
            label=request.label,
        )
        self._keys.add(record)
        return pb.CreateApiKeyResponse(key=key, info=_info(record))

    def RevokeApiKey(self, request: pb.RevokeApiKeyRequest, context: grpc.ServicerContext) -> pb.RevokeApiKeyResponse:
        if not _KEY_ID.match(request.key_id):
            raise InvalidRequestError([("key_id", "must be a key id (12 hex digits)")])
        revoked = tenancy.revoke_key(self._store, request.key_id, TenantScope.of(current_auth().tenant))
        self._keys.reload()
        return pb.RevokeApiKeyResponse(revoked=revoked)

    def ListApiKeys(self, request: pb.ListApiKeysRequest, context: grpc.ServicerContext) -> pb.ListApiKeysResponse:
        return pb.ListApiKeysResponse(
            keys=[_info(r) for r in self._reader.api_keys(TenantScope.of(current_auth().tenant))]
        )
