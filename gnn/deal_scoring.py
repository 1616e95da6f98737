"""A trained deal model applied to one deal: stage distribution, calibrated win probability, days to
close with an interval, the evidence behind the estimate and the evidence that is missing. The
server answers with this, and evaluation calls it too, so both give the same numbers for the same
model version and deal."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gnn.boosted_trees import DealBlend
from gnn.calibration import apply_platt
from gnn.deal_model import DealModel, DealModelConfig, DealTensors, predict, stack
from gnn.deals import DAY, PERSON_FEATURES, TABULAR_FEATURES, DealFeatures, deal_features
from graph.deal_bundle import Deal, DealBundle

# How each tabular feature reads in an answer: (label, format) where format is "count" (stored as
# log1p), "days" (log1p days), "share" or "flag".
_TABULAR_TEXT: dict[str, tuple[str, str]] = {
    "log_age_days": ("days since the deal was created", "days"),
    "log_amount": ("deal amount", "count"),
    "amount_known": ("deal amount recorded", "flag"),
    "has_interactions": ("any interaction recorded", "flag"),
    "log_interactions": ("interactions on the deal", "count"),
    "log_interactions_14d": ("interactions in the last 14 days", "count"),
    "log_interactions_30d": ("interactions in the last 30 days", "count"),
    "log_days_since_last": ("days since the last interaction", "days"),
    "inbound_share": ("share of interactions started by the buyer", "share"),
    "reply_rate": ("share of emails the buyer answered within a week", "share"),
    "log_reply_latency_days": ("median buyer reply time, days", "days"),
    "meeting_share": ("share of interactions that were meetings", "share"),
    "log_meetings": ("meetings held", "count"),
    "log_people_engaged": ("buyer-side people engaged", "count"),
    "log_people_engaged_30d": ("buyer-side people engaged in the last 30 days", "count"),
    "max_seniority_engaged": ("most senior level engaged (0-1)", "share"),
    "senior_engaged": ("a VP or C-level buyer engaged", "flag"),
    "log_days_since_senior": ("days since a VP or C-level buyer first engaged", "days"),
    "log_days_since_multithread": ("days since a second buyer-side person engaged", "days"),
    "gatekeeper_engaged": ("legal or procurement engaged", "flag"),
    "log_days_since_gatekeeper": ("days since legal or procurement first engaged", "days"),
    "log_days_since_newest_person": ("days since a new buyer-side person last joined", "days"),
    "log_contacts_listed": ("contacts listed on the deal", "count"),
    "economic_buyer_engaged": ("the listed economic buyer engaged", "flag"),
    "pricing_visits_30d": ("pricing-page visits from the account, last 30 days", "raw"),
    "contract_polls_90d": ("contract-expiry poll answers from the account, last 90 days", "raw"),
    "account_signals_30d": ("signals from the account, last 30 days", "count"),
    "log_sellers_engaged": ("people on your side engaged", "count"),
    "log_days_since_second_seller": ("days since a second person on your side joined", "days"),
    "meeting_share_14d": ("share of meetings, last 14 days", "share"),
}
_TOP_EVIDENCE = 6
_BATCH_ROWS = 4096  # deals and occlusion variants per forward pass when estimating many deals
# A deal older or larger (or smaller) than any the model learned from: what days to close and win
# probability extrapolate on. Engagement counts outside the training range are not flagged: open deals
# at the end of the data routinely have more recent signals than any closed deal had.
_EXTRAPOLATED = ("log_age_days", "log_amount")
# Features read from the deal's logged interactions: without any, their values are placeholders (the
# days "since the last interaction" are the deal's age), so they are not described as evidence.
_FROM_INTERACTIONS = frozenset(
    {
        "log_days_since_last",
        "inbound_share",
        "reply_rate",
        "log_reply_latency_days",
        "meeting_share",
        "meeting_share_14d",
    }
)
_NO_STAGE_HEAD = (
    "no stage estimate: the deal model was trained without a trusted stage history (retrain with the "
    "CRM's own stages in order, --stages)"
)


@dataclass(frozen=True)
class DealEstimate:
    as_of: int
    stages: dict[str, float]
    estimated_stage: str
    win_probability: float
    close_p10: int
    close_p50: int
    close_p90: int
    crm_stage: str
    evidence: list[tuple[str, float]]  # (description, signed change in win probability)
    missing_evidence: list[str]


@dataclass(frozen=True)
class DealOutlook:
    """One open deal at a time, in short: its win probability, when it closes and its stage."""

    win_probability: float
    close_log_days: tuple[float, float, float]  # p10, p50, p90 of log1p(days to close)
    stage: str  # the most likely stage; "" without a stage head
    stage_probability: float


class DealScorer:
    """A deal-model version loaded for scoring (the state `jobs/train_deals.py` registers)."""

    def __init__(self, state: dict[str, Any], version: str) -> None:
        self.version = version
        self.stages: tuple[str, ...] = tuple(state["stages"])
        self.model = DealModel(DealModelConfig(**state["config"]))
        self.model.load_state_dict(state["weights"])
        self.model.eval()
        self.platt = (float(state["platt"][0]), float(state["platt"][1]))
        # The win and days heads blended with gradient boosting (versions trained before the blend: none).
        self.blend = DealBlend.from_state(state["blend"]) if "blend" in state else None
        self.intervals: dict[str, list[float]] = state["intervals"]
        # False when training had no trusted stage history: the stage head then learned nothing.
        self.stage_head = bool(state.get("stage_head", True))
        # Each tabular feature's (lowest, highest) over the training snapshots: a deal outside them
        # is unlike any the model learned from (versions trained before this was kept have none).
        self.tabular_range: tuple[np.ndarray, np.ndarray] | None = (
            (np.asarray(state["tabular_range"][0]), np.asarray(state["tabular_range"][1]))
            if "tabular_range" in state
            else None
        )
        # One forward pass at a time: the server calls from many threads, and torch hands the GIL
        # back and forth on every small operation, so concurrent passes convoy on it (measured:
        # serialized passes answered 1.75 times as many estimates per second on 8 threads).
        self._forward = threading.Lock()

    def _win_and_more(self, features: list[DealFeatures]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.served(stack(features))

    @torch.no_grad()
    def served(self, tensors: DealTensors) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(stage probabilities, calibrated win probability, log days to close) of every snapshot of
        `tensors`, as the version serves them: the graph model's heads blended with the trees'."""
        with self._forward:
            stages, win_logit, log_days = predict(self.model, tensors)
        if self.blend is not None:
            tabular = tensors.tabular.numpy()
            win_logit, log_days = self.blend.win_logit(win_logit, tabular), self.blend.log_days(log_days, tabular)
        return stages, apply_platt(win_logit, *self.platt), log_days

    def estimate(self, data: DealBundle, deal: Deal, t: int) -> DealEstimate:
        return self.estimates(data, [deal], t)[0]

    def estimates(self, data: DealBundle, deals: list[Deal], t: int) -> list[DealEstimate]:
        """Each deal's estimate at t: the deals and their occlusion variants (the evidence) in
        forward passes of about `_BATCH_ROWS` rows (the serving state estimates every open deal)."""
        answers: list[DealEstimate] = []
        batch: list[tuple[Deal, DealFeatures, list[DealFeatures], list[str]]] = []
        rows = 0
        for deal in deals:
            features = deal_features(data, deal, t)
            variants, labels = self._occlusions(features)
            batch.append((deal, features, variants, labels))
            rows += 1 + len(variants)
            if rows >= _BATCH_ROWS:
                answers += self._estimate_batch(batch, t)
                batch, rows = [], 0
        return answers + self._estimate_batch(batch, t)

    def _estimate_batch(
        self, batch: list[tuple[Deal, DealFeatures, list[DealFeatures], list[str]]], t: int
    ) -> list[DealEstimate]:
        """The batch's deals and variants in one forward pass; each deal's estimate from its rows."""
        if not batch:
            return []
        stages, win, log_days = self._win_and_more([row for _, f, variants, _ in batch for row in (f, *variants)])
        answers, at = [], 0
        for deal, features, variants, labels in batch:
            end = at + 1 + len(variants)
            answers.append(self._estimate(deal, features, labels, stages[at], win[at:end], float(log_days[at]), t))
            at = end
        return answers

    def _estimate(
        self,
        deal: Deal,
        features: DealFeatures,
        labels: list[str],
        probs: np.ndarray,
        win: np.ndarray,
        log_days: float,
        t: int,
    ) -> DealEstimate:
        """The estimate from the model's outputs for the deal (`win[0]`) and its variants (`win[1:]`)."""
        unseen = self._unseen(features)
        close = self._close_log_days(features, float(log_days), bool(unseen))
        p10, p50, p90 = (int(t + np.expm1(d) * DAY) for d in close)
        return DealEstimate(
            as_of=t,
            stages={s: float(p) for s, p in zip(self.stages, probs)} if self.stage_head else {},
            estimated_stage=self.stages[int(np.argmax(probs))] if self.stage_head else "",
            win_probability=float(win[0]),
            close_p10=p10,
            close_p50=p50,
            close_p90=p90,
            crm_stage=deal.crm_stage_at(t),
            evidence=_top_evidence(labels, float(win[0]) - win[1:]),
            missing_evidence=missing_evidence(deal, features) + unseen + ([] if self.stage_head else [_NO_STAGE_HEAD]),
        )

    def outlooks(self, data: DealBundle, deals: list[Deal], t: int) -> list[DealOutlook]:
        """Each deal's win probability, close-time quantiles and stage at t, in one forward pass (no
        evidence): what the pipeline-wide answers need of every open deal."""
        if not deals:
            return []
        features = [deal_features(data, deal, t) for deal in deals]
        stages, win, log_days = self._win_and_more(features)
        return [
            DealOutlook(
                float(w),
                self._close_log_days(f, float(d), bool(self._unseen(f))),
                self.stages[int(np.argmax(p))] if self.stage_head else "",
                float(np.max(p)) if self.stage_head else 0.0,
            )
            for f, w, d, p in zip(features, win, log_days, stages, strict=True)
        ]

    def _close_log_days(self, features: DealFeatures, log_days: float, unseen: bool) -> tuple[float, float, float]:
        """The p10, p50 and p90 of log1p(days to close): the prediction kept within what training saw,
        with its evidence group's interval."""
        engaged = bool(features.tabular[TABULAR_FEATURES.index("has_interactions")] > 0)
        median = float(clamp_log_days(self.intervals, np.asarray([log_days]))[0])
        low, high = interval(self.intervals, median, engaged)
        if unseen:  # the model never saw such a deal: the close could be now or as late as any seen
            low, high = 0.0, max(high, self.intervals["max_log_days"][0])
        return low, median, high

    def _unseen(self, features: DealFeatures) -> list[str]:
        """The deal's own age or amount outside the training deals' range, one line each."""
        if self.tabular_range is None:
            return []
        lowest, highest = self.tabular_range
        lines = []
        for name in _EXTRAPOLATED:
            j = TABULAR_FEATURES.index(name)
            if lowest[j] - 1e-6 <= features.tabular[j] <= highest[j] + 1e-6:
                continue
            label, kind = _TABULAR_TEXT[name]
            lines.append(
                f"unlike any deal the model learned from: {label} {_as_read(kind, float(features.tabular[j]))} "
                f"(training deals: {_as_read(kind, float(lowest[j]))} to {_as_read(kind, float(highest[j]))}); "
                "the close-date interval is widened to what any deal took"
            )
        return lines

    def _occlusions(self, features: DealFeatures) -> tuple[list[DealFeatures], list[str]]:
        """The deal with one feature set to its training mean, or one person left out, each with
        what it leaves out: how the win probability moves without it is that evidence's weight."""
        variants, labels = [], []
        mean = self.model.scale_tabular.mean.numpy()
        engaged = features.tabular[TABULAR_FEATURES.index("has_interactions")] > 0
        for j in np.flatnonzero(~np.isclose(features.tabular, mean)):
            if not engaged and TABULAR_FEATURES[j] in _FROM_INTERACTIONS:
                continue
            tabular = features.tabular.copy()
            tabular[j] = mean[j]
            variants.append(DealFeatures(tabular, features.persons, features.person_pids, features.company))
            labels.append(describe_feature(TABULAR_FEATURES[j], float(features.tabular[j])))
        for i in range(features.persons.shape[0]):
            keep = np.arange(features.persons.shape[0]) != i
            variants.append(
                DealFeatures(
                    features.tabular,
                    features.persons[keep],
                    [p for k, p in zip(keep, features.person_pids) if k],
                    features.company,
                )
            )
            labels.append(describe_person(features.persons[i]))
        return variants, labels


