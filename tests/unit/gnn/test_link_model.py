"""The link model's logic above the store: features without leakage, labels, the sampler, the
ranking metrics and baselines, calibration, and the registry's refusals. Logs are built in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import LinkNeighborLoader

from core.errors import InvalidInputError, ModelSchemaError, NoModelError, NotFoundError
from gnn.calibration import apply_platt, fit_platt, reliability
from gnn.features import DAY, graph_at, link_schema_hash, pair_keys, two_way_pairs
from gnn.linkpred import LinkTask, Queries, baselines, chronological_split, ranking_metrics, ranking_queries
from gnn.model_kinds import LINK
from gnn.registry import ModelRegistry
from gnn.sampler import TorchNeighborSampler
from graph.interaction_log import InteractionLog

T0 = 1_700_000_000


def make_log(
    events: list[tuple[int, int, float, int, int]], people: int, jobs: list[tuple[int, int, float]] = ()
) -> InteractionLog:
    """events: (lo, hi, day, kind, direction); jobs: (person, company, from day)."""
    events = sorted(events, key=lambda e: e[2])
    ev = np.array(events, dtype=np.float64).reshape(-1, 5)
    jb = np.array(jobs, dtype=np.float64).reshape(-1, 3)
    return InteractionLog(
        pids=np.array([f"{i:032d}" for i in range(people)], dtype="S32"),
        lo=ev[:, 0].astype(np.int32),
        hi=ev[:, 1].astype(np.int32),
        ts=(T0 + ev[:, 2] * DAY).astype(np.int64),
        kind=ev[:, 3].astype(np.int8),
        direction=ev[:, 4].astype(np.int8),
        tenant=np.zeros(len(events), np.int16),
        tenants=np.array(["t"]),
        emp_person=jb[:, 0].astype(np.int32),
        emp_company=jb[:, 1].astype(np.int32),
        emp_from=(T0 + jb[:, 2] * DAY).astype(np.int64),
        emp_to=np.full(len(jb), -1, np.int64),
        emp_level=np.zeros(len(jb), np.int8),
        emp_function=np.zeros(len(jb), np.int8),
    )


def planted_log(seed: int = 0, people: int = 200, days: int = 360) -> tuple[InteractionLog, set[int]]:
    """Random sparse email noise plus planted strong ties that email both ways every few days."""
    rng = np.random.default_rng(seed)
    events = []
    for _ in range(3000):
        a, b = rng.choice(people, 2, replace=False)
        events.append((min(a, b), max(a, b), rng.uniform(0, days), 0, int(rng.integers(0, 2))))
    strong = set()
    for a in range(0, 40, 2):
        b = a + 1
        strong.add(a * people + b)
        for day in np.arange(rng.uniform(0, 3), days, 3.0):
            events.append((a, b, day, 0, int(rng.integers(0, 2))))
    return make_log(events, people), strong


def test_features_at_t_ignore_everything_after_t() -> None:
    log, _ = planted_log()
    t = T0 + 200 * DAY
    truncated = make_log([], log.people)
    keep = log.ts < t
    truncated = InteractionLog(
        **{
            **{f: getattr(log, f) for f in log.__dataclass_fields__},
            "lo": log.lo[keep],
            "hi": log.hi[keep],
            "ts": log.ts[keep],
            "kind": log.kind[keep],
            "direction": log.direction[keep],
            "tenant": log.tenant[keep],
        }
    )
    full, past = graph_at(log, t), graph_at(truncated, t)
    u, v = np.arange(0, 100), np.arange(100, 200)
    assert torch.equal(full.pair_features(u, v), past.pair_features(u, v))
    assert torch.equal(full.node_x, past.node_x)
    assert np.array_equal(full.keys, past.keys)


def test_employment_counts_only_once_it_began() -> None:
    log = make_log([(0, 1, 1, 0, 0)], 3, jobs=[(0, 5, 0), (1, 5, 0), (2, 5, 100)])
    early = graph_at(log, T0 + 50 * DAY).pair_features(np.array([0, 0]), np.array([1, 2]))
    late = graph_at(log, T0 + 150 * DAY).pair_features(np.array([0, 0]), np.array([1, 2]))
    shared = -1  # last pair feature
    assert early[:, shared].tolist() == [1.0, 0.0]
    assert late[:, shared].tolist() == [1.0, 1.0]


def test_two_way_needs_both_directions_or_a_meeting() -> None:
    log = make_log(
        [
            (0, 1, 1, 0, 0),
            (0, 1, 2, 0, 1),  # emails both ways: two-way
            (2, 3, 1, 0, 0),
            (2, 3, 2, 0, 0),  # one way only: not
            (4, 5, 1, 1, 0),
        ],
        6,
    )  # a meeting: two-way by nature
    keys = two_way_pairs(log, T0, T0 + 10 * DAY)
    assert keys.tolist() == sorted(pair_keys(np.array([0, 4]), np.array([1, 5]), 6).tolist())


def test_split_refuses_a_log_too_short_for_the_horizon() -> None:
    log, _ = planted_log(days=60)
    with pytest.raises(InvalidInputError, match="horizon_days"):
        chronological_split(log, LinkTask(horizon_days=30))


def test_sampler_returns_real_edges_within_fanout() -> None:
    n = 500
    gen = torch.Generator().manual_seed(0)
    edges = torch.randint(0, n, (2, 4000), generator=gen)
    edges = torch.cat([edges, edges.flip(0)], 1)
    data = Data(x=torch.arange(n, dtype=torch.float32).unsqueeze(1), edge_index=edges, num_nodes=n)
    pairs = torch.randint(0, n, (2, 300), generator=gen)
    loader = LinkNeighborLoader(
        data,
        num_neighbors=[4, 2],
        edge_label_index=pairs,
        edge_label=torch.ones(300),
        batch_size=64,
        neighbor_sampler=TorchNeighborSampler(data, [4, 2], seed=1),
    )
    known = set(zip(edges[0].tolist(), edges[1].tolist()))
    for batch in loader:
        src, dst = batch.n_id[batch.edge_index[0]], batch.n_id[batch.edge_index[1]]
        assert all((a, b) in known for a, b in zip(src.tolist(), dst.tolist()))
        assert torch.equal(batch.x.squeeze(1).long(), batch.n_id)  # features follow their nodes
        assert torch.equal(batch.n_id[batch.edge_label_index], pairs[:, batch.input_id])
        incoming = torch.bincount(batch.edge_index[1], minlength=batch.num_nodes)
        assert int(incoming.max()) <= 4 + 2  # at most the first-hop fanout, plus the second hop's
        # without replacement: no edge sampled twice for the same target in a hop
        assert batch.e_id.unique().numel() == batch.e_id.numel()


def test_ranking_metrics_count_ties_half_and_rank_the_planted_ties_first() -> None:
    queries = Queries(
        source=np.array([0, 1]),
        target=np.array([10, 11]),
        negatives={"random": np.array([[2, 3], [4, 5]]), "historical": np.array([[2, 3], [4, 5]])},
    )
    scores = {(0, 10): 1.0, (0, 2): 1.0, (0, 3): 0.0, (1, 11): 0.0, (1, 4): 1.0, (1, 5): 2.0}

    def scorer(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.array([scores[(a, b)] for a, b in zip(u.tolist(), v.tolist())])

    metrics = ranking_metrics(queries, scorer)
    assert metrics["mrr_random"] == pytest.approx((1 / 1.5 + 1 / 3) / 2)
    assert metrics["hits@1_random"] == 0.0

    log, strong = planted_log(seed=1)
    task = LinkTask(horizon_days=30, eval_negatives=50)
    split = chronological_split(log, task)
    graph = graph_at(log, split.test_cutoff)
    queries = ranking_queries(log, graph, split.end, task, np.random.default_rng(0))
    found = {int(k) for k in pair_keys(queries.source, queries.target, log.people)}
    assert found & strong, "the planted strong ties are among the test positives"
    recency = ranking_metrics(queries, baselines(graph)["recency_weighted_count"])
    assert recency["hits@10_historical"] > 0.9
    assert recency["mrr_historical"] > ranking_metrics(queries, baselines(graph)["common_neighbors"])["mrr_historical"]


def test_platt_scaling_calibrates() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, 20000)
    labels = (rng.random(20000) < 1 / (1 + np.exp(-(0.5 * logits - 1)))).astype(float)
    a, b = fit_platt(logits, labels)
    assert a == pytest.approx(0.5, abs=0.05) and b == pytest.approx(-1, abs=0.05)
    assert reliability(apply_platt(logits, a, b), labels)["ece"] < 0.02


def test_registry_versions_promotion_and_schema_refusal(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    with pytest.raises(NoModelError, match="no link model promoted"):
        registry.promoted("link", LINK.schema_hash)
    first = registry.write("link", {"schema_hash": link_schema_hash()}, {"w": torch.ones(2)}, lambda folder: None)
    second = registry.write(
        "link",
        {"schema_hash": "another-schema"},
        {"w": torch.zeros(2)},
        lambda folder: (folder / "card.md").write_text("card"),
    )
    assert [v.name for v in registry.versions("link")] == ["v0001", "v0002"] == [first.name, second.name]
    with pytest.raises(NotFoundError, match="v0001, v0002"):
        registry.promote("link", "v0009")
    registry.promote("link", "v0002")
    with pytest.raises(ModelSchemaError, match="another-schema"):
        registry.promoted("link", LINK.schema_hash)
    registry.promote("link", "v0001")
    version, state = registry.promoted("link", LINK.schema_hash)
    assert version.name == "v0001" and torch.equal(state["w"], torch.ones(2))
    assert (second.path / "card.md").read_text() == "card"
