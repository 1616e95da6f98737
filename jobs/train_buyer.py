"""Build the buyer-process model (`gnn.buyer_process`) from closed deals and register it. The model
is a table of anonymous closed-deal facts; the minimum-cohort rule is applied when it answers, so
one version serves any k and m."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InvalidInputError
from gnn.buyer_process import (
    DEFAULT_COHORT_MINIMUM,
    DRIVERS,
    BuyerProcessModel,
    CohortMinimum,
    buyer_schema_hash,
    closed_deal_facts,
)
from gnn.deals import DEFAULT_STAGES
from gnn.model_kinds import BUYER
from gnn.registry import ModelRegistry, ModelVersion
from graph.deal_bundle import DealBundle


def train_buyer_model(
    data: DealBundle,
    *,
    as_of: int,
    registry: ModelRegistry,
    scope: dict[str, Any],
    stages: tuple[str, ...] = DEFAULT_STAGES,
    minimum: CohortMinimum = DEFAULT_COHORT_MINIMUM,
) -> ModelVersion:
    began = time.perf_counter()
    facts = closed_deal_facts(data, stages, as_of)
    if not facts["won"]:
        raise InvalidInputError(
            "the buyer-process model needs closed deals (won or lost, with 'closed'); there are none"
        )
    state = {"stages": list(stages), "facts": facts}
    model = BuyerProcessModel(state)
    cohorts = sorted({(i, s) for i, s in zip(facts["industry"], facts["size_band"])})
    served = [
        c for c in cohorts if model.meets_minimum(model.cohort_mask({"industry": c[0], "size_band": c[1]}), minimum)
    ]
    trusted = sum(1 for row in facts["stage_days"] if row)
    manifest: dict[str, Any] = {
        "model": BUYER.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "schema_hash": buyer_schema_hash(stages),
        "stages": list(stages),
        "drivers": DRIVERS,
        "data_window": {**scope, "as_of": as_of},
        "sizes": {
            "closed_deals": len(facts["won"]),
            "with_stage_history": trusted,
            "tenants": len(set(facts["tenant"])),
            "cohorts": len(cohorts),
            f"cohorts_with_k{minimum.deals}_m{minimum.tenants}": len(served),
        },
        "headline": {
            "closed_deals": len(facts["won"]),
            "win_rate": float(np.mean(facts["won"])),
            "median_days_to_close": float(np.median(facts["days_to_close"])),
            "cohorts_served_at_defaults": f"{len(served)}/{len(cohorts)}",
        },
        "seconds": round(time.perf_counter() - began, 2),
    }

    def extras(folder: Path) -> None:
        (folder / "card.md").write_text(
            f"# Buyer-process model\n\nStage durations (p10/p50/p90), stall probabilities, time to close and drivers "
            f"per buyer cohort, from {manifest['sizes']['closed_deals']:,} closed deals of "
            f"{manifest['sizes']['tenants']} tenants ({trusted:,} with a full stage history). Answers only for cohorts "
            f"of at least k deals from m tenants (server settings); {len(served)} of {len(cohorts)} industry and "
            f"size cohorts meet k={minimum.deals}, m={minimum.tenants}.\n"
        )

    return registry.write(BUYER.name, manifest, state, extras)


def render_buyer_report(r: dict[str, Any]) -> str:
    h, sizes = r["headline"], r["sizes"]
    return (
        f"buyer-process model {r['version']}: {sizes['closed_deals']} closed deals from {sizes['tenants']} tenants "
        f"({sizes['with_stage_history']} with a full stage history); win rate {h['win_rate']:.1%}, median "
        f"{h['median_days_to_close']:.0f} days to close; cohorts served at the default k and m: "
        f"{h['cohorts_served_at_defaults']}"
    )
