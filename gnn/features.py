"""The graph as it stood at a time t, and the features the link model reads from it.

Everything here is computed from interactions strictly before t and employment that began before
t, so a model trained or evaluated at t cannot see the future (tests/unit/test_link_model.py
checks it). Pairs are unordered and keyed `lo * N + hi` with lo < hi.

Pair features describe the relationship's evidence (frequency, recency, reciprocity, meetings and
calls), its neighbourhood (common neighbours, Adamic-Adar) and shared employers; node features
describe a person's position (title level, function, activity)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch_geometric.data import HeteroData

from core.vocabulary import FUNCTIONS, INTERACTION_KINDS, TITLE_LEVELS, TWO_WAY_INTERACTIONS
from graph.interaction_log import InteractionLog

DAY = 86400
NO_HISTORY_DAYS = 3650.0  # the recency a pair without any interaction gets
RECENCY_TAU_DAYS = 30.0  # time constant of the recency-weighted count (also a baseline)
_SYNC_KINDS = np.array([k in TWO_WAY_INTERACTIONS for k in INTERACTION_KINDS])

PAIR_FEATURES = (
    "has_history",
    "log_count",
    "log_two_way",
    "log_one_way_max",
    "log_meetings_calls",
    "reciprocity",
    "log_days_since_last",
    "log_days_since_first",
    "log_mean_gap_days",
    "log_overdue",
    "log_recency_weighted_30d",
    "log_recency_weighted_180d",
    "log_common_neighbors",
    "adamic_adar",
    "shared_employer",
)
NODE_FEATURES = (
    *(f"level_{name}" for name in (*TITLE_LEVELS, "unknown")),
    *(f"function_{name}" for name in (*FUNCTIONS, "unknown")),
    "log_degree",
    "log_interactions",
    "log_interactions_30d",
    "log_days_since_active",
)


def link_feature_schema() -> dict[str, object]:
    """What a model's inputs mean; serving refuses a model trained on another schema."""
    return {
        "version": "link-features-v1",
        "pair": list(PAIR_FEATURES),
        "node": list(NODE_FEATURES),
        "recency_tau_days": RECENCY_TAU_DAYS,
    }


