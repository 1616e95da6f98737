"""The OpenAPI document comes from the contracts: every RPC, every reference resolved, every field
described, and the committed copies in docs/ regenerated from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from server.openapi import SERVICES, markdown_reference, openapi_document

DOCS = Path(__file__).resolve().parents[3] / "docs"


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_every_rpc_is_a_path_and_every_reference_resolves() -> None:
    document = openapi_document()
    expected = {f"/{s.full_name}/{m.name}" for s in SERVICES for m in s.methods}
    assert set(document["paths"]) == expected and len(expected) == 15
    schemas = document["components"]["schemas"]
    assert {ref.removeprefix("#/components/schemas/") for ref in _refs(document)} <= schemas.keys()
    ingest = document["paths"]["/relgraph.v1.IngestService/IngestEvents"]["post"]
    assert "application/connect+json" in ingest["requestBody"]["content"]


def test_every_field_has_its_proto_comment() -> None:
    schemas = openapi_document()["components"]["schemas"]
    request = schemas["relgraph.v1.FindWarmPathsRequest"]["properties"]
    assert request["maxHops"]["description"] == "Maximum hops, 1-3; unset means 3."
    assert request["maxHops"]["type"] == "integer"
    undescribed = [
        f"{name}.{field}"
        for name, schema in schemas.items()
        if name.startswith("relgraph.")
        for field, prop in schema["properties"].items()
        if not prop.get("description")
    ]
    assert undescribed == []


def test_the_committed_docs_are_current() -> None:
    document = openapi_document()
    assert json.loads((DOCS / "openapi.json").read_text()) == document, "run: python -m server.openapi docs"
    assert (DOCS / "http-api.md").read_text() == markdown_reference(document), "run: python -m server.openapi docs"
