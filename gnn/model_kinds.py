"""The three kinds of model relgraph trains and serves. Each kind names its registry folder, the
feature schema this code computes for a version (serving refuses a version trained on another; a
deal or buyer model's stage vocabulary travels with it, so any CRM's stages serve), and how a
registered version is loaded for serving. Training each kind is jobs/' business (jobs/trainers.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gnn.buyer_process import BuyerProcessModel, buyer_schema_hash
from gnn.deal_scoring import DealScorer
from gnn.deals import DEFAULT_STAGES, deal_schema_hash
from gnn.features import link_schema_hash
from gnn.link_model import LinkScorer
from gnn.registry import ModelRegistry

Served = TypeVar("Served")


@dataclass(frozen=True)
class ModelKind(Generic[Served]):
    name: str  # the registry folder and the --model value
    predicts: str
    schema_hash: Callable[[dict[str, Any]], str]  # (a version's manifest) -> the schema this code computes for it
    load: Callable[[dict[str, Any], str], Served]  # (saved state, version) -> the model ready to serve

    def load_promoted(self, registry: ModelRegistry) -> Served:
        """The promoted version, loaded; NoModelError if none, ModelSchemaError if its schema differs."""
        version, state = registry.promoted(self.name, self.schema_hash)
        return self.load(state, version.name)


def trained_stages(manifest: dict[str, Any]) -> tuple[str, ...]:
    """The stage vocabulary a deal or buyer version was trained with."""
    return tuple(manifest.get("stages", DEFAULT_STAGES))


LINK: ModelKind[LinkScorer] = ModelKind(
    "link",
    "the strength of a relationship: a two-way interaction within the horizon",
    lambda _manifest: link_schema_hash(),
    LinkScorer.load,
)
DEAL: ModelKind[DealScorer] = ModelKind(
    "deal",
    "a deal's true stage, win probability and days to close",
    lambda manifest: deal_schema_hash(trained_stages(manifest), manifest.get("heads")),
    DealScorer,
)
BUYER: ModelKind[BuyerProcessModel] = ModelKind(
    "buyer",
    "how buyers like one buy: stage durations, stalls, drivers",
    lambda manifest: buyer_schema_hash(trained_stages(manifest)),
    BuyerProcessModel,
)
MODEL_KINDS: dict[str, ModelKind[Any]] = {kind.name: kind for kind in (LINK, DEAL, BUYER)}
