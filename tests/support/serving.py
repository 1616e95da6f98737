"""The server's parts over the in-memory graph (graph/memory_reader.py), for unit tests of
everything above the store: the serving state with its refresh loop's steps, the handlers called
as the interceptor would (the caller's auth set, RelgraphErrors raised rather than mapped), and
untrained model versions in a registry, so serving can be exercised without a training run."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.clock import Clock
from core.vocabulary import parse_time
from gnn.buyer_process import CohortMinimum
from gnn.deal_model import DealModel, DealModelConfig
from gnn.deals import COMPANY_FEATURES, DEFAULT_STAGES, PERSON_FEATURES, TABULAR_FEATURES, deal_schema_hash
from gnn.features import NODE_FEATURES, PAIR_FEATURES, link_schema_hash
from gnn.link_model import LinkModelConfig, LinkStrengthModel
from gnn.model_kinds import DEAL, LINK
from gnn.registry import ModelRegistry
from graph.memory_reader import InMemoryGraph
from graph.pseudonymize import Pseudonymizer
from server import snapshot as snapshots
from server.auth import AuthContext, reset_current_auth, set_current_auth
from server.buyer_intelligence_service import BuyerIntelligenceService
from server.metrics import Metrics
from server.snapshot import Snapshot
from server.state import ServingStateHolder
from server.warm_paths_service import WarmPathsService

KEY = "unit-test-network-key-0123456789"


class NoDeadline:
    """The part of grpc.ServicerContext the handlers read: a call without a deadline."""

    def time_remaining(self) -> float | None:
        return None


@dataclass
class Serving:
    graph: InMemoryGraph
    holder: ServingStateHolder
    warm_paths: WarmPathsService
    buyer: BuyerIntelligenceService

    def call(self, tenant: str, method: str, request: Any, role: str = "member") -> Any:
        """`method` of whichever service has it, as `tenant`'s key with `role` would call it."""
        service = self.warm_paths if hasattr(self.warm_paths, method) else self.buyer
        with as_caller(tenant, role):
            return getattr(service, method)(request, NoDeadline())


@contextlib.contextmanager
def as_caller(tenant: str, role: str = "member") -> Iterator[None]:
    token = set_current_auth(AuthContext(tenant=tenant, role=role, scopes=frozenset(), key_id=f"k-{tenant}"))
    try:
        yield
    finally:
        reset_current_auth(token)


def serving(graph: InMemoryGraph, clock: Clock, registry: ModelRegistry) -> Serving:
    """A serving state over `graph` at `clock`'s time with `registry`'s promoted models, and the two
    query services reading it, wired as server/app.py wires them."""
    holder = ServingStateHolder(
        graph, clock, Metrics(), registry, refresh_interval_s=3600, full_rebuild_interval_s=3600
    )
    pseudo = Pseudonymizer(KEY)
    return Serving(
        graph,
        holder,
        WarmPathsService(holder, pseudo, clock),
        BuyerIntelligenceService(holder, clock, CohortMinimum(deals=1, tenants=1)),
    )


def untrained_models(root: Path, stages: tuple[str, ...] = DEFAULT_STAGES, *, stage_head: bool = True) -> ModelRegistry:
    """A registry with an untrained link and deal model (over `stages`, with or without a trained
    stage head) promoted: answers from serving code paths whose numbers mean nothing (model quality
    is the integration tests' and benchmarks' business)."""
    registry = ModelRegistry(root)
    link = LinkStrengthModel(LinkModelConfig(node_features=len(NODE_FEATURES), pair_features=len(PAIR_FEATURES)))
    deal = DealModel(
        DealModelConfig(
            tabular=len(TABULAR_FEATURES),
            person=len(PERSON_FEATURES),
            company=len(COMPANY_FEATURES),
            stages=len(stages),
        )
    )
    states = {
        LINK: {"config": link.config.to_dict(), "weights": link.state_dict(), "platt": [1.0, 0.0]},
        DEAL: {
            "config": deal.config.to_dict(),
            "weights": deal.state_dict(),
            "platt": [1.0, 0.0],
            "stages": list(stages),
            "stage_head": stage_head,
            "intervals": {
                "max_log_days": [6.0],
                "engaged": [-0.5, 0.5],
                "no_interactions": [-1.0, 1.0],
                "marginal_log_days": [2.0, 5.0],
            },
        },
    }
    manifests = {  # as training writes them
        LINK: {"schema_hash": link_schema_hash()},
        DEAL: {"schema_hash": deal_schema_hash(stages), "stages": list(stages)},
    }
    for kind, state in states.items():
        version = registry.write(kind.name, manifests[kind], state, lambda folder: None)
        registry.promote(kind.name, version.name)
    return registry


# A small world of two sellers (acme, globex) and one buyer (buyer.example), as ingest records.
# acme logged ann-ops, ops-cfo (recent, two-way) and bob-cfo (a year old, one-way); globex logged
# gil-vp and vp-cfo, so only globex holds vp. acme's open deal D-1 moved from discovery to proposal
# on April 15th; D-2 is won and closed.
AS_OF = parse_time("2026-06-01T00:00:00Z")
BUYER = "buyer.example"
ANN, BOB, GIL = "ann@acme.example", "bob@acme.example", "gil@globex.example"
OPS, CFO, VP = f"ops@{BUYER}", f"cfo@{BUYER}", f"vp@{BUYER}"


