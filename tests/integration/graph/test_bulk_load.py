"""The bulk initial load against real Neo4j servers: it builds the graph the transactional path
builds, and it refuses, or fails, without harming the database it was pointed at."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.config import Config
from core.errors import ConfigError, ProvisionError
from graph.bulk_load import bulk_ingest
from graph.ingest import ingest
from graph.neo4j_server import ManagedNeo4j
from graph.operations import stats
from graph.pseudonymize import Pseudonymizer
from graph.schema import LATEST_VERSION, current_version
from graph.store import GraphStore, Query, connect
from tests.support.neo4j import empty_store, managed_neo4j

_NODES = Query("test.nodes", "MATCH (n) WHERE NOT n:SchemaMigration RETURN labels(n) AS labels, properties(n) AS props")
_RELATIONSHIPS = Query(
    "test.relationships",
    "MATCH (a)-[r]->(b) RETURN type(r) AS type, properties(a) AS a, properties(b) AS b, properties(r) AS props",
)
_MARK = Query("test.mark", "CREATE (:Tenant {tenant_id: 'before-import'})")
_MARKED = Query("test.marked", "MATCH (t:Tenant {tenant_id: 'before-import'}) RETURN count(t) AS n")

# Records whose merge rules differ from a plain insert: a deal re-recorded with another account and
# owner and no stages, an employment whose industry is given once, a member re-recorded, contacts
# and signals on deals without records, an activity id reused by its author (adds a recipient and a
# deal) and by someone else (adds nothing). Written with one record per transaction on the
# transactional side, so that no batch reduction hides a rule.
_EDGE_RECORDS = [
    {"kind": "member", "tenant": "edge", "email": "ann@edge.example", "role": "rep", "title_level": "ic"},
    {"kind": "member", "tenant": "edge", "email": "ann@edge.example", "role": "lead", "team": "emea"},
    *(
        {"kind": "employment", "tenant": "edge", "email": "bo@buyer.example", "company": "buyer.example",
         "from": "2024-01-01", "title_level": level, "company_industry": industry, "company_size": 40}
        for level, industry in (("manager", "retail"), ("director", ""))
    ),
    {"kind": "deal", "tenant": "edge", "id": "E-1", "account": "other.example", "owner": "cy@edge.example",
     "created": "2026-01-01", "stages": [{"stage": "discovery", "ts": "2026-01-02"}]},
    {"kind": "deal", "tenant": "edge", "id": "E-1", "account": "buyer.example", "owner": "ann@edge.example",
     "created": "2026-01-01", "amount": 1200.5},
    {"kind": "deal", "tenant": "edge", "id": "E-2", "account": "buyer.example", "owner": "ann@edge.example",
     "created": "2026-01-05", "outcome": "won", "closed": "2026-03-01",
     "stages": [{"stage": "proposal", "ts": "2026-02-01"}, {"stage": "closed_won", "ts": "2026-03-01"}]},
    {"kind": "deal_contact", "tenant": "edge", "deal": "E-9", "email": "bo@buyer.example", "role": "champion"},
    {"kind": "interaction", "tenant": "edge", "id": "i-1", "type": "email", "ts": "2026-02-03T10:00:00Z",
     "from": "ann@edge.example", "to": ["bo@buyer.example"], "deal": "E-1"},
    {"kind": "interaction", "tenant": "edge", "id": "i-1", "type": "email", "ts": "2026-02-03T10:00:00Z",
     "from": "ann@edge.example", "to": ["di@buyer.example"], "deal": "E-2"},
    {"kind": "interaction", "tenant": "edge", "id": "i-1", "type": "call", "ts": "2026-02-04T10:00:00Z",
     "from": "bo@buyer.example", "to": ["ann@edge.example"], "deal": "E-7"},
    {"kind": "interaction", "tenant": "edge", "type": "meeting", "ts": "2026-02-05T10:00:00Z",
     "from": "bo@buyer.example", "to": ["ann@edge.example", "di@buyer.example"]},
    {"kind": "signal", "tenant": "edge", "id": "s-1", "type": "poll_answer", "ts": "2026-02-06",
     "email": "bo@buyer.example", "topic": "contract_end", "value": "10_12_months", "deal": "E-8"},
    {"kind": "signal", "tenant": "edge", "id": "s-1", "type": "poll_answer", "ts": "2026-02-06",
     "email": "di@buyer.example", "topic": "contract_end", "value": "now", "deal": "E-6"},
]  # fmt: skip


@pytest.fixture(scope="module")
def bulk_config(neo4j_config: Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    """A managed Neo4j of this module's own: the import stops and replaces its database."""
    with managed_neo4j(neo4j_config, tmp_path_factory.mktemp("bulk-home")) as config:
        yield config


@pytest.fixture
def bulk_store(bulk_config: Config) -> Iterator[GraphStore]:
    """The module's server, emptied."""
    with empty_store(bulk_config) as s:
        yield s


@pytest.fixture(scope="module")
def edge_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("edge") / "edge.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _EDGE_RECORDS))
    return path


