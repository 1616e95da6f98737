"""`relgraph audit hygiene`: the hygiene audit of one tenant's open deals, read from Neo4j with the
promoted deal model (the operator's view of what GetPipelineHealth answers a member)."""

from __future__ import annotations

from core.errors import NoModelError
from gnn.deal_scoring import DealScorer
from gnn.deals import DAY
from gnn.model_kinds import DEAL
from gnn.pipeline_health import HygieneAudit, audit_hygiene
from gnn.registry import ModelRegistry
from graph.neo4j_reader import Neo4jReader
from graph.reader import TenantScope
from graph.store import GraphStore


def audit_tenant(
    store: GraphStore, registry: ModelRegistry, tenant: str, as_of: int, *, stale_days: int, sample: int
) -> tuple[HygieneAudit, str]:
    """The audit at `as_of` and the deal-model version that gave its stage estimates ("" if none)."""
    data = Neo4jReader(store).deal_bundle(TenantScope.of(tenant))
    try:
        scorer: DealScorer | None = DEAL.load_promoted(registry)
    except NoModelError:
        scorer = None
    audit = audit_hygiene(
        data.deals,
        as_of,
        (lambda deals: scorer.estimated_stages(data, deals, as_of)) if scorer else None,
        scorer.stages if scorer else (),
        stale_days=stale_days,
        sample=sample,
        seed=as_of // DAY,  # the same sample all day, as the server draws it
    )
    return audit, f"deal/{scorer.version}" if scorer else ""
