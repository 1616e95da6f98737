"""IngestService: client-streamed records in the ingest format's shape, written like
`relgraph ingest` for the caller's tenant; erasure of what the tenant holds about a person (admin keys)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from core.errors import InvalidRequestError, RecordError, StoreUnavailableError
from graph.ingest import ingest_sources
from graph.operations import erase_person
from graph.pseudonymize import Pseudonymizer
from graph.store import GraphStore
from relgraph.v1 import ingest_pb2 as pb
from relgraph.v1 import ingest_pb2_grpc
from server.auth import current_auth
from server.state import ServingStateHolder

MAX_STREAM_RECORDS = 1_000_000  # one stream; send more as further streams


def _records(messages: Iterator[pb.IngestEventsRequest], tenant: str) -> Iterator[tuple[int, Any, None]]:
    """Each message as an ingest record of the caller's tenant (records carry no tenant field)."""
    for index, message in enumerate(messages, start=1):
        if index > MAX_STREAM_RECORDS:
            yield (
                index,
                RecordError(f"a stream holds at most {MAX_STREAM_RECORDS} records; send the rest in another"),
                None,
            )
            return
        kind = message.WhichOneof("record")
        if kind is None:
            yield index, RecordError("the message holds no record"), None
            continue
        record = MessageToDict(getattr(message, kind), preserving_proto_field_name=True)
        yield index, {**record, "kind": kind, "tenant": tenant}, None


class IngestService(ingest_pb2_grpc.IngestServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        store: GraphStore,
        holder: ServingStateHolder,
        pseudo: Pseudonymizer,
        batch_size: int,
        erasure_retention_s: float,
    ) -> None:
        self._store = store
        self._holder = holder
        self._pseudo = pseudo
        self._batch_size = batch_size
        self._erasure_retention_s = erasure_retention_s

    def _require_store(self) -> None:
        """Writes while the refresher finds Neo4j unreachable answer UNAVAILABLE at once, instead
        of each waiting out the driver's retries."""
        if not self._holder.current.store_reachable:
            raise StoreUnavailableError("the graph store is unreachable; writes resume when it is back")

    def IngestEvents(
        self, request_iterator: Iterator[pb.IngestEventsRequest], context: grpc.ServicerContext
    ) -> pb.IngestEventsResponse:
        auth = current_auth()
        self._require_store()
        first = next(request_iterator, None)
        if first is None:
            return pb.IngestEventsResponse()
        messages = itertools.chain([first], request_iterator)
        summary = ingest_sources(
            self._store,
            [("stream", _records(messages, auth.tenant))],
            self._pseudo,
            strict=not first.lenient,
            batch_size=self._batch_size,
            progress=False,
        )
        response = pb.IngestEventsResponse(
            records_read=summary.records_read,
            accepted=summary.accepted,
            rejected=summary.rejected,
            nodes_created=summary.nodes_created,
            relationships_created=summary.relationships_created,
            events_added=summary.events_added,
            events_already_present=summary.events_already_present,
        )
        for rejection in summary.first_errors:
            response.first_rejections.add(index=rejection.line, reason=rejection.reason, field=rejection.field)
        return response

    def EraseSubject(self, request: pb.EraseSubjectRequest, context: grpc.ServicerContext) -> pb.EraseSubjectResponse:
        """Erase what the caller's tenant holds about the person (a network-wide erasure is an
        operator's `relgraph erase --network`); `found` says only whether the tenant held anything."""
        try:
            pid = self._pseudo.pid(request.email)
        except RecordError as exc:
            raise InvalidRequestError([("email", exc.reason)]) from exc
        self._require_store()
        auth = current_auth()
        report = erase_person(
            self._store, pid, scope=auth.tenant, actor=f"api-key:{auth.key_id}", retention_s=self._erasure_retention_s
        )
        if report.found:
            self._holder.refresh()  # this server forgets the person now; the others at their next refresh
        return pb.EraseSubjectResponse(
            found=report.found, nodes_deleted=report.nodes_deleted, relationships_deleted=report.relationships_deleted
        )