def link_schema_hash(schema: dict[str, object] | None = None) -> str:
    text = json.dumps(schema if schema is not None else link_feature_schema(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pair_keys(lo: np.ndarray, hi: np.ndarray, n: int) -> np.ndarray:
    a, b = np.minimum(lo, hi).astype(np.int64), np.maximum(lo, hi).astype(np.int64)
    key: np.ndarray = a * n + b
    return key


@dataclass(frozen=True, eq=False)
class GraphAt:
    """The relationship graph at time `t`: one entry per pair with an interaction before t."""

    t: int
    n: int
    keys: np.ndarray  # (P,) int64 sorted pair keys
    count: np.ndarray  # (P,) per pair, float64 from here on
    one_way_min: np.ndarray  # contacts in the rarer direction (two-way evidence)
    one_way_max: np.ndarray
    sync: np.ndarray  # meetings and calls
    first_ts: np.ndarray
    last_ts: np.ndarray
    recency_30d: np.ndarray  # sum over interactions of exp(-age / 30 days)
    recency_180d: np.ndarray
    adjacency: sp.csr_matrix  # (N, N) symmetric 0/1
    employers: sp.csr_matrix  # (N, C) 1 where the person worked at the company before t
    jobs: tuple[np.ndarray, np.ndarray, np.ndarray]  # (person, company, first start) per employer, int64
    node_x: torch.Tensor  # (N, len(NODE_FEATURES)) float32

    @property
    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        return self.keys // self.n, self.keys % self.n

    def edge_index(self) -> torch.Tensor:
        """(2, 2P) both directions of every pair, for message passing."""
        lo, hi = self.pairs
        return torch.from_numpy(np.stack([np.concatenate([lo, hi]), np.concatenate([hi, lo])]))

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position, found) of each pair key among this graph's pairs."""
        pos = np.searchsorted(self.keys, keys)
        pos = np.minimum(pos, max(0, self.keys.shape[0] - 1))
        found = (
            (self.keys.shape[0] > 0) & (self.keys[pos] == keys)
            if self.keys.shape[0]
            else np.zeros(keys.shape[0], dtype=bool)
        )
        return pos, found

    def to_hetero_data(self) -> HeteroData:
        """The graph at t as PyG `HeteroData`: people (node features), companies, `knows` in both
        directions with the pair features as `edge_attr` and the last interaction as `time`, and
        `worked_at` (jobs begun before t) with the start as `time`."""
        data = HeteroData()
        data["person"].x = self.node_x
        data["company"].num_nodes = int(self.employers.shape[1])
        lo, hi = self.pairs
        pair_x = self.pair_features(lo, hi)
        data["person", "knows", "person"].edge_index = self.edge_index()
        data["person", "knows", "person"].edge_attr = torch.cat([pair_x, pair_x])
        data["person", "knows", "person"].time = torch.from_numpy(np.concatenate([self.last_ts, self.last_ts]))
        person, company, since = self.jobs
        data["person", "worked_at", "company"].edge_index = torch.from_numpy(np.stack([person, company]))
        data["person", "worked_at", "company"].time = torch.from_numpy(since)
        return data

    def common_neighbors(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.asarray(self.adjacency[u].multiply(self.adjacency[v]).sum(axis=1)).ravel()

    def adamic_adar(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        degree = np.asarray(self.adjacency.sum(axis=1)).ravel()
        weight = np.where(degree > 1, 1.0 / np.log(np.maximum(degree, 2)), 0.0)
        weighted = self.adjacency[v] @ sp.diags(weight)
        return np.asarray(self.adjacency[u].multiply(weighted).sum(axis=1)).ravel()

    def pair_features(self, u: np.ndarray, v: np.ndarray) -> torch.Tensor:
        """(len(u), len(PAIR_FEATURES)) float32 features of the pairs (u[i], v[i])."""
        pos, found = self.lookup(pair_keys(u, v, self.n))

        def per_pair(values: np.ndarray, missing: float = 0.0) -> np.ndarray:
            return np.where(found, values[pos] if values.shape[0] else missing, missing)

        count, low, high = per_pair(self.count), per_pair(self.one_way_min), per_pair(self.one_way_max)
        since_last = np.where(found, (self.t - per_pair(self.last_ts)) / DAY, NO_HISTORY_DAYS)
        since_first = np.where(found, (self.t - per_pair(self.first_ts)) / DAY, NO_HISTORY_DAYS)
        # The pair's own rhythm: its mean gap between interactions, and how overdue the next one is.
        mean_gap = np.where(count > 1, (since_first - since_last) / np.maximum(count - 1, 1), NO_HISTORY_DAYS)
        overdue = since_last / np.maximum(mean_gap, 1.0 / 24)
        shared = np.asarray(self.employers[u].multiply(self.employers[v]).sum(axis=1)).ravel() > 0
        columns = [
            found.astype(np.float64),
            np.log1p(count),
            np.log1p(low),
            np.log1p(high),
            np.log1p(per_pair(self.sync)),
            low / np.maximum(high, 1.0),
            np.log1p(since_last),
            np.log1p(since_first),
            np.log1p(mean_gap),
            np.log1p(overdue),
            np.log1p(per_pair(self.recency_30d)),
            np.log1p(per_pair(self.recency_180d)),
            np.log1p(self.common_neighbors(u, v)),
            self.adamic_adar(u, v),
            shared.astype(np.float64),
        ]
        return torch.from_numpy(np.stack(columns, axis=1).astype(np.float32))


def graph_at(log: InteractionLog, t: int, tenants: list[int] | None = None) -> GraphAt:
    """The graph from interactions before `t` (logged by one of `tenants`, when given)."""
    n = log.people
    before = log.ts < t
    if tenants is not None:
        before &= np.isin(log.tenant, tenants)
    lo, hi, ts = log.lo[before], log.hi[before], log.ts[before]
    kind, direction = log.kind[before], log.direction[before]
    keys, pair = np.unique(pair_keys(lo, hi, n), return_inverse=True)
    p = keys.shape[0]

    def per_pair(weights: np.ndarray) -> np.ndarray:
        return np.bincount(pair, weights=weights, minlength=p)

    sync = _SYNC_KINDS[kind]
    forward = per_pair(((direction == 0) | sync).astype(np.float64))
    backward = per_pair(((direction == 1) | sync).astype(np.float64))
    age_days = (t - ts) / DAY
    first_ts = np.full(p, np.iinfo(np.int64).max)
    np.minimum.at(first_ts, pair, ts)
    last_ts = np.full(p, np.iinfo(np.int64).min)
    np.maximum.at(last_ts, pair, ts)

    a, b = keys // n, keys % n
    adjacency = sp.csr_matrix((np.ones(2 * p), (np.concatenate([a, b]), np.concatenate([b, a]))), shape=(n, n))
    adjacency.data[:] = 1.0
    started = log.emp_from < t
    companies = int(log.emp_company.max()) + 1 if log.emp_company.size else 0
    job_keys = log.emp_person[started].astype(np.int64) * max(companies, 1) + log.emp_company[started]
    job_from = log.emp_from[started]
    order = np.lexsort((job_from, job_keys))  # by employer, earliest start first
    unique_jobs, first = np.unique(job_keys[order], return_index=True)
    person, company = unique_jobs // max(companies, 1), unique_jobs % max(companies, 1)
    employers = sp.csr_matrix((np.ones(unique_jobs.shape[0]), (person, company)), shape=(n, companies))
    return GraphAt(
        t=t,
        n=n,
        keys=keys,
        count=per_pair(np.ones(lo.shape[0])),
        one_way_min=np.minimum(forward, backward),
        one_way_max=np.maximum(forward, backward),
        sync=per_pair(sync.astype(np.float64)),
        first_ts=first_ts,
        last_ts=last_ts,
        recency_30d=per_pair(np.exp(-age_days / RECENCY_TAU_DAYS)),
        recency_180d=per_pair(np.exp(-age_days / 180.0)),
        adjacency=adjacency,
        employers=employers,
        jobs=(person, company, job_from[order][first]),
        node_x=_node_features(log, t, lo, hi, ts, adjacency),
    )


def _node_features(
    log: InteractionLog, t: int, lo: np.ndarray, hi: np.ndarray, ts: np.ndarray, adjacency: sp.csr_matrix
) -> torch.Tensor:
    n = log.people
    # The latest job that began before t gives the title level and function.
    level = np.full(n, len(TITLE_LEVELS))
    function = np.full(n, len(FUNCTIONS))
    started = np.flatnonzero(log.emp_from < t)
    for j in started[np.argsort(log.emp_from[started], kind="stable")]:
        if log.emp_level[j] >= 0:
            level[log.emp_person[j]] = log.emp_level[j]
        if log.emp_function[j] >= 0:
            function[log.emp_person[j]] = log.emp_function[j]
    people = np.concatenate([lo, hi])
    when = np.concatenate([ts, ts])
    interactions = np.bincount(people, minlength=n).astype(np.float64)
    recent = np.bincount(people[when >= t - 30 * DAY], minlength=n).astype(np.float64)
    last_active = np.full(n, t - int(NO_HISTORY_DAYS * DAY), dtype=np.int64)
    np.maximum.at(last_active, people, when)
    x = np.zeros((n, len(NODE_FEATURES)), dtype=np.float32)
    x[np.arange(n), level] = 1.0
    x[np.arange(n), len(TITLE_LEVELS) + 1 + function] = 1.0
    x[:, -4] = np.log1p(np.asarray(adjacency.sum(axis=1)).ravel())
    x[:, -3] = np.log1p(interactions)
    x[:, -2] = np.log1p(recent)
    x[:, -1] = np.log1p((t - last_active) / DAY)
    return torch.from_numpy(x)


def two_way_pairs(log: InteractionLog, start: int, end: int) -> np.ndarray:
    """Sorted keys of the pairs with a two-way interaction in [start, end): contact in both
    directions, or a meeting or call. These are the link model's positive labels."""
    window = (log.ts >= start) & (log.ts < end)
    keys = pair_keys(log.lo[window], log.hi[window], log.people)
    sync = _SYNC_KINDS[log.kind[window]]
    direction = log.direction[window]
    forward = np.unique(keys[(direction == 0) | sync])
    backward = np.unique(keys[(direction == 1) | sync])
    return np.intersect1d(forward, backward)
