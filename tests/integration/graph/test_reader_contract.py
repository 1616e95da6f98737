"""The read seam's contract: the in-memory graph (graph/memory_reader.py), which unit tests of
everything above the store run on, reads exactly what the Neo4j reader reads after the same
records are ingested into Neo4j: every method, for the whole network and for each tenant's scope,
before and after an erasure. (Watermarks are compared as what they order, not as values: Neo4j
stamps its clock, the in-memory graph a counter.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from graph.ingest import ingest, read_records
from graph.interaction_log import ExportScope
from graph.memory_reader import NETWORK, InMemoryGraph
from graph.neo4j_reader import Neo4jReader
from graph.operations import erase_person, record_proposal_decision
from graph.pseudonymize import Pseudonymizer
from graph.reader import ALL_TENANTS, GraphReader, TenantScope
from graph.store import GraphStore
from tests.support.plain import plain

pytestmark = pytest.mark.neo4j


def _records(network: Path) -> list[dict[str, Any]]:
    return [record for path in sorted((network / "ingest").glob("*.jsonl")) for _, record, _ in read_records(path)]


def _reads(reader: GraphReader, scope: TenantScope) -> dict[str, Any]:
    bundle = reader.deal_bundle(scope)
    log = reader.interaction_log(ExportScope(tenants=scope))
    some_pids = sorted(row.pid for row in reader.people(scope))[::7]
    # Every relationship of some people, both ways round: ties_between answers those to members.
    pairs = [
        (k.tenant, end, other)
        for k in reader.knows_of(some_pids, ALL_TENANTS)
        for end, other in ((k.lo, k.hi), (k.hi, k.lo))
    ]
    return {
        "people": sorted(reader.people(scope)),
        "people_by_pid": sorted(reader.people_by_pid(some_pids, scope)),
        "knows": sorted(k._replace(updated_at=0) for k in reader.knows(scope)),
        "knows_of": sorted(k._replace(updated_at=0) for k in reader.knows_of(some_pids, scope)),
        "changed": sorted(c.pid for c in reader.people_changed(0, scope)),
        "deals_changed": sorted((c.tenant, c.deal_id) for c in reader.deals_changed(0, scope)),
        "logged": sorted(row._replace(updated_at=0) for row in reader.interactions_logged_since(0, scope)),
        "logged_watermark": reader.logged_watermark(scope) > 0,
        "ties_between": plain(reader.ties_between(pairs, scope)),
        "companies": sorted(reader.companies(scope)),
        "tenants": sorted(reader.tenants(scope)),
        "economic_buyers": sorted(reader.economic_buyers(scope)),
        "named_companies": reader.named_companies(scope),
        "deals": sorted((plain(d) for d in bundle.deals), key=lambda d: (d["tenant"], d["deal_id"])),
        "bundle": plain({f: getattr(bundle, f) for f in ("jobs", "staff", "signals", "ties", "held_by")}),
        "shared": sorted(bundle.shared),
        "log": plain(log),
        # Some relationships' pairs, and a pair of people with no relationship (nothing).
        "pair_interactions": plain(
            reader.pair_interactions(
                sorted(
                    {(k.lo, k.hi) for k in reader.knows_of(some_pids, ALL_TENANTS)} | {(some_pids[0], some_pids[0])}
                ),
                ExportScope(tenants=scope),
            )
        ),
        "erased": sorted(e.pid for e in reader.erasures_since(0, scope)),
        "decisions": sorted(d._replace(updated_at=0) for d in reader.proposal_decisions(0, scope)),
    }


def _written(folder: Path, record: dict[str, Any]) -> Path:
    path = folder / "late.jsonl"
    path.write_text(json.dumps(record) + "\n")
    return path


def test_the_in_memory_graph_reads_what_neo4j_reads(
    store: GraphStore, small_network: Path, pseudo: Pseudonymizer, tmp_path: Path
) -> None:
    records = _records(small_network)
    memory = InMemoryGraph(pseudo)
    memory.ingest(records)
    ingest(store, [small_network / "ingest"], pseudo, progress=False)
    neo4j = Neo4jReader(store)
    tenants = sorted(t.tenant for t in neo4j.tenants(ALL_TENANTS))
    assert len(tenants) == 3
    scopes = [ALL_TENANTS, *(TenantScope.of(t) for t in tenants), TenantScope.of(*tenants[:2])]
    # Reps' decisions: two tenants', one told twice (the last counts).
    for tenant, proposal, deal, field, decision in (
        (tenants[0], "p-1", "D-1", "stage", "accept"),
        (tenants[0], "p-2", "D-2", "close_date", "reject"),
        (tenants[1], "p-1", "D-9", "contact", "reject"),
        (tenants[0], "p-1", "D-1", "stage", "reject"),
    ):
        memory.decide(tenant, proposal, deal, field, decision)
        record_proposal_decision(store, tenant, proposal, deal, field, decision, at=1)
    decided = neo4j.proposal_decisions(0, ALL_TENANTS)
    assert len(decided) == 3 and not neo4j.proposal_decisions(max(d.updated_at for d in decided), ALL_TENANTS)

    def compare() -> None:
        for scope in scopes:
            got, want = _reads(memory, scope), _reads(neo4j, scope)
            for method in want:
                assert got[method] == want[method], (scope, method)

    compare()
    # One person erased from one tenant's data, another from the whole network.
    employees = sorted({r["email"] for r in records if r["kind"] == "employment"})
    for email, scope in ((employees[0], tenants[0]), (employees[1], NETWORK)):
        pid = pseudo.pid(email)
        assert memory.erase(pid, scope)
        assert erase_person(store, pid, scope=scope, actor="test", retention_s=3600).found
    compare()
    # An interaction logged on a deal later, and the same again: one new row, the latest; the watermark is its time.
    logged = next(r for r in records if r["kind"] == "interaction" and r.get("deal"))
    since = neo4j.logged_watermark(ALL_TENANTS)
    for _ in range(2):
        memory.ingest([{**logged, "id": "late-1"}])
        ingest(store, [_written(tmp_path, {**logged, "id": "late-1"})], pseudo, progress=False)
    compare()
    late = neo4j.interactions_logged_since(since, ALL_TENANTS)
    assert [row.activity_id for row in late] == ["late-1"] * len(logged["to"])
    assert neo4j.logged_watermark(ALL_TENANTS) == max(row.updated_at for row in late) > since