def _top_evidence(labels: list[str], contributions: np.ndarray) -> list[tuple[str, float]]:
    """The evidence that moves the win probability most (positive: raises it)."""
    order = np.argsort(-np.abs(contributions))[:_TOP_EVIDENCE]
    return [(labels[i], float(contributions[i])) for i in order]


def clamp_log_days(intervals: dict[str, list[float]], log_days: np.ndarray) -> np.ndarray:
    """Predicted log1p(days to close) kept within what training saw: a deal unlike any seen before
    must not be told it closes in twenty years."""
    clamped: np.ndarray = np.clip(log_days, 0.0, intervals["max_log_days"][0])
    return clamped


def interval(intervals: dict[str, list[float]], log_days: float, engaged: bool) -> tuple[float, float]:
    """The p10-p90 interval of log1p(days to close) around a predicted median (see
    jobs.train_deals._interval_residuals): conformal residuals for the deal's evidence group, and
    for a deal without interactions never narrower than the spread over all deals."""
    low, high = intervals["engaged" if engaged else "no_interactions"]
    low, high = max(0.0, log_days + low), log_days + high
    if not engaged:
        low, high = min(low, intervals["marginal_log_days"][0]), max(high, intervals["marginal_log_days"][1])
    return low, high


def describe_feature(name: str, value: float) -> str:
    label, kind = _TABULAR_TEXT[name]
    return f"{label}: {_as_read(kind, value)}"


