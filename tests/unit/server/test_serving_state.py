"""The serving state over the in-memory graph: an incremental refresh gives what a full build gives,
a new tenant, an opt-out or an erasure reaches answers at the next refresh, and a promoted model
that cannot serve never replaces one that can."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.clock import FixedClock
from gnn.model_kinds import LINK
from gnn.registry import ModelRegistry
from graph import strength_heuristic as heuristic
from graph.memory_reader import NETWORK
from graph.reader import KnowsRow
from relgraph.v1 import warm_paths_pb2 as pb
from server import snapshot as snapshots
from server.deal_index import read_deal_index
from server.link_strengths import LinkScoring, score_all, score_relationships, serving_scope
from server.snapshot import Snapshot, edge_endpoints
from tests.support.plain import plain
from tests.support.serving import ANN, AS_OF, BOB, CFO, OPS, VP, Serving, serving, untrained_models, world
from tests.support.tenancy_model import snapshot_content


@pytest.fixture
def served(tmp_path: Path) -> Serving:
    return serving(world(), FixedClock(AS_OF), ModelRegistry(tmp_path))


def _paths(served: Serving, tenant: str, email: str, cross: bool = False) -> pb.FindWarmPathsResponse:
    return served.call(tenant, "FindWarmPaths", pb.FindWarmPathsRequest(target_email=email, allow_cross_tenant=cross))


def test_an_incremental_refresh_equals_a_full_build(served: Serving) -> None:
    before = served.holder.current.snapshot
    served.graph.ingest(
        [
            {"kind": "interaction", "tenant": "acme", "type": "call", "ts": "2026-05-25", "from": ANN, "to": [CFO]},
            {"kind": "member", "tenant": "acme", "email": "cat@acme.example", "title": "VP Sales"},
        ]
    )
    refreshed = served.holder.refresh().snapshot
    assert refreshed is not before and refreshed.relationships == before.relationships + 1
    assert snapshot_content(refreshed) == snapshot_content(snapshots.build(served.graph))
    assert served.holder.refresh().snapshot.relationships == refreshed.relationships  # nothing new: nothing moves
    assert len(_paths(served, "acme", CFO).paths[0].hops) == 1  # ann now reaches cfo directly


def test_someone_joining_a_tenant_has_its_deals_read_again(served: Serving) -> None:
    """OPS, on D-1's buyer side, becomes a member of acme: its rows with ANN are now between two
    members, which a whole read leaves out."""
    served.graph.ingest([{"kind": "member", "tenant": "acme", "email": OPS, "title": "Director of Operations"}])
    found, again = served.holder.refresh().deals.find("acme", "D-1"), read_deal_index(served.graph).find("acme", "D-1")
    assert found is not None and again is not None and plain(found[1]) == plain(again[1])
    assert found[1].ts.size == 0


def test_a_tenant_that_sorts_first_changes_no_other_tenants_answer(served: Serving) -> None:
    """A new tenant renumbers nothing: acme's own relationships stay acme's (trust regression #2)."""
    before = _paths(served, "acme", CFO, cross=True)
    served.graph.ingest(
        [
            {"kind": "member", "tenant": "aaa", "email": "new@aaa.example"},
            {
                "kind": "interaction",
                "tenant": "aaa",
                "type": "meeting",
                "ts": "2026-05-30",
                "from": "new@aaa.example",
                "to": [OPS],
            },
        ]
    )
    served.holder.refresh()
    after = _paths(served, "acme", CFO, cross=True)
    before.snapshot_age_seconds = after.snapshot_age_seconds = 0
    assert after == before
    newcomer = _paths(served, "aaa", CFO, cross=True)
    assert newcomer.paths and all(p.source.own_member for p in newcomer.paths)


def test_an_opt_out_applies_at_the_next_refresh_without_any_new_record(served: Serving) -> None:
    assert _paths(served, "acme", VP, cross=True).paths
    served.graph.set_sharing("globex", network_opt_out=True)
    served.holder.refresh()
    assert not _paths(served, "acme", VP, cross=True).paths
    assert _paths(served, "globex", VP).paths  # globex's relationships still serve globex


def test_an_erasure_reaches_answers_at_the_next_refresh(served: Serving) -> None:
    ops = served.warm_paths._pseudo.pid(OPS)
    assert any(ops in [h.person.pid for h in p.hops] for p in _paths(served, "acme", CFO).paths)
    assert served.graph.erase(ops, NETWORK)
    served.holder.refresh()
    assert served.holder.current.snapshot.node(ops) is None
    answer = _paths(served, "acme", CFO)
    assert answer.paths and all(ops not in [h.person.pid for h in p.hops] for p in answer.paths)
    assert _paths(served, "acme", OPS).targets == 0


def test_a_promoted_model_that_cannot_serve_keeps_the_previous_one(tmp_path: Path) -> None:
    registry = untrained_models(tmp_path)
    served = serving(world(), FixedClock(AS_OF), registry)
    assert served.holder.current.link is not None and served.holder.current.link.version == "v0001"
    assert _paths(served, "acme", CFO).strength_source == "link-model-v0001"
    bad = registry.write(LINK.name, {"schema_hash": "another-schema"}, {}, lambda folder: None)
    registry.promote(LINK.name, bad.name)
    served.holder.refresh()
    assert served.holder.current.link is not None and served.holder.current.link.version == "v0001"
    assert _paths(served, "acme", CFO).strength_source == "link-model-v0001"
    (registry.root / LINK.name / "PROMOTED").unlink()
    served.holder.refresh()
    assert served.holder.current.link is None and _paths(served, "acme", CFO).strength_source == heuristic.NAME


def _strengths(snap: Snapshot) -> dict[tuple[bytes, bytes, int], float]:
    assert snap.edge_strength is not None
    lo, hi = edge_endpoints(snap)
    return {
        (snap.pids[a], snap.pids[b], int(t)): float(s)
        for a, b, t, s in zip(lo, hi, snap.edge_tenant, snap.edge_strength)
    }


def _whole_log_reads(served: Serving, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    reads: list[Any] = []
    read = served.graph.interaction_log
    monkeypatch.setattr(served.graph, "interaction_log", lambda scope: reads.append(scope) or read(scope))
    return reads


def test_a_refresh_rescores_only_the_relationships_whose_interactions_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The changed pair scores as a whole scoring would with the start's embeddings; every other
    relationship keeps its strength; the whole log is not read again until a full rebuild."""
    served = serving(world(), FixedClock(AS_OF), untrained_models(tmp_path))
    scorer, before = served.holder.current.link, served.holder.current.snapshot
    assert scorer is not None
    reads = _whole_log_reads(served, monkeypatch)
    talk = {"kind": "interaction", "tenant": "acme", "type": "call", "ts": "2026-05-25T10:00:00Z"}
    served.graph.ingest([{**talk, "from": ANN, "to": [OPS]}, {**talk, "from": BOB, "to": [OPS]}])
    after = served.holder.refresh().snapshot
    assert not reads and after.strength_source == scorer.source
    assert after.relationships == before.relationships + 1

    _, start = score_all(before, scorer, world().interaction_log(serving_scope(AS_OF)), AS_OF, "")
    assert start is not None
    expected = np.zeros(after.relationships, dtype=np.float32)
    whole = LinkScoring("", served.graph.interaction_log(serving_scope(AS_OF)), start.embeddings)
    score_relationships(after, np.ones(after.relationships, dtype=bool), scorer, whole, AS_OF, expected)
    pid = served.warm_paths._pseudo.pid
    acme = after.tenants.index["acme"]
    changed = {(*sorted((pid(a).encode(), pid(OPS).encode())), acme) for a in (ANN, BOB)}
    old, new = _strengths(before), _strengths(after)
    wanted = _strengths(dataclasses.replace(after, edge_strength=expected))
    assert changed <= new.keys()
    for key, strength in new.items():
        assert strength == (pytest.approx(wanted[key], abs=1e-6) if key in changed else old[key]), key
    reads.clear()
    served.holder.refresh(full=True)
    assert len(reads) == 1


@pytest.mark.parametrize("change", ["newcomer", "erasure"])
def test_a_newcomer_or_an_erasure_has_every_relationship_scored_again(
    change: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newcomer has no embedding yet; the kept log holds an erased person's pseudonym."""
    served = serving(world(), FixedClock(AS_OF), untrained_models(tmp_path))
    reads = _whole_log_reads(served, monkeypatch)
    if change == "newcomer":
        served.graph.ingest(
            [
                {
                    "kind": "interaction",
                    "tenant": "acme",
                    "type": "call",
                    "ts": "2026-05-25",
                    "from": ANN,
                    "to": ["x@y.example"],
                }
            ]
        )
    else:
        assert served.graph.erase(served.warm_paths._pseudo.pid(OPS), NETWORK)
    served.holder.refresh()
    assert len(reads) == 1 and served.holder.current.snapshot.strength_source.startswith("link-model")


def test_a_malformed_changed_relationship_leaves_the_rest_rescored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KNOWS row the snapshot skips (a malformed pid) is skipped here too: the refresh still
    re-scores what changed, without reading the whole log."""
    served = serving(world(), FixedClock(AS_OF), untrained_models(tmp_path))
    reads = _whole_log_reads(served, monkeypatch)
    changed = served.graph.knows_changed
    bad = KnowsRow("é" * 32, "x" * 32, "acme", 1, 0, 1, 1 << 62)
    monkeypatch.setattr(served.graph, "knows_changed", lambda since, scope: [*changed(since, scope), bad])
    served.graph.ingest(
        [{"kind": "interaction", "tenant": "acme", "type": "call", "ts": "2026-05-25", "from": ANN, "to": [OPS]}]
    )
    before = served.holder.current.snapshot
    after = served.holder.refresh().snapshot
    assert after is not before and not reads and after.strength_source.startswith("link-model")
