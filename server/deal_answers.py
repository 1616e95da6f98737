"""Every open deal's answers, computed by the serving state's refresh loop so that
`EstimateDealStage` and `ListDealSignals` answer from memory: a forward pass of the deal model over
a deal and its occlusion variants, or ranking the signals around its account, costs milliseconds;
a lookup microseconds. Signals are kept up to `MAX_SIGNALS`, most relevant first, as the deal's
tenant may see them; a request for fewer takes the first ones (the ranking does not depend on how
many are asked for).

A refresh computes again only the deals whose records or surroundings it read again (the deal
index's `touched`); every open deal is computed again when the index was read whole, when the deal
model changes, and once the answers are `MAX_AGE_S` old, so that what counts days (since the last
interaction, since a signal: its relevance decays) follows the clock. A deal without a kept answer
(closed when they were computed, reopened since) is answered by computing it then."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from google.protobuf import timestamp_pb2

from gnn.deal_scoring import DealEstimate, DealScorer
from gnn.signals import rank_signals
from graph.deal_bundle import Deal, DealBundle
from relgraph.v1 import buyer_intelligence_pb2 as pb
from relgraph.v1 import common_pb2
from server.deal_index import DealIndex, DealKey
from server.visibility import may_identify, person_view

log = logging.getLogger("relgraph.server")
MAX_AGE_S = 3600
MAX_SIGNALS = 100
_Answer = TypeVar("_Answer")


@dataclass(frozen=True)
class DealAnswers:
    """The open deals of `index`: their estimates by deal-model `version` (none without a deal
    model) and their ranked signals; every open deal's computed at `as_of` or later (the touched
    ones at the refresh that touched them)."""

    index: DealIndex | None = None
    version: str = ""
    as_of: int = 0
    estimates: dict[DealKey, DealEstimate] = field(default_factory=dict)
    signals: dict[DealKey, list[pb.DealSignal]] = field(default_factory=dict)


def answer_open_deals(previous: DealAnswers, index: DealIndex, scorer: DealScorer | None, now: int) -> DealAnswers:
    """`previous` brought up to `index` and `scorer` at `now` (the module's docstring)."""
    version = scorer.version if scorer is not None else ""
    stale = previous.version != version or now - previous.as_of >= MAX_AGE_S
    if not stale and previous.index is index:
        return previous
    whole = stale or index.touched is None
    again = {(d.tenant, d.deal_id) for d in index.network.deals} if whole else set(index.touched or ())

    def kept(answers: dict[DealKey, _Answer]) -> dict[DealKey, _Answer]:
        return {} if whole else {k: a for k, a in answers.items() if k not in again and index.find(*k)}

    estimates, signals = kept(previous.estimates), kept(previous.signals)
    for view, deals in _open_deals(index, again, now).values():
        if scorer is not None:
            estimates |= _each(deals, partial(scorer.estimates, view, t=now))
        signals |= _each(deals, partial(_kept_signals, view, as_of=now))
    return DealAnswers(index, version, now if whole else previous.as_of, estimates, signals)


def _each(deals: list[Deal], answer: Callable[[list[Deal]], list[_Answer]]) -> dict[DealKey, _Answer]:
    """`answer` of the deals, all at once; if that fails, deal by deal, leaving out (and logging)
    any deal that cannot be answered: its requests then answer, or fail, as they would without
    kept answers, and one such record never stops the refresh loop."""
    try:
        return dict(zip(((d.tenant, d.deal_id) for d in deals), answer(deals), strict=True))
    except Exception:
        answered = {}
        for deal in deals:
            try:
                answered[(deal.tenant, deal.deal_id)] = answer([deal])[0]
            except Exception:
                log.exception("deal %s of %s: no kept answer (requests compute their own)", deal.deal_id, deal.tenant)
        return answered


def _kept_signals(data: DealBundle, deals: list[Deal], as_of: int) -> list[list[pb.DealSignal]]:
    return [signal_messages(data, deal, as_of, MAX_SIGNALS) for deal in deals]


def _open_deals(index: DealIndex, keys: set[DealKey], now: int) -> dict[str, tuple[DealBundle, list[Deal]]]:
    """Those of the deals that are open at `now`, by tenant, with the tenant's view of them."""
    by_tenant: dict[str, tuple[DealBundle, list[Deal]]] = {}
    for key in sorted(keys):
        found = index.find(*key)
        if found is not None and not 0 <= found[1].closed <= now:
            by_tenant.setdefault(key[0], (found[0], []))[1].append(found[1])
    return by_tenant


def signal_messages(data: DealBundle, deal: Deal, as_of: int, limit: int) -> list[pb.DealSignal]:
    """The `limit` most relevant signals around the deal at `as_of`, about people its tenant may
    see, each with who raised it as the tenant may see them."""

    def visible(pid: str) -> bool:
        held, shared = _visibility(data, deal, pid)
        return may_identify(held=held, shared=shared, named=False)

    return [
        pb.DealSignal(
            kind=s.kind,
            topic=s.topic,
            value=s.value,
            time=timestamp_pb2.Timestamp(seconds=int(s.ts)),
            who=_person(data, deal, s.pid, as_of),
            why=s.why,
            relevance=s.relevance,
        )
        for s in rank_signals(data, deal, as_of, limit, visible)
    ]


def _visibility(data: DealBundle, deal: Deal, pid: str) -> tuple[bool, bool]:
    """(held, shared) of a person for the deal's tenant: the inputs of the visibility rule."""
    return deal.tenant in data.held_by.get(pid, frozenset()), pid in data.shared


def _person(data: DealBundle, deal: Deal, pid: str, as_of: int) -> common_pb2.PersonView:
    """Who raised a signal, as the deal's tenant may see them; described by their job at the time."""
    if not pid:
        return common_pb2.PersonView()
    job = data.job_at(pid, as_of)
    on_account = job is not None and job.cid == deal.cid
    held, shared = _visibility(data, deal, pid)
    return common_pb2.PersonView(
        **person_view(
            pid=pid,
            held=held,
            shared=shared,
            named=False,
            own_member=False,
            title_level=job.level if job else "",
            function=job.function if job else "",
            company_domain=job.cid if job else "",
            company_size_band=deal.size_band if on_account else "",
            company_industry=deal.industry if on_account else "",
        ).__dict__
    )
