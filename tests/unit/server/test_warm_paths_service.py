"""Warm paths and ResolvePeople over the in-memory graph: the search ranks the requesting tenant's
relationships by strength with their evidence, and another tenant's data only ever lends strength
(see server/visibility.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from core.clock import FixedClock
from core.errors import InvalidRequestError
from gnn.registry import ModelRegistry
from graph import strength_heuristic as heuristic
from relgraph.v1 import warm_paths_pb2 as pb
from server.strength_scale import band
from tests.support.serving import ANN, AS_OF, BOB, CFO, OPS, VP, Serving, serving, world


@pytest.fixture
def served(tmp_path: Path) -> Serving:
    return serving(world(), FixedClock(AS_OF), ModelRegistry(tmp_path))


def _people(path: pb.WarmPath) -> list[str]:
    return [path.source.pid, *(hop.person.pid for hop in path.hops)]


def test_paths_start_from_own_members_strongest_first_with_their_evidence(served: Serving) -> None:
    pid = served.warm_paths._pseudo.pid
    answer = served.call("acme", "FindWarmPaths", pb.FindWarmPathsRequest(target_email=CFO))
    assert answer.targets == 1 and answer.strength_source == heuristic.NAME
    assert [_people(p) for p in answer.paths] == [[pid(ANN), pid(OPS), pid(CFO)], [pid(BOB), pid(CFO)]]
    strengths = [p.strength for p in answer.paths]
    assert strengths == sorted(strengths, reverse=True)
    for path in answer.paths:
        assert path.source.own_member and path.source.identified
        assert math.isclose(path.strength, math.prod(h.evidence.strength for h in path.hops), rel_tol=1e-6)
        assert all(h.evidence.observed_by_requester for h in path.hops)
    ann_ops, ops_cfo = answer.paths[0].hops
    # ann wrote to ops three times and ops answered once: four events, half of them matched.
    assert (ann_ops.evidence.interaction_count, ann_ops.evidence.two_way_share) == (4, 0.5)
    assert ann_ops.evidence.last_interaction.seconds == AS_OF - 13 * 86400 + 9 * 3600
    assert list(ops_cfo.evidence.shared_employers) == ["buyer.example"]
    # A year-old one-way email is a weaker introduction than two recent two-way relationships.
    assert answer.paths[1].hops[0].evidence.interaction_count == 1


def test_another_tenants_relationship_lends_strength_and_shows_nothing(served: Serving) -> None:
    """Only globex holds vp (its meetings gil-vp and vp-cfo): acme reaches vp over globex's
    relationship only when it allows cross-tenant paths, and learns nothing of that relationship."""
    own_only = served.call("acme", "FindWarmPaths", pb.FindWarmPathsRequest(target_email=VP))
    stranger = served.call("acme", "FindWarmPaths", pb.FindWarmPathsRequest(target_email="who@nowhere.example"))
    assert (own_only.targets, len(own_only.paths)) == (stranger.targets, len(stranger.paths)) == (0, 0)

    crossing = served.call("acme", "FindWarmPaths", pb.FindWarmPathsRequest(target_email=VP, allow_cross_tenant=True))
    assert crossing.targets == 1 and crossing.paths
    best = crossing.paths[0]
    *own, lent = best.hops
    assert all(h.evidence.observed_by_requester for h in own)
    assert not lent.evidence.observed_by_requester and lent.evidence.strength > 0
    # Nothing but the strength, and its score on acme's own scale.
    assert lent.evidence == pb.HopEvidence(
        strength=lent.evidence.strength, score=lent.evidence.score, band=lent.evidence.band
    )
    # acme named vp itself, so vp's pseudonym shows, but not vp's employer: acme holds no record of it.
    assert lent.person.identified and lent.person.pid and lent.person.company_domain == ""
    assert lent.person.title_level == "vp"


def test_resolve_people_answers_only_for_people_the_tenant_holds(served: Serving) -> None:
    answer = served.call("acme", "ResolvePeople", pb.ResolvePeopleRequest(emails=[CFO, VP, "who@nowhere.example"]))
    assert [p.email for p in answer.people] == [CFO]
    assert [p.email for p in served.call("globex", "ResolvePeople", pb.ResolvePeopleRequest(emails=[VP])).people] == [
        VP
    ]


def test_bad_requests_name_every_bad_field(served: Serving) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        served.call("acme", "FindWarmPaths", pb.FindWarmPathsRequest(target_email="not an email", k=0, max_hops=4))
    assert {field for field, _ in refused.value.violations} == {"target_email", "k", "max_hops"}


def test_scores_read_strengths_on_the_tenants_own_scale(served: Serving) -> None:
    """Each hop scores as the percentile of its strength among acme's own relationships; a path as
    its weakest hop; bands from the documented thresholds."""
    answer = served.call("acme", "FindWarmPaths", pb.FindWarmPathsRequest(target_email=CFO))
    own = served.holder.current.snapshot
    acme = own.tenants.index["acme"]
    strengths = own.strength(np.flatnonzero(own.edge_tenant == acme), AS_OF)
    for path in answer.paths:
        for hop in path.hops:
            share_below = 100 * float(np.mean(strengths < hop.evidence.strength))
            assert abs(hop.evidence.score - share_below) <= 100 / len(strengths) + 1
            assert hop.evidence.band == _BAND[band(hop.evidence.score)]
        assert path.score == min(h.evidence.score for h in path.hops) and path.band == _BAND[band(path.score)]
    assert band(75) == "strong" and band(74) == band(40) == "medium" and band(39) == "weak"


_BAND = {"strong": pb.STRENGTH_BAND_STRONG, "medium": pb.STRENGTH_BAND_MEDIUM, "weak": pb.STRENGTH_BAND_WEAK}
