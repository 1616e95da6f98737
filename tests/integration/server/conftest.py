"""The server the gRPC and HTTP tests share: the small generated network in the real Neo4j,
keys of two tenants' members, an admin and a scoped partner, and a server on real ports (gRPC and
HTTP/JSON)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from core.config import Config, RateLimit
from graph.ingest import ingest
from graph.pseudonymize import Pseudonymizer
from graph.schema import migrate
from graph.store import GraphStore, Query, connect
from jobs.bench_common import free_port
from relgraph.client import Client
from server.app import RelgraphServer, create_server
from server.auth import create_api_key

PEPPER = "test-pepper-0123456789"


@dataclass
class Served:
    server: RelgraphServer
    address: str
    store: GraphStore
    network: Path
    tenants: list[str]
    keys: dict[str, str]  # name -> API key
    config: Config

    @property
    def http_url(self) -> str:
        assert self.server.http is not None
        return f"http://127.0.0.1:{self.server.http.port}"

    def client(self, key: str) -> Client:
        return Client(self.address, self.keys.get(key, key))


@pytest.fixture(scope="module")
def served(neo4j_config: Config, small_network: Path, pseudo: Pseudonymizer) -> Iterator[Served]:
    store = connect(neo4j_config)
    migrate(store)
    store.write(Query("test.clear", "MATCH (n) WHERE NOT n:SchemaMigration DETACH DELETE n"))
    ingest(store, [small_network / "ingest"], pseudo, progress=False)
    tenants = sorted(
        json.loads(line)["tenant"] for line in (small_network / "ingest" / "members.jsonl").read_text().splitlines()
    )
    tenants = sorted(set(tenants))
    a, b = tenants[0], tenants[1]
    partner_company = json.loads((small_network / "ingest" / "deals.jsonl").read_text().partition("\n")[0])["account"]
    keys = {
        "member_a": create_api_key(store, PEPPER, tenant=a, role="member", scopes=[])[0],
        "member_b": create_api_key(store, PEPPER, tenant=b, role="member", scopes=[])[0],
        "admin_a": create_api_key(store, PEPPER, tenant=a, role="admin", scopes=[])[0],
        "partner_a": create_api_key(
            store, PEPPER, tenant=a, role="partner", scopes=[f"company:{partner_company}", "max-hops:2"]
        )[0],
    }
    config = dataclasses.replace(
        neo4j_config,
        api_key_pepper=PEPPER,
        server=dataclasses.replace(
            neo4j_config.server,
            port=0,
            metrics_port=0,
            http_port=free_port(),
            refresh_interval_s=3600,
            partner_rate=RateLimit(per_second=0.5, burst=4),
        ),
    )
    server, port = create_server(config, store=connect(neo4j_config))
    server.start()
    try:
        yield Served(server, f"127.0.0.1:{port}", store, small_network, [a, b], keys, config)
    finally:
        server.stop()
        store.close()


def assert_same_answer(got: Message, expected: Message, rel: float = 1e-5) -> None:
    """Equal messages, but for doubles, equal within `rel`: strengths decay with the wall clock,
    which moves between two calls."""
    assert type(got) is type(expected)
    for field in expected.DESCRIPTOR.fields:
        mine, theirs = getattr(got, field.name), getattr(expected, field.name)
        pairs = list(zip(mine, theirs, strict=True)) if field.is_repeated else [(mine, theirs)]
        for a, b in pairs:
            if field.message_type is not None and not field.message_type.GetOptions().map_entry:
                assert_same_answer(a, b, rel)
            elif field.type == FieldDescriptor.TYPE_DOUBLE:
                assert a == pytest.approx(b, rel=rel), field.full_name
            else:
                assert a == b, field.full_name
