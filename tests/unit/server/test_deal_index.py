"""The serving state's deal index (server/deal_index.py) over the in-memory graph: each tenant sees
its deals as its own scoped read would, and a refresh reads only the deals that changed, yet gives
what a full read gives."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from gnn.deal_scoring import DealEstimate
from gnn.model_kinds import DEAL
from gnn.signals import rank_signals
from graph.deal_bundle import Deal, DealBundle
from graph.ingest import read_records
from graph.memory_reader import InMemoryGraph
from graph.pseudonymize import Pseudonymizer
from graph.reader import TenantScope, TiePair, Ties
from jobs.generate import AS_OF, GeneratorConfig, generate
from server import snapshot as snapshots
from server.deal_answers import MAX_AGE_S, DealAnswers, answer_open_deals
from server.deal_index import DealIndex, Watermarks, read_deal_index, refresh_deal_index
from tests.support.plain import plain
from tests.support.serving import untrained_models


class CountingReader(InMemoryGraph):
    """The in-memory graph, counting what each deal read and each ties read asks for."""

    def __init__(self, pseudo: Pseudonymizer) -> None:
        super().__init__(pseudo)
        self.deals_read: list[int] = []
        self.people_read: list[int] = []
        self.ties_read: list[int] = []
        self.pairs_read: list[int] = []

    def deals(self, scope: TenantScope, deal_ids: Sequence[str] | None = None) -> list[Deal]:
        deals = super().deals(scope, deal_ids)
        self.deals_read.append(len(deals))
        return deals

    def deal_surroundings(self, pids: Sequence[str], cids: Sequence[str], scope: TenantScope) -> DealBundle:
        self.people_read.append(len(pids))
        return super().deal_surroundings(pids, cids, scope)

    def ties_to_members(self, pids: Sequence[str], scope: TenantScope) -> dict[tuple[str, str], list[Ties]]:
        self.ties_read.append(len(pids))
        return super().ties_to_members(pids, scope)

    def ties_between(self, pairs: Sequence[TiePair], scope: TenantScope) -> dict[tuple[str, str], list[Ties]]:
        self.pairs_read.append(len(pairs))
        return super().ties_between(pairs, scope)


def _records(network: Path) -> list[dict[str, Any]]:
    return [record for path in sorted((network / "ingest").glob("*.jsonl")) for _, record, _ in read_records(path)]


def _index(reader: InMemoryGraph) -> DealIndex:
    return read_deal_index(reader)


class Refresher:
    """A deal index kept current as the serving state keeps it: from the changes its snapshot reads."""

    def __init__(self, reader: InMemoryGraph) -> None:
        self.reader = reader
        self.snapshot = snapshots.build(reader)
        self.index = read_deal_index(reader)

    def refresh(self) -> DealIndex:
        changes = snapshots.read_changes(self.snapshot, self.reader)
        self.snapshot = snapshots.refresh(self.snapshot, self.reader, changes)
        self.index = refresh_deal_index(self.index, self.reader, changes, self.snapshot)
        return self.index


def _content(index: DealIndex) -> dict[str, Any]:
    """What the index holds, independent of the order deals were read in."""
    network = index.network
    return {
        "deals": sorted((plain(d) for d in network.deals), key=lambda d: (d["tenant"], d["deal_id"])),
        **{f: plain(getattr(network, f)) for f in ("jobs", "staff", "signals", "ties", "held_by", "shared")},
    }


def _changes(records: list[dict[str, Any]]) -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
    """A deal, and one change of each kind that touches it: its record, a signal at its account, a
    tie of its contact, an interaction logged on it, a new contact, a new hire at the account."""
    deal = next(r for r in records if r["kind"] == "deal")
    staff = next(r for r in records if r["kind"] == "employment" and r["company"] == deal["account"])
    contact = next(r for r in records if r["kind"] == "deal_contact" and r["deal"] == deal["id"])
    member = next(r for r in records if r["kind"] == "member" and r["tenant"] == deal["tenant"])
    return deal, (
        {**deal, "amount": 1234.5},  # the deal's own record
        {  # someone at its account answers a poll
            "kind": "signal",
            "tenant": deal["tenant"],
            "id": "S-new-1",
            "type": "poll_answer",
            "ts": AS_OF - 3600,
            "email": staff["email"],
            "topic": "contract_end",
            "value": "10-12_months",
        },
        {  # a member emails a buyer-side contact of the deal (a tie the deal reads), outside the deal
            "kind": "interaction",
            "tenant": deal["tenant"],
            "id": "m-new-1",
            "type": "email",
            "ts": AS_OF - 7200,
            "from": member["email"],
            "to": [contact["email"]],
        },
        {  # the member emails the contact about the deal: a row logged on it
            "kind": "interaction",
            "tenant": deal["tenant"],
            "id": "m-new-2",
            "type": "email",
            "ts": AS_OF - 3600,
            "from": member["email"],
            "to": [contact["email"]],
            "deal": deal["id"],
        },
        {  # someone at the account, with ties of their own, is listed on the deal
            "kind": "deal_contact",
            "tenant": deal["tenant"],
            "deal": deal["id"],
            "email": staff["email"],
            "role": "champion",
        },
        {  # a new person starts at the account
            "kind": "employment",
            "tenant": deal["tenant"],
            "email": "new.hire@" + deal["account"],
            "company": deal["account"],
            "from": AS_OF - 86_400,
            "title_level": "vp",
            "function": "operations",
        },
    )


def test_each_tenant_sees_its_deals_as_its_own_scoped_read_would(small_network: Path, pseudo: Pseudonymizer) -> None:
    graph = InMemoryGraph(pseudo)
    graph.ingest(_records(small_network))
    index = _index(graph)
    deals = graph.deal_bundle(TenantScope(None)).deals
    assert index.deals == len(deals) > 0
    for deal in deals:
        found = index.find(deal.tenant, deal.deal_id)
        assert found is not None
        view, served = found
        scoped = graph.deal_bundle(TenantScope.of(deal.tenant), [deal.deal_id])
        assert plain(served) == plain(scoped.deals[0])
        for data in (view, scoped):  # only the tenant's own signals and ties
            assert {t for t, _ in (*data.signals, *data.ties)} <= {deal.tenant}
        assert rank_signals(view, deal, AS_OF, 100, lambda _: True) == rank_signals(
            scoped, scoped.deals[0], AS_OF, 100, lambda _: True
        )
        others = {t for t in {d.tenant for d in deals} if t != deal.tenant}
        assert all(index.find(t, deal.deal_id) is None or index.find(t, deal.deal_id)[1].tenant == t for t in others)


def test_a_refresh_reads_only_the_changed_deals_and_equals_a_full_read(
    small_network: Path, pseudo: Pseudonymizer
) -> None:
    records = _records(small_network)
    graph = CountingReader(pseudo)
    graph.ingest(records)
    refresher = Refresher(graph)
    index = refresher.index
    assert refresher.refresh() is index  # nothing changed: nothing read

    deal, changes = _changes(records)
    for change in changes:
        for reads in (graph.deals_read, graph.people_read, graph.ties_read, graph.pairs_read):
            reads.clear()
        graph.ingest([change])
        index = refresher.refresh()
        if change["kind"] in ("deal", "deal_contact"):  # that deal alone is read again
            assert graph.deals_read == [1]
        else:  # a person, a relationship or a logged row: no deal is read again, only what changed
            assert graph.deals_read == [] and (graph.people_read or graph.ties_read or graph.pairs_read), change
        if change["kind"] == "interaction":  # only the contact's tie to the member (on no buyer side)
            assert graph.ties_read == [] and graph.pairs_read == [1], change
            assert graph.people_read == ([1] if change.get("deal") else []), change  # the contact's own data
        assert _content(index) == _content(_index(graph)), change
    _, served = index.find(deal["tenant"], deal["id"]) or (None, None)
    assert served is not None and served.amount == 1234.5
    # Rows it holds read again (rows logged while it was read whole, at the next refresh) add nothing.
    refresher.index = dataclasses.replace(index, watermarks=Watermarks(deals=index.watermarks.deals, logged=0))
    assert _content(refresher.refresh()) == _content(_index(graph))


def test_reps_decisions_reach_the_index_at_the_next_refresh_and_touch_no_deal(
    small_network: Path, pseudo: Pseudonymizer
) -> None:
    graph = InMemoryGraph(pseudo)
    graph.ingest(_records(small_network))
    refresher = Refresher(graph)
    graph.decide("t1", "p-1", "D-1", "stage", "accept")
    graph.decide("t2", "p-1", "D-7", "contact", "reject")
    graph.decide("t1", "p-1", "D-1", "stage", "reject")  # told again: the last counts
    index = refresher.refresh()
    assert index.touched == frozenset() and index.decisions == _index(graph).decisions
    assert {(t, pid, d.decision) for t, by_id in index.decisions.items() for pid, d in by_id.items()} == {
        ("t1", "p-1", "reject"),
        ("t2", "p-1", "reject"),
    }
    assert refresher.refresh() is index  # nothing new: nothing read


def _same_estimate(a: DealEstimate, b: DealEstimate) -> bool:
    """Equal up to the last bits of a forward pass (batches of other sizes round differently)."""
    close = (a.close_p10, a.close_p50, a.close_p90), (b.close_p10, b.close_p50, b.close_p90)
    return (
        a.win_probability == pytest.approx(b.win_probability, abs=1e-5)
        and a.stages == pytest.approx(b.stages, abs=1e-5)
        and all(abs(x - y) <= 60 for x, y in zip(*close))
        and [d for d, _ in a.evidence] == [d for d, _ in b.evidence]
        and (a.estimated_stage, a.crm_stage, a.missing_evidence) == (b.estimated_stage, b.crm_stage, b.missing_evidence)
    )


def test_answers_kept_up_by_refreshes_equal_answering_every_deal_again(pseudo: Pseudonymizer, tmp_path: Path) -> None:
    generate(GeneratorConfig(people=600, tenants=3, seed=3, deals_per_100_people=20), tmp_path / "network")
    records = _records(tmp_path / "network")
    graph = InMemoryGraph(pseudo)
    graph.ingest(records)
    scorer = DEAL.load_promoted(untrained_models(tmp_path))
    refresher = Refresher(graph)
    index = refresher.index
    answers = answer_open_deals(DealAnswers(), index, scorer, AS_OF)
    open_deals = [d for d in index.network.deals if not 0 <= d.closed <= AS_OF]
    assert len(answers.estimates) == len(answers.signals) == len(open_deals) > 10
    assert sum(map(len, answers.signals.values())) > 20
    assert answer_open_deals(answers, index, scorer, AS_OF + 60) is answers  # nothing changed
    deal, changes = _changes(records)
    for change in changes:
        graph.ingest([change])
        before, index = answers, refresher.refresh()
        answers = answer_open_deals(answers, index, scorer, AS_OF)
        touched = index.touched or frozenset()
        assert (deal["tenant"], deal["id"]) in touched and len(touched) < len(index.network.deals) / 4, change
        untouched = before.estimates.keys() - touched
        assert untouched and all(answers.estimates[k] is before.estimates[k] for k in untouched)  # not computed again
        assert all(answers.signals[k] is before.signals[k] for k in untouched)
        again = answer_open_deals(DealAnswers(), _index(graph), scorer, AS_OF)
        assert answers.estimates.keys() == again.estimates.keys() == answers.signals.keys()
        assert all(_same_estimate(answers.estimates[k], again.estimates[k]) for k in again.estimates), change
        assert answers.signals == again.signals, change
    an_hour_on = answer_open_deals(answers, index, scorer, AS_OF + MAX_AGE_S)
    assert all(e.as_of == AS_OF + MAX_AGE_S for e in an_hour_on.estimates.values())  # the clock moved: all again
    assert answer_open_deals(an_hour_on, index, None, AS_OF + MAX_AGE_S).signals  # signals need no model


def test_a_deal_that_cannot_be_answered_is_left_out_and_the_rest_answered(
    pseudo: Pseudonymizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate(GeneratorConfig(people=600, tenants=3, seed=3, deals_per_100_people=20), tmp_path / "network")
    graph = InMemoryGraph(pseudo)
    graph.ingest(_records(tmp_path / "network"))
    scorer = DEAL.load_promoted(untrained_models(tmp_path))
    index = _index(graph)
    open_keys = {(d.tenant, d.deal_id) for d in index.network.deals if not 0 <= d.closed <= AS_OF}
    bad = min(open_keys)
    real = scorer.estimates

    def estimates(data: DealBundle, deals: list[Deal], t: int) -> list[DealEstimate]:
        if any((d.tenant, d.deal_id) == bad for d in deals):
            raise ValueError("a record the model cannot read")
        return real(data, deals, t)

    monkeypatch.setattr(scorer, "estimates", estimates)
    answers = answer_open_deals(DealAnswers(), index, scorer, AS_OF)
    assert answers.estimates.keys() == open_keys - {bad}
    assert answers.signals.keys() == open_keys
