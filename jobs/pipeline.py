"""The operator's view of what PipelineService answers a tenant's members, read from Neo4j with the
promoted deal model: `relgraph audit hygiene` and `relgraph proposals` (with the reps' recorded
decisions and their acceptance rates; `relgraph forecast` is jobs/forecast.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from core.errors import NoModelError, NotFoundError
from gnn.deal_scoring import DealScorer
from gnn.model_kinds import DEAL
from gnn.pipeline_health import HygieneAudit, audit_open_deals
from gnn.proposals import Proposal, acceptance_rates, proposals_for
from gnn.registry import ModelRegistry
from graph.neo4j_reader import Neo4jReader
from graph.operations import record_proposal_decision
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
    audit = audit_open_deals(data, scorer, as_of, stale_days=stale_days, sample=sample)
    return audit, f"deal/{scorer.version}" if scorer else ""


@dataclass(frozen=True)
class ProposalQueue:
    proposals: list[Proposal]
    open_deals: int
    model_version: str
    decisions: dict[str, str]  # proposal id -> "accept" | "reject", for those decided
    acceptance: dict[str, dict[str, float]]  # field -> decided, accepted share (every decision recorded)

    def to_dict(self) -> dict[str, Any]:
        return {
            "open_deals": self.open_deals,
            "model_version": self.model_version,
            "acceptance": self.acceptance,
            "proposals": [{**asdict(p), "decision": self.decisions.get(p.proposal_id)} for p in self.proposals],
        }


def proposal_queue(
    store: GraphStore, registry: ModelRegistry, tenant: str, as_of: int, rep: str | None = None
) -> ProposalQueue:
    """The tenant's proposed CRM updates at `as_of` (the rep's, with a pid), with its reps' decisions."""
    scorer = DEAL.load_promoted(registry)
    reader = Neo4jReader(store)
    data = reader.deal_bundle(TenantScope.of(tenant))
    found, live = proposals_for(data, scorer, as_of, None if rep is None else {rep})
    recorded = reader.proposal_decisions(0, TenantScope.of(tenant))
    return ProposalQueue(
        found,
        live,
        f"deal/{scorer.version}",
        {d.proposal_id: d.decision for d in recorded},
        acceptance_rates([(d.field, d.decision) for d in recorded]),
    )


def decide(
    store: GraphStore, registry: ModelRegistry, tenant: str, as_of: int, proposal_id: str, decision: str
) -> Proposal:
    """Record a rep's decision on one of the tenant's current proposals; NotFoundError if none has that id."""
    found = next(
        (p for p in proposal_queue(store, registry, tenant, as_of).proposals if p.proposal_id == proposal_id), None
    )
    if found is None:
        raise NotFoundError(
            f"no current proposal {proposal_id[:40]!r} for tenant {tenant} (list them: relgraph proposals)"
        )
    record_proposal_decision(store, tenant, proposal_id, found.deal_id, found.field, decision, as_of)
    return found


def render_proposals(queue: dict[str, Any]) -> str:
    count, deals = len(queue["proposals"]), queue["open_deals"]
    lines = [f"{count} proposed CRM updates over {deals} open deals ({queue['model_version']})"]
    for p in queue["proposals"]:
        decided = f" [{p['decision']}ed]" if p["decision"] else ""
        current = f"{p['current'] or '(empty)'} -> " if p["field"] in ("stage", "close_date") else ""
        lines.append(
            f"  {p['proposal_id']} {p['deal_id']} {p['field']}: {current}{p['proposed']} "
            f"(confidence {p['confidence']:.0%}){decided}; {'; '.join(p['evidence'])}"
        )
    for field, rate in queue["acceptance"].items():
        lines.append(f"accepted {rate['accepted']:.0%} of {rate['decided']:.0f} decided {field} proposals")
    return "\n".join(lines)
