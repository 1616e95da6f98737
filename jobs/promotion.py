"""Gated promotion. A new version may serve only if, on the held-back split it was evaluated on, it is
no worse than every baseline and than the version serving now (scored on that same split) by more
than a stated noise margin, on each metric that decides what users see. `relgraph train --promote`
and the scheduled KubeRay job promote through the gate; otherwise the version is registered and the
report says why not. `relgraph models promote V --force` is the human override, recorded in the
version's manifest."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Generic, TypeVar

from core.errors import ModelSchemaError
from gnn.model_kinds import ModelKind
from gnn.registry import ModelRegistry

Served = TypeVar("Served")

# The noise margins: how much worse than a reference a candidate may score and still pass. About the
# spread of each metric between seeds on the same data (README, "Gated promotion").
MRR_MARGIN = 0.005
AUC_MARGIN = 0.005
BRIER_MARGIN = 0.002
ACCURACY_MARGIN = 0.01

# The row the version serving now is scored under, beside the baselines.
PROMOTED = "promoted"


@dataclass(frozen=True)
class Incumbent(Generic[Served]):
    """The version serving now, loaded to be scored on a new version's split; `model` None (with
    why) when there is none or it cannot be compared."""

    model: Served | None
    version: str | None
    why_not: str = ""

    @staticmethod
    def of(kind: ModelKind[Served], registry: ModelRegistry | None) -> Incumbent[Served]:
        if registry is None:
            return Incumbent(None, None, "no registry: nothing is promoted")
        name = registry.promoted_name(kind.name)
        if name is None:
            return Incumbent(None, None, f"no {kind.name} model promoted yet")
        try:
            return Incumbent(kind.load_promoted(registry), name)
        except ModelSchemaError as exc:
            return Incumbent(None, name, f"not comparable: {exc}")

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "scored": self.model is not None, "why_not": self.why_not}


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: list[str]  # every failed comparison, or what was compared when it passed
    incumbent: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _failures(
    metric: str, rows: dict[str, dict[str, Any]], *, candidate: str, higher_is_better: bool, margin: float
) -> Iterator[str]:
    mine = rows[candidate][metric]
    for name, row in rows.items():
        if name == candidate or row.get(metric) is None:
            continue
        theirs = row[metric]
        worse_by = (theirs - mine) if higher_is_better else (mine - theirs)
        if worse_by > margin:
            yield f"{metric}: {mine:.4f} against {theirs:.4f} for {name} (margin {margin:g})"


def _verdict(checks: list[tuple[str, dict[str, dict[str, Any]], bool, float]], incumbent: Incumbent[Any]) -> Verdict:
    failed = [
        reason
        for metric, rows, higher, margin in checks
        for reason in _failures(metric, rows, candidate="model", higher_is_better=higher, margin=margin)
    ]
    compared = sorted({name for _, rows, _, _ in checks for name in rows if name != "model"})
    reasons = failed or [f"no worse than {', '.join(compared)} beyond the noise margins"]
    if incumbent.model is None:
        reasons.append(f"the serving version was not compared ({incumbent.why_not})")
    return Verdict(not failed, reasons, incumbent.to_dict())


def link_verdict(metrics: dict[str, dict[str, Any]], incumbent: Incumbent[Any]) -> Verdict:
    """The link model against every baseline and the serving version, MRR with both kinds of negatives."""
    return _verdict(
        [(metric, metrics, True, MRR_MARGIN) for metric in ("mrr_historical", "mrr_random")],
        incumbent,
    )


def deal_verdict(metrics: dict[str, Any], incumbent: Incumbent[Any]) -> Verdict:
    """The deal model's win probability (AUC, Brier) against gradient boosting, the no-skill
    predictor and the serving version; its stage accuracy, when it has a stage head, against
    gradient boosting, the majority stage and the serving version (the CRM is not a candidate model)."""
    win = {k: v for k, v in metrics["win"].items() if isinstance(v, dict)}
    checks = [("auc", win, True, AUC_MARGIN), ("brier", win, False, BRIER_MARGIN)]
    stage = metrics.get("stage_open_deals") or metrics["stage"]
    if "accuracy" in stage:
        accuracy = {k: {"accuracy": v} for k, v in stage["accuracy"].items() if k != "crm_reported"}
        checks.append(("accuracy", accuracy, True, ACCURACY_MARGIN))
    return _verdict(checks, incumbent)


def render_gate(verdict: dict[str, Any]) -> str:
    """The gate's verdict as a report line."""
    head = "promotion gate: passed" if verdict["passed"] else "promotion gate: NOT passed"
    return f"{head}: " + "; ".join(verdict["reasons"])


def gate_refusal(manifest: dict[str, Any]) -> str | None:
    """Why a version's gate refused it; None when it passed (or its kind has no gate: the buyer
    model is descriptive statistics with no baseline to beat)."""
    gate = manifest.get("promotion_gate")
    if gate is None or gate["passed"]:
        return None
    return "; ".join(gate["reasons"])


def promote_through_gate(registry: ModelRegistry, model: str, name: str) -> str:
    """Promote `name` if its gate passed; says what happened either way."""
    refused = gate_refusal(registry.version(model, name).manifest)
    if refused is not None:
        return (
            f"{model} model {name} registered but NOT promoted: {refused} (the human override: "
            f"`relgraph models promote {name} --model {model} --force`)"
        )
    registry.promote(model, name)
    return f"promoted {model} model {name}"


def promote_forced(registry: ModelRegistry, model: str, name: str) -> None:
    """Promote `name` whatever its gate said, recording the override in its manifest."""
    version = registry.version(model, name)
    forced = [*version.manifest.get("forced_promotions", []), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())]
    registry.amend(model, name, forced_promotions=forced)
    registry.promote(model, name)