def _node_key(props: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(props.get(k) for k in ("tenant_id", "pid", "cid", "deal_id", "activity_id"))


def _canonical(props: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Properties compared exactly, except `updated_at` (the write's clock: only its presence
    counts) and the event log, a set of codes (its order on the transactional path is the order
    batches arrived in)."""
    out = dict(props)
    if "updated_at" in out:
        out["updated_at"] = "set"
    if "events" in out:
        out["events"] = sorted(out["events"])
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in out.items()))


def _graph(store: GraphStore) -> tuple[list[Any], list[Any]]:
    nodes = sorted((tuple(sorted(r["labels"])), _canonical(r["props"])) for r in store.read(_NODES))
    relationships = sorted(
        (r["type"], _node_key(r["a"]), _node_key(r["b"]), _canonical(r["props"])) for r in store.read(_RELATIONSHIPS)
    )
    return nodes, relationships


def test_initial_load_builds_the_graph_of_the_transactional_path(
    store: GraphStore,
    bulk_store: GraphStore,
    bulk_config: Config,
    small_network: Path,
    edge_file: Path,
    pseudo: Pseudonymizer,
) -> None:
    ingest(store, [small_network / "ingest"], pseudo, progress=False)
    ingest(store, [edge_file], pseudo, batch_size=1, progress=False)
    # The generator's folder as it is: its ground truth is skipped, not rejected.
    summary = bulk_ingest(bulk_config, [small_network, edge_file], pseudo, progress=False)
    assert summary.mode == "initial" and summary.rejected == 0
    assert summary.skipped == [f"{small_network / 'ground_truth'}: the generator's ground truth, not ingest records"]
    assert set(summary.phase_seconds) == {"validate", "aggregate", "csv", "stop", "import", "start", "migrate"}

    with connect(bulk_config) as loaded:
        assert current_version(loaded) == LATEST_VERSION
        assert stats(loaded).to_dict() == stats(store).to_dict()
        expected_nodes, expected_relationships = _graph(store)
        nodes, relationships = _graph(loaded)
        assert len(nodes) == summary.nodes_created > 600
        assert len(relationships) == summary.relationships_created > 10_000
        assert nodes == expected_nodes
        assert relationships == expected_relationships

        again = ingest(loaded, [small_network, edge_file], pseudo, progress=False)
    assert (again.nodes_created, again.relationships_created, again.events_added) == (0, 0, 0)
    assert again.events_already_present == summary.events_added


def test_initial_load_refuses_a_database_with_data(
    bulk_store: GraphStore, bulk_config: Config, edge_file: Path, pseudo: Pseudonymizer
) -> None:
    ingest(bulk_store, [edge_file], pseudo, progress=False)
    before = stats(bulk_store).to_dict()
    with pytest.raises(ConfigError, match="needs an empty database"):
        bulk_ingest(bulk_config, [edge_file], pseudo, progress=False)
    with connect(bulk_config) as s:
        assert stats(s).to_dict() == before


def test_an_input_with_nothing_to_load_leaves_the_database_up_and_empty(
    bulk_store: GraphStore, bulk_config: Config, tmp_path: Path, pseudo: Pseudonymizer
) -> None:
    bad = tmp_path / "members.jsonl"
    bad.write_text('{"kind": "member", "tenant": "t", "email": "not an address"}\n')
    summary = bulk_ingest(bulk_config, [bad], pseudo, progress=False)
    assert (summary.accepted, summary.rejected, summary.nodes_created) == (0, 1, 0)
    assert summary.first_errors[0].field == "email"
    with connect(bulk_config) as s:  # the database shut down for the import and is back
        assert stats(s).nodes["Person"] == 0


def test_initial_load_refuses_a_server_relgraph_does_not_manage(
    neo4j_config: Config, edge_file: Path, pseudo: Pseudonymizer
) -> None:
    external = dataclasses.replace(neo4j_config, neo4j=dataclasses.replace(neo4j_config.neo4j, uri="bolt://db:7687"))
    with pytest.raises(ConfigError, match=r"NEO4J_URI=bolt://db:7687 is another server.*neo4j-admin database import"):
        bulk_ingest(external, [edge_file], pseudo, progress=False)


def test_a_failed_import_leaves_the_database_as_it_was(
    bulk_store: GraphStore, bulk_config: Config, tmp_path: Path
) -> None:
    bulk_store.write(_MARK)
    bad = tmp_path / "person.csv"
    bad.write_text('pid:ID(Person),updated_at:long\n"p1",not-a-number\n')
    server = ManagedNeo4j(bulk_config)
    with pytest.raises(ProvisionError, match=r"the database is as it was before.*run again"):
        server.import_database([f"Person={bad}"], [], tmp_path)
    assert server.status().running
    with connect(bulk_config) as s:
        assert s.read(_MARKED)[0]["n"] == 1


def test_start_puts_back_a_store_left_by_a_killed_import(bulk_store: GraphStore, bulk_config: Config) -> None:
    bulk_store.write(_MARK)
    server = ManagedNeo4j(bulk_config)
    server.stop()
    store_dir = server.home / "data" / "databases" / bulk_config.neo4j.database
    store_dir.rename(store_dir.with_name(store_dir.name + ".before-import"))
    store_dir.mkdir()
    (store_dir / "half-written").write_text("an import killed midway")
    server.start()
    with connect(bulk_config) as s:
        assert s.read(_MARKED)[0]["n"] == 1
