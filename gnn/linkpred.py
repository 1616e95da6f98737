"""The temporal link-prediction task behind relationship strength, and its honest evaluation.

Task: given everything before time t, will two people have a two-way interaction within the
horizon after t? The chronological split puts the test cutoff where `test_quantile` of the
interactions have happened (by count, not by calendar, so a gap in the data, as real logs have,
cannot leave a label window empty), test labels in the horizon after it, and the training cutoff
one horizon before it: training labels end where test features begin, and nothing after a cutoff
reaches its features.

Evaluation follows TGB: each positive pair of the test horizon is a query from one of its people,
ranked against negatives of two kinds: random people, and historical ones (people they had
interacted with before the cutoff, who are the hard and realistic negatives), filtered so no
negative is itself a positive of that person. Reported: MRR, Hits@{1,10,50} and AUC, for the model
and for the baselines on the same queries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from core.errors import ConfigError, InvalidInputError
from gnn.features import DAY, GraphAt, pair_keys, two_way_pairs
from gnn.link_model import LinkStrengthModel
from graph.interaction_log import InteractionLog

Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (u, v) -> score per pair, higher = stronger
HITS_AT = (1, 10, 50)


@dataclass(frozen=True, kw_only=True)
class LinkTask:
    """How the link task is set up. Keyword-only, validated on construction."""

    horizon_days: float = 30.0
    negatives_per_positive: int = 10  # training negatives per positive: half historical, half random
    eval_negatives: int = 100  # per query and negative kind
    max_eval_queries: int = 5000
    test_quantile: float = 0.9  # the test cutoff: when this share of the interactions has happened

    def __post_init__(self) -> None:
        if self.horizon_days <= 0:
            raise ConfigError(f"horizon_days must be positive, got {self.horizon_days}")
        if not 0.5 <= self.test_quantile < 1.0:
            raise ConfigError(f"test_quantile must be in [0.5, 1), got {self.test_quantile}")
        if self.negatives_per_positive < 2 or self.eval_negatives < max(HITS_AT):
            raise ConfigError(f"negatives_per_positive must be >= 2 and eval_negatives >= {max(HITS_AT)}")

    @property
    def horizon(self) -> int:
        return int(self.horizon_days * DAY)


@dataclass(frozen=True)
class Split:
    train_cutoff: int
    test_cutoff: int
    end: int

    def to_dict(self) -> dict[str, int]:
        return {"train_cutoff": self.train_cutoff, "test_cutoff": self.test_cutoff, "end": self.end}


def chronological_split(log: InteractionLog, task: LinkTask) -> Split:
    first, last = log.time_range
    test = min(int(log.ts[int(task.test_quantile * (log.interactions - 1))]), last + 1 - task.horizon)
    train = test - task.horizon
    if train <= first + task.horizon:
        days = (last - first) / DAY
        raise InvalidInputError(
            f"the log spans {days:.0f} days, too short for horizon_days={task.horizon_days:g}: "
            f"it needs history, then a training and a test horizon before the last "
            f"{100 * (1 - task.test_quantile):.0f}% of its interactions"
        )
    return Split(train_cutoff=train, test_cutoff=test, end=test + task.horizon)


@dataclass(frozen=True)
class PairSet:
    """Labelled pairs at one cutoff: `pairs` (2, B) int64, `x` (B, pair features), `y` (B,) 0/1."""

    pairs: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor


def validation_pairs(
    graph: GraphAt, positive: np.ndarray, share: float, rng: np.random.Generator
) -> tuple[np.ndarray, PairSet]:
    """(held-out pair keys, validation pairs) at `graph.t`; `positive`: the horizon's two-way pairs.

    A share of the pairs (with history, or positive in the horizon) is held out of training.
    Validation is every held-out pair with history, positive or not: the population serving
    scores, so Platt scaling fitted on it calibrates what warm paths show."""
    n = graph.n
    held = np.unique(np.concatenate([graph.keys, positive]))
    held = held[rng.random(held.shape[0]) < share]
    keys = graph.keys[np.isin(graph.keys, held)]
    u, v = keys // n, keys % n
    return held, PairSet(
        torch.from_numpy(np.stack([u, v])),
        graph.pair_features(u, v),
        torch.from_numpy(np.isin(keys, positive).astype(np.float32)),
    )


def training_pairs(
    graph: GraphAt, positive: np.ndarray, task: LinkTask, rng: np.random.Generator, held: np.ndarray
) -> PairSet:
    """The `positive` pairs of the horizon after `graph.t` (but the `held` ones), each from a
    random side with `negatives_per_positive` negatives for that same person, as the evaluation's
    queries have: half people they interacted with before (historical), half anyone (random)."""
    n = graph.n
    train_positive = positive[~np.isin(positive, held)]
    per = task.negatives_per_positive
    flip = rng.random(train_positive.shape[0]) < 0.5
    a, b = train_positive // n, train_positive % n
    source, target = np.where(flip, b, a), np.where(flip, a, b)
    repeated = np.repeat(source, per)
    candidates = rng.integers(0, n, repeated.shape[0])
    historical = np.tile(np.arange(per) < per // 2, source.shape[0])
    degree = np.diff(graph.adjacency.indptr)[repeated]
    has_past = historical & (degree > 0)
    pick = graph.adjacency.indptr[repeated[has_past]] + (rng.random(int(has_past.sum())) * degree[has_past]).astype(
        np.int64
    )
    candidates[has_past] = graph.adjacency.indices[pick]
    keys = pair_keys(repeated, candidates, n)
    usable = (candidates != repeated) & ~np.isin(keys, positive) & ~np.isin(keys, held)
    u = np.concatenate([source, repeated[usable]])
    v = np.concatenate([target, candidates[usable]])
    labels = np.concatenate([np.ones(source.shape[0]), np.zeros(int(usable.sum()))])
    return PairSet(
        torch.from_numpy(np.stack([u, v])), graph.pair_features(u, v), torch.from_numpy(labels.astype(np.float32))
    )


@dataclass(frozen=True)
class Queries:
    """`source`, `target` (Q,): the positive pair of each query; `negatives[kind]` (Q, K)."""

    source: np.ndarray
    target: np.ndarray
    negatives: dict[str, np.ndarray]


def ranking_queries(log: InteractionLog, graph: GraphAt, end: int, task: LinkTask, rng: np.random.Generator) -> Queries:
    n, k = log.people, task.eval_negatives
    positive = two_way_pairs(log, graph.t, end)
    if not positive.shape[0]:
        raise InvalidInputError("no two-way interaction falls in the test horizon: nothing to evaluate")
    chosen = rng.choice(positive, size=min(task.max_eval_queries, positive.shape[0]), replace=False)
    flip = rng.random(chosen.shape[0]) < 0.5  # query from either side of the pair
    a, b = chosen // n, chosen % n
    source, target = np.where(flip, b, a), np.where(flip, a, b)

    def allowed(src: np.ndarray, cand: np.ndarray) -> np.ndarray:
        ok: np.ndarray = (cand != src) & ~np.isin(pair_keys(src, cand, n), positive)
        return ok

    random_neg = rng.integers(0, n, (source.shape[0], k))
    bad = ~allowed(source[:, None], random_neg)
    while bad.any():  # redraw the few that hit the source itself or one of its positives
        random_neg[bad] = rng.integers(0, n, int(bad.sum()))
        bad = ~allowed(source[:, None], random_neg)
    historical = random_neg.copy()  # padded with random people where the history is short (as TGB does)
    for i, s in enumerate(source):
        past = graph.adjacency.indices[graph.adjacency.indptr[s] : graph.adjacency.indptr[s + 1]]
        past = past[allowed(np.full(past.shape[0], s), past)]
        take = rng.permutation(past)[:k]
        historical[i, : take.shape[0]] = take
    return Queries(source=source, target=target, negatives={"random": random_neg, "historical": historical})


def ranking_metrics(queries: Queries, scorer: Scorer) -> dict[str, float]:
    """MRR and Hits@k per negative kind (ties count half), and AUC over all negatives."""
    q = queries.source.shape[0]
    positive = scorer(queries.source, queries.target)
    metrics: dict[str, float] = {}
    all_negative = []
    for kind, negatives in queries.negatives.items():
        k = negatives.shape[1]
        score = scorer(np.repeat(queries.source, k), negatives.ravel()).reshape(q, k)
        rank = 1.0 + (score > positive[:, None]).sum(1) + 0.5 * (score == positive[:, None]).sum(1)
        metrics[f"mrr_{kind}"] = float(np.mean(1.0 / rank))
        for at in HITS_AT:
            metrics[f"hits@{at}_{kind}"] = float(np.mean(rank <= at))
        all_negative.append(score.ravel())
    negative = np.concatenate(all_negative)
    labels = np.concatenate([np.ones(q), np.zeros(negative.shape[0])])
    metrics["auc"] = float(roc_auc_score(labels, np.concatenate([positive, negative])))
    return metrics


def baselines(graph: GraphAt) -> dict[str, Scorer]:
    """The baselines every model is reported beside, scored on the graph before the cutoff."""

    def edgebank(u: np.ndarray, v: np.ndarray) -> np.ndarray:  # memorize: has the pair ever interacted?
        return graph.lookup(pair_keys(u, v, graph.n))[1].astype(np.float64)

    def recency_weighted_count(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        pos, found = graph.lookup(pair_keys(u, v, graph.n))
        return np.where(found, graph.recency_30d[pos] if graph.keys.shape[0] else 0.0, 0.0)

    return {
        "edgebank": edgebank,
        "recency_weighted_count": recency_weighted_count,
        "adamic_adar": graph.adamic_adar,
        "common_neighbors": graph.common_neighbors,
    }


def model_scorer(model: LinkStrengthModel, graph: GraphAt, chunk: int = 65536) -> Scorer:
    """Score pairs with `model` on the full graph at its cutoff."""
    model.eval()
    with torch.no_grad():
        h = model.encode(graph.node_x, graph.edge_index())

    def score(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, u.shape[0], chunk):
                uu, vv = u[i : i + chunk], v[i : i + chunk]
                pairs = torch.from_numpy(np.stack([uu, vv]).astype(np.int64))
                out.append(model.decode(h, pairs, graph.pair_features(uu, vv)).numpy())
        return np.concatenate(out) if out else np.zeros(0)

    return score


def edge_population(log: InteractionLog, graph: GraphAt, end: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, label) for every pair with history at the cutoff: the population serving scores."""
    u, v = graph.pairs
    labels = np.isin(graph.keys, two_way_pairs(log, graph.t, end)).astype(np.float64)
    return u, v, labels
