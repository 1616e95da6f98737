"""The OpenAPI 3.1 document of relgraph.v1 over HTTP/JSON, generated from the contracts themselves
(the descriptor set `bin/gen-protos` writes with the .proto comments), so it cannot drift from
them: one POST path per RPC (the Connect protocol's `/package.Service/Method`), request and
response schemas in the proto3 JSON mapping, descriptions from the comments, bearer auth and
Connect's error body.

    python -m server.openapi docs/    rewrites docs/openapi.json and docs/http-api.md
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor

from relgraph.v1 import admin_pb2, buyer_intelligence_pb2, ingest_pb2, pipeline_pb2, warm_paths_pb2

SERVICES: tuple[ServiceDescriptor, ...] = tuple(
    module.DESCRIPTOR.services_by_name[name]
    for module, name in (
        (warm_paths_pb2, "WarmPathsService"),
        (buyer_intelligence_pb2, "BuyerIntelligenceService"),
        (ingest_pb2, "IngestService"),
        (admin_pb2, "AdminService"),
        (pipeline_pb2, "PipelineService"),
    )
)
CONNECT_STREAM = "application/connect+json"

_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
    **{
        t: {"type": "integer", "format": "int32"}
        for t in (
            FieldDescriptor.TYPE_INT32,
            FieldDescriptor.TYPE_SINT32,
            FieldDescriptor.TYPE_SFIXED32,
            FieldDescriptor.TYPE_UINT32,
            FieldDescriptor.TYPE_FIXED32,
        )
    },
    # proto3 JSON writes 64-bit integers as strings (JavaScript numbers lose precision) and reads both.
    **{
        t: {"type": ["string", "integer"], "format": "int64"}
        for t in (
            FieldDescriptor.TYPE_INT64,
            FieldDescriptor.TYPE_SINT64,
            FieldDescriptor.TYPE_SFIXED64,
            FieldDescriptor.TYPE_UINT64,
            FieldDescriptor.TYPE_FIXED64,
        )
    },
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
}
_ERROR = {
    "type": "object",
    "description": "A Connect error: the gRPC status code in snake case, its message, and the rich "
    "details (google.rpc.BadRequest field violations, google.rpc.RetryInfo) with their JSON in `debug`.",
    "properties": {
        "code": {"type": "string", "examples": ["invalid_argument", "unauthenticated", "resource_exhausted"]},
        "message": {"type": "string"},
        "details": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "examples": ["google.rpc.BadRequest"]},
                    "value": {"type": "string", "format": "byte"},
                    "debug": {"type": "object"},
                },
            },
        },
    },
    "required": ["code"],
}


@cache
def _comments() -> dict[str, str]:
    """The leading comment of every service, method, message, field, enum and enum value, by full name."""
    files = descriptor_pb2.FileDescriptorSet()
    files.ParseFromString((Path(admin_pb2.__file__).parent / "descriptors.binpb").read_bytes())  # beside the stubs
    comments: dict[str, str] = {}
    for file in files.file:
        by_path = {tuple(loc.path): loc.leading_comments.strip() for loc in file.source_code_info.location}
        for path, name in _named_paths(file):
            if by_path.get(path):
                comments[name] = " ".join(line.strip() for line in by_path[path].splitlines())
    return comments


def _named_paths(file: descriptor_pb2.FileDescriptorProto) -> Iterator[tuple[tuple[int, ...], str]]:
    """(source-location path, full name) of each declaration, as descriptor.proto numbers them."""

    def messages(items: Any, prefix: str, path: tuple[int, ...], tag: int) -> Iterator[tuple[tuple[int, ...], str]]:
        for i, message in enumerate(items):
            name, here = f"{prefix}.{message.name}", (*path, tag, i)
            yield here, name
            for j, f in enumerate(message.field):
                yield (*here, 2, j), f"{name}.{f.name}"
            yield from messages(message.nested_type, name, here, 3)
            yield from enums(message.enum_type, name, here, 4)

    def enums(items: Any, prefix: str, path: tuple[int, ...], tag: int) -> Iterator[tuple[tuple[int, ...], str]]:
        for i, enum in enumerate(items):
            name, here = f"{prefix}.{enum.name}", (*path, tag, i)
            yield here, name
            for j, value in enumerate(enum.value):
                yield (*here, 2, j), f"{prefix}.{value.name}"

    yield from messages(file.message_type, file.package, (), 4)
    yield from enums(file.enum_type, file.package, (), 5)
    for i, service in enumerate(file.service):
        name = f"{file.package}.{service.name}"
        yield (6, i), name
        for j, method in enumerate(service.method):
            yield (6, i, 2, j), f"{name}.{method.name}"


def _field_schema(field: FieldDescriptor, refs: set[str]) -> dict[str, Any]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value = field.message_type.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _field_schema(value, refs)}
    if field.message_type is not None:
        kind = field.message_type.full_name
        if kind in _WELL_KNOWN:
            item = dict(_WELL_KNOWN[kind])
        else:
            refs.add(kind)
            item = {"$ref": f"#/components/schemas/{kind}"}
    elif field.enum_type is not None:
        item = {"type": "string", "enum": [v.name for v in field.enum_type.values]}
    else:
        item = dict(_SCALARS[field.type])
    return {"type": "array", "items": item} if field.is_repeated else item


def _message_schema(message: Descriptor, refs: set[str]) -> dict[str, Any]:
    comments = _comments()
    properties = {}
    for field in message.fields:
        property_schema = _field_schema(field, refs)
        if description := comments.get(field.full_name):  # beside a $ref too, as OpenAPI 3.1 allows
            property_schema["description"] = description
        properties[field.json_name] = property_schema
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if description := comments.get(message.full_name):
        schema["description"] = description
    oneofs = [o for o in message.oneofs if not o.name.startswith("_")]  # "_x": proto3 optional
    if oneofs:
        schema["x-oneof"] = {o.name: [f.json_name for f in o.fields] for o in oneofs}
    return schema


def _operation(service: ServiceDescriptor, method: MethodDescriptor, refs: set[str]) -> dict[str, Any]:
    comments = _comments()
    refs.update((method.input_type.full_name, method.output_type.full_name))
    streaming = method.client_streaming  # set where the generated descriptor knows (protobuf >= 5.26)
    request = {"$ref": f"#/components/schemas/{method.input_type.full_name}"}
    response = {"$ref": f"#/components/schemas/{method.output_type.full_name}"}
    media = CONNECT_STREAM if streaming else "application/json"
    operation: dict[str, Any] = {
        "operationId": f"{service.name}.{method.name}",
        "tags": [service.name],
        "summary": comments.get(method.full_name, method.name),
        "requestBody": {"required": True, "content": {media: {"schema": request}}},
        "responses": {
            "200": {"description": "The answer.", "content": {media: {"schema": response}}},
            "default": {
                "description": "An error (HTTP status from the gRPC code, e.g. 400, 401, 403, 404, 429, 503).",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/connect.Error"}}},
            },
        },
    }
    if streaming:
        operation["description"] = (
            "Client-streaming over the Connect protocol: the body is a sequence of enveloped JSON "
            "messages (1 flag byte, a 4-byte big-endian length, the message), and so is the answer "
            "(the response, then an end-of-stream envelope with flag 2 carrying any error)."
        )
    return operation


def openapi_document() -> dict[str, Any]:
    """The whole document; deterministic (sorted schemas), so the committed copy can be checked."""
    refs: set[str] = set()
    paths = {
        f"/{service.full_name}/{method.name}": {"post": _operation(service, method, refs)}
        for service in SERVICES
        for method in service.methods
    }
    schemas: dict[str, Any] = {"connect.Error": _ERROR}
    pool = SERVICES[0].file.pool
    while pending := sorted(refs - schemas.keys()):
        for name in pending:
            schemas[name] = _message_schema(pool.FindMessageTypeByName(name), refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "relgraph.v1 over HTTP/JSON",
            "version": "v1",
            "description": "Every relgraph.v1 RPC as POST /relgraph.v1.<Service>/<Method> with a JSON body "
            "(the Connect protocol), served by `relgraph serve --http-port P`: the same API keys, roles, "
            "rate limits, visibility rule and validation as gRPC.",
        },
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "rgk_<id>_<secret>"}},
            "schemas": dict(sorted(schemas.items())),
        },
    }


def markdown_reference(document: dict[str, Any]) -> str:
    """The document as a Markdown page: per RPC its path, summary and request/response fields."""
    schemas = document["components"]["schemas"]
    lines = [
        "# relgraph.v1 over HTTP/JSON",
        "",
        "Generated from the contracts by `python -m server.openapi docs/` (with `openapi.json` beside it);",
        "a test fails when it is stale. Every call is `POST` with `Authorization: Bearer <key>` and",
        "`Content-Type: application/json`; field names are the proto3 JSON names (lowerCamelCase; the",
        "`.proto` names are accepted too), 64-bit integers are strings, times are RFC 3339.",
        "",
        "```sh",
        "curl -H \"Authorization: Bearer $RELGRAPH_KEY\" -H 'Content-Type: application/json' \\",
        '  -d \'{"targetEmail": "cfo@buyer.example", "k": 3}\' \\',
        "  http://127.0.0.1:8080/relgraph.v1.WarmPathsService/FindWarmPaths",
        "```",
        "",
        "Errors answer with an HTTP status from the gRPC code (400 invalid_argument and failed_precondition,",
        "401 unauthenticated, 403 permission_denied, 404 not_found, 429 resource_exhausted with",
        "`Retry-After`, 503 unavailable, 504 deadline_exceeded) and a JSON body",
        '`{"code", "message", "details"}`, field violations in `details[].debug.fieldViolations`.',
    ]
    for path, item in document["paths"].items():
        operation = item["post"]
        lines += ["", f"## `{path}`", "", operation["summary"]]
        if "description" in operation:
            lines += ["", operation["description"]]
        request, response = _message_names(operation)
        lines += ["", f"Request `{request}`:", "", *_field_table(schemas, request)]
        lines += ["", f"Response `{response}`:", "", *_field_table(schemas, response)]
    shown = {n for item in document["paths"].values() for n in _message_names(item["post"])}
    lines += ["", "## Messages used above", ""]
    for name in sorted(schemas.keys() - shown - {"connect.Error"}):
        lines += [f"### `{name}`", "", schemas[name].get("description", ""), "", *_field_table(schemas, name), ""]
    return "\n".join(lines).rstrip() + "\n"


def _message_names(operation: dict[str, Any]) -> tuple[str, str]:
    """The request and response message names of an operation."""
    bodies = (operation["requestBody"]["content"], operation["responses"]["200"]["content"])
    request, response = (next(iter(body.values()))["schema"]["$ref"].rsplit("/", 1)[1] for body in bodies)
    return request, response


def _field_table(schemas: dict[str, Any], name: str) -> list[str]:
    properties = schemas[name]["properties"]
    if not properties:
        return ["(no fields)"]
    rows = ["| field | type | meaning |", "|---|---|---|"]
    for field, schema in properties.items():
        meaning = schema.get("description", "").replace("|", "\\|")
        rows.append(f"| `{field}` | {_type_name(schema)} | {meaning} |")
    return rows


def _type_name(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return f"`{schema['$ref'].rsplit('/', 1)[1]}`"
    if schema.get("type") == "array":
        return f"list of {_type_name(schema['items'])}"
    if "enum" in schema:
        return "enum: " + ", ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("format") or schema.get("type")
    return str(kind if not isinstance(kind, list) else kind[0])


def write_docs(folder: Path) -> None:
    document = openapi_document()
    (folder / "openapi.json").write_text(json.dumps(document, indent=2) + "\n")
    (folder / "http-api.md").write_text(markdown_reference(document))


if __name__ == "__main__":
    write_docs(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"))
