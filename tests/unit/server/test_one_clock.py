"""One clock: the serving state's link strengths, warm-path recency and deal answers are all
computed at the injected clock's time (server/app.py injects `clock_at(RELGRAPH_AS_OF)`), so
replaying a past dataset answers as it would have then."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.clock import FixedClock, SystemClock, clock_at
from gnn.registry import ModelRegistry
from relgraph.v1 import buyer_intelligence_pb2 as deal_pb
from relgraph.v1 import warm_paths_pb2 as pb
from tests.support.serving import AS_OF, CFO, serving, untrained_models, world

DAY = 86400
APRIL = AS_OF - 61 * DAY  # 2026-04-01: before D-1 reached proposal and before May's interactions


def test_as_of_moves_recency_strengths_and_deal_answers_together(tmp_path: Path) -> None:
    registry = untrained_models(tmp_path)
    graph = world()
    june, april = (serving(graph, FixedClock(t), registry) for t in (AS_OF, APRIL))
    june_strength, april_strength = (s.holder.current.snapshot.edge_strength for s in (june, april))
    assert june_strength is not None and april_strength is not None
    assert not np.allclose(june_strength, april_strength)  # the link model scores at the clock's time

    no_models = ModelRegistry(tmp_path / "none")  # the heuristic: recency decays with the clock
    late, now = (serving(graph, FixedClock(t), no_models) for t in (AS_OF + 60 * DAY, AS_OF))
    request = pb.FindWarmPathsRequest(target_email=CFO)
    assert (
        now.call("acme", "FindWarmPaths", request).paths[0].strength
        > late.call("acme", "FindWarmPaths", request).paths[0].strength
    )

    estimate = {
        name: s.call("acme", "EstimateDealStage", deal_pb.EstimateDealStageRequest(deal_id="D-1"))
        for name, s in (("june", june), ("april", april))
    }
    assert (estimate["june"].crm_stage, estimate["april"].crm_stage) == ("proposal", "discovery")
    assert estimate["april"].close_p10.seconds >= APRIL and estimate["june"].close_p10.seconds >= AS_OF
    signals = {
        name: s.call("acme", "ListDealSignals", deal_pb.ListDealSignalsRequest(deal_id="D-1")).signals
        for name, s in (("june", june), ("april", april))
    }
    assert len(signals["june"]) == 1 and len(signals["april"]) == 0  # May's poll answer had not happened


def test_as_of_zero_means_the_wall_clock() -> None:
    assert isinstance(clock_at(0), SystemClock) and clock_at(AS_OF).now() == AS_OF