def _as_read(kind: str, value: float) -> str:
    if kind in ("count", "days"):
        return f"{np.expm1(value):.0f}"
    if kind == "share":
        return f"{value:.0%}"
    if kind == "flag":
        return "yes" if value > 0.5 else "no"
    return f"{value:.0f}"


def describe_person(row: np.ndarray) -> str:
    """A buyer-side person as evidence, by role (never by identity)."""
    named = dict(zip(PERSON_FEATURES, row.tolist()))
    level = next((k[6:] for k, v in named.items() if k.startswith("level_") and v > 0.5), "unknown level")
    function = next((k[9:] for k, v in named.items() if k.startswith("function_") and v > 0.5), "unknown function")
    role = next((k[5:] for k, v in named.items() if k.startswith("role_") and v > 0.5), "not_listed").replace("_", " ")
    text = f"{level.replace('_', '-')} {function} ({role}), {np.expm1(named['log_interactions']):.0f} interactions"
    if named["log_prior_tie_events"] > 0:
        text += f"; knew your team before the deal ({np.expm1(named['log_prior_tie_events']):.0f} earlier interactions)"
    return text


def missing_evidence(deal: Deal, features: DealFeatures) -> list[str]:
    tab = dict(zip(TABULAR_FEATURES, features.tabular.tolist()))
    missing = []
    if tab["has_interactions"] == 0:
        missing.append(
            "no interactions recorded on this deal (connect email and calendar sync): estimates rest on "
            "account, amount and dates only, so the intervals are wider"
        )
    if not deal.contacts:
        missing.append("no contacts listed on the deal")
    if tab["amount_known"] == 0:
        missing.append("no deal amount")
    if not deal.size_band:
        missing.append("account size unknown")
    if not deal.industry:
        missing.append("account industry unknown")
    return missing
