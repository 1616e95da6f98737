"""The serving snapshot's warm paths equal the Cypher twin's on a generated graph."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from core.errors import DeadlineExceededError
from graph.cypher_oracle import ScoredPath, same_ranking, warm_paths_cypher
from graph.ingest import ingest
from graph.neo4j_reader import Neo4jReader
from graph.pseudonymize import Pseudonymizer
from graph.store import GraphStore
from server import snapshot as snapshots
from server.warm_paths import PathSearch, find_paths, usable_tenants

pytestmark = pytest.mark.neo4j
AS_OF = 1782777600


def test_snapshot_and_cypher_return_the_same_paths(
    store: GraphStore, small_network: Path, pseudo: Pseudonymizer
) -> None:
    ingest(store, [small_network / "ingest"], pseudo, progress=False)
    snap = snapshots.build(Neo4jReader(store))
    assert snap.relationships > 1000
    rng = random.Random(1)
    compared = nonempty = 0
    for trial in range(60):
        tenant = trial % len(snap.tenants.ids)
        cross, hops = bool(trial % 2), 1 + trial % 3
        targets = np.array(rng.sample(range(snap.people), 1 + (trial % 4 == 0) * 4))
        query = PathSearch(
            tenant=tenant, targets=targets, sources=None, k=10, max_hops=hops, allow_cross_tenant=cross, as_of=AS_OF
        )
        ours = [ScoredPath(tuple(snap.pid(n) for n in p.nodes), p.strength) for p in find_paths(snap, query)]
        listed = [snap.pid(int(i)) for i in np.flatnonzero(snap.member_mask(tenant))] if trial % 5 == 0 else None
        theirs = warm_paths_cypher(
            store,
            tenant=snap.tenants.ids[tenant],
            sources=listed,
            targets=[snap.pid(int(t)) for t in targets],
            k=10,
            max_hops=hops,
            as_of=AS_OF,
            tenants=[snap.tenants.ids[i] for i in np.flatnonzero(usable_tenants(snap, tenant, cross))],
        )
        assert same_ranking(ours, theirs), (trial, ours, theirs)
        compared += 1
        nonempty += bool(ours)
    assert compared == 60 and nonempty >= 30


def test_search_respects_a_passed_deadline(store: GraphStore, small_network: Path, pseudo: Pseudonymizer) -> None:
    ingest(store, [small_network / "ingest"], pseudo, progress=False)
    snap = snapshots.build(Neo4jReader(store))
    query = PathSearch(
        tenant=0, targets=np.array([0]), sources=None, k=10, max_hops=3, allow_cross_tenant=True, as_of=AS_OF
    )
    with pytest.raises(DeadlineExceededError):
        find_paths(snap, query, deadline=0.0)


def test_incremental_refresh_equals_a_full_build(
    store: GraphStore, small_network: Path, pseudo: Pseudonymizer, tmp_path: Path
) -> None:
    ingest(store, [small_network / "ingest"], pseudo, progress=False)
    before = snapshots.build(Neo4jReader(store))
    extra = tmp_path / "interactions.jsonl"
    import json

    members = [json.loads(line) for line in (small_network / "ingest" / "members.jsonl").read_text().splitlines()]
    rows = [
        {
            "kind": "interaction",
            "tenant": m["tenant"],
            "type": "email",
            "ts": AS_OF - 3600,
            "from": m["email"],
            "to": [f"someone.new{i}@newco.example", members[(i + 7) % len(members)]["email"]],
        }
        for i, m in enumerate(members[:50])
    ]
    extra.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ingest(store, [extra], pseudo, progress=False)
    refreshed = snapshots.refresh(before, Neo4jReader(store), snapshots.read_changes(before, Neo4jReader(store)))
    full = snapshots.build(Neo4jReader(store))
    assert refreshed.people == full.people > before.people
    assert refreshed.relationships == full.relationships > before.relationships
    assert (refreshed.pids == full.pids).all()

    def edges(s: snapshots.Snapshot) -> set[tuple[int, int, str, int, int, int]]:
        lo, hi = snapshots.edge_endpoints(s)
        return set(
            zip(
                lo.tolist(),
                hi.tolist(),
                [s.tenants.ids[t] for t in s.edge_tenant.tolist()],
                s.edge_count.tolist(),
                s.edge_two_way.tolist(),
                s.edge_last_ts.tolist(),
            )
        )

    assert edges(refreshed) == edges(full)