def world_records() -> list[dict[str, Any]]:
    def job(tenant: str, email: str, title: str) -> dict[str, Any]:
        return {
            "kind": "employment",
            "tenant": tenant,
            "email": email,
            "company": BUYER,
            "title": title,
            "from": "2020-01-01",
            "company_industry": "retail",
            "company_size": 800,
        }

    def talk(tenant: str, kind: str, ts: str, sender: str, to: str, deal: str = "") -> dict[str, Any]:
        record = {"kind": "interaction", "tenant": tenant, "type": kind, "ts": ts, "from": sender, "to": [to]}
        return {**record, "deal": deal} if deal else record

    return [
        {"kind": "member", "tenant": "acme", "email": ANN, "role": "rep", "title": "Account Executive"},
        {"kind": "member", "tenant": "acme", "email": BOB, "role": "rep", "title": "Account Executive"},
        {"kind": "member", "tenant": "globex", "email": GIL, "role": "rep", "title": "Account Executive"},
        job("acme", OPS, "Director of Operations"),
        job("acme", CFO, "Chief Financial Officer"),
        job("globex", VP, "VP Finance"),
        job("globex", CFO, "Chief Financial Officer"),
        *(talk("acme", "email", f"2026-05-{day:02d}T10:00:00Z", ANN, OPS, "D-1") for day in (4, 11, 18)),
        talk("acme", "email", "2026-05-19T09:00:00Z", OPS, ANN, "D-1"),
        talk("acme", "meeting", "2026-05-06T15:00:00Z", OPS, CFO),
        talk("acme", "email", "2025-05-01T10:00:00Z", BOB, CFO),
        talk("globex", "meeting", "2026-05-15T15:00:00Z", GIL, VP),
        talk("globex", "meeting", "2026-05-20T15:00:00Z", VP, CFO),
        {
            "kind": "deal",
            "tenant": "acme",
            "id": "D-1",
            "account": BUYER,
            "owner": ANN,
            "amount": 48000,
            "created": "2026-03-01",
            "product": "platform",
            "stages": [{"stage": "discovery", "ts": "2026-03-01"}, {"stage": "proposal", "ts": "2026-04-15"}],
        },
        {"kind": "deal_contact", "tenant": "acme", "deal": "D-1", "email": OPS, "role": "champion"},
        {"kind": "deal_contact", "tenant": "acme", "deal": "D-1", "email": CFO, "role": "economic_buyer"},
        {
            "kind": "deal",
            "tenant": "acme",
            "id": "D-2",
            "account": BUYER,
            "owner": BOB,
            "created": "2025-01-10",
            "outcome": "won",
            "closed": "2025-06-01",
        },
        {
            "kind": "signal",
            "tenant": "acme",
            "type": "poll_answer",
            "ts": "2026-05-20T12:00:00Z",
            "email": OPS,
            "topic": "contract_expiry",
            "value": "10-12_months",
        },
        {
            "kind": "signal",
            "tenant": "globex",
            "type": "poll_answer",
            "ts": "2026-05-21T12:00:00Z",
            "email": VP,
            "topic": "contract_expiry",
            "value": "1-3_months",
        },
    ]


def world() -> InMemoryGraph:
    graph = InMemoryGraph(Pseudonymizer(KEY))
    graph.ingest(world_records())
    return graph


RANDOM_TENANTS = ("acme", "globex", "initech")


def random_snapshot(seed: int, people: int = 40, interactions: int = 160) -> Snapshot:
    """A snapshot of `people` with a member every fourth person (three tenants), a job every fifth,
    and `interactions` emails between random pairs at random times in the 200 days before AS_OF."""
    rng = np.random.default_rng(seed)
    emails = [f"p{i}@example.com" for i in range(people)]
    records: list[dict[str, Any]] = [
        {"kind": "member", "tenant": tenant, "email": emails[i], "role": "rep", "title": "Account Executive"}
        for i, tenant in zip(range(0, people, 4), itertools.cycle(RANDOM_TENANTS))
    ]
    records += [  # every fifth person's job, as one tenant's CRM records it
        {
            "kind": "employment",
            "tenant": RANDOM_TENANTS[int(rng.integers(3))],
            "email": emails[i],
            "company": f"c{i % 7}.example",
            "title": "Director of Operations",
            "from": "2020-01-01",
        }
        for i in range(2, people, 5)
    ]
    for _ in range(interactions):  # repeated pairs count up; the same pair in two tenants is parallel
        a, b = rng.choice(people, 2, replace=False)
        records.append(
            {
                "kind": "interaction",
                "tenant": RANDOM_TENANTS[int(rng.integers(3))],
                "type": "email",
                "ts": int(AS_OF - rng.integers(0, 200) * 86400),
                "from": emails[a],
                "to": [emails[b]],
            }
        )
    graph = InMemoryGraph(Pseudonymizer(KEY))
    graph.ingest(records)
    return snapshots.build(graph)
