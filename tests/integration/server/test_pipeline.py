"""PipelineService on the real server: the member's own tenant only, the same answers as the
operator's `relgraph audit hygiene` and `relgraph forecast` reading Neo4j, refused to partners and
for bad fields."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from graph.pseudonymize import Pseudonymizer
from graph.store import connect
from jobs.generate import AS_OF
from relgraph.client import ApiError, Client
from relgraph.query import response_json
from relgraph.v1 import buyer_intelligence_pb2, ingest_pb2, pipeline_pb2
from server.app import create_server
from server.auth import create_api_key
from tests.integration.server.conftest import PEPPER, Served
from tests.support.serving import untrained_models

pytestmark = pytest.mark.neo4j


def _relgraph(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run(["relgraph", *args, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_a_member_audits_its_own_tenant_as_the_operator_does(served: Served, cli_env: dict[str, str]) -> None:
    a, b = served.tenants
    deals = [json.loads(line) for line in (served.network / "ingest" / "deals.jsonl").read_text().splitlines()]
    open_b = {d["id"] for d in deals if d["tenant"] == b and "outcome" not in d}

    with served.client("member_b") as member:
        health = member.get_pipeline_health(pipeline_pb2.GetPipelineHealthRequest(sample_size=200))
    assert health.open_deals == len(open_b) > 0
    assert {d.deal_id for d in health.sample} <= open_b and len(health.sample) == min(200, len(open_b))
    assert 0 <= health.score <= 1 and health.threshold == 0.7 and health.below_threshold == (health.score < 0.7)
    assert any(line.startswith("stage agreement") for line in health.not_audited)  # no deal model here

    env = {**cli_env, "RELGRAPH_SERVER": served.address, "RELGRAPH_KEY": served.keys["member_a"]}
    over_cli = _relgraph(env, "query", "pipeline-health")
    operator = _relgraph(env, "audit", "hygiene", "--tenant", a)
    for answer in (over_cli, operator):
        answer.pop("model_version")
    assert over_cli == operator and over_cli["open_deals"] == sum(
        1 for d in deals if d["tenant"] == a and "outcome" not in d
    )


def test_partners_and_bad_fields_are_refused(served: Served) -> None:
    with served.client("partner_a") as partner, pytest.raises(ApiError) as info:
        partner.get_pipeline_health()
    assert info.value.code == "PERMISSION_DENIED"
    with served.client("member_a") as member, pytest.raises(ApiError) as info:
        member.get_pipeline_health(pipeline_pb2.GetPipelineHealthRequest(stale_days=-1, sample_size=1000))
    assert info.value.code == "INVALID_ARGUMENT"
    assert {f for f, _ in info.value.field_violations} == {"stale_days", "sample_size"}


def test_the_forecast_over_grpc_is_the_operators_and_the_tenants_own(
    served: Served, cli_env: dict[str, str], tmp_path: Path, pseudo: Pseudonymizer
) -> None:
    """With a deal model promoted (an untrained one: the numbers are the same code's either way)."""
    _, b = served.tenants  # the tenant with open deals in the small network
    untrained_models(tmp_path / "models")
    config = dataclasses.replace(
        served.config, home=tmp_path, server=dataclasses.replace(served.config.server, as_of=AS_OF, http_port=0)
    )
    deals = [json.loads(line) for line in (served.network / "ingest" / "deals.jsonl").read_text().splitlines()]
    team_of = {
        record["email"]: record["team"]
        for line in (served.network / "ingest" / "members.jsonl").read_text().splitlines()
        if (record := json.loads(line))["tenant"] == b
    }
    open_by_team: dict[str, set[str]] = {}
    for d in deals:
        if d["tenant"] == b and "outcome" not in d:
            open_by_team.setdefault(team_of[d["owner"]], set()).add(d["id"])
    team = max(open_by_team, key=lambda t: (len(open_by_team[t]), t))  # a team with open deals, one without
    idle = min(set(team_of.values()) - set(open_by_team))
    store = connect(served.config)
    keys = {t: create_api_key(store, PEPPER, tenant=b, role="member", scopes=[f"team:{t}"])[0] for t in (team, idle)}
    env = {**cli_env, "RELGRAPH_HOME": str(tmp_path)}
    server, port = create_server(config, store=store)
    server.start()
    try:
        scoped = {}  # each team's pipeline only: (forecast, health, proposals)
        for name, key in keys.items():
            with Client(f"127.0.0.1:{port}", key) as client:
                scoped[name] = (
                    client.forecast_bookings(pipeline_pb2.ForecastBookingsRequest(period="month", periods=3)),
                    client.get_pipeline_health(pipeline_pb2.GetPipelineHealthRequest()),
                    client.list_proposed_updates(pipeline_pb2.ListProposedUpdatesRequest(limit=1000)),
                )
        # The team's deals answer; another team's are unknown to it, and a team key cannot write.
        theirs = min(open_by_team[team])
        with Client(f"127.0.0.1:{port}", keys[team]) as client:
            assert client.estimate_deal_stage(buyer_intelligence_pb2.EstimateDealStageRequest(deal_id=theirs))
        with Client(f"127.0.0.1:{port}", keys[idle]) as client:
            for call in (
                lambda: client.estimate_deal_stage(buyer_intelligence_pb2.EstimateDealStageRequest(deal_id=theirs)),
                lambda: client.list_deal_signals(buyer_intelligence_pb2.ListDealSignalsRequest(deal_id=theirs)),
            ):
                with pytest.raises(ApiError) as info:
                    call()
                assert info.value.code == "NOT_FOUND"
            with pytest.raises(ApiError) as info:
                client.ingest_events([ingest_pb2.IngestEventsRequest()])
            assert info.value.code == "PERMISSION_DENIED"
        with Client(f"127.0.0.1:{port}", served.keys["member_b"]) as member:
            answer = member.forecast_bookings(
                pipeline_pb2.ForecastBookingsRequest(period="month", periods=3, by_rep=True)
            )
            by_team = member.forecast_bookings(
                pipeline_pb2.ForecastBookingsRequest(period="month", periods=3, by_team=True)
            )
            proposed = member.list_proposed_updates(pipeline_pb2.ListProposedUpdatesRequest(limit=1000))
            with pytest.raises(ApiError) as info:
                member.list_proposed_updates(pipeline_pb2.ListProposedUpdatesRequest(rep_email="not an email"))
            assert info.value.code == "INVALID_ARGUMENT" and info.value.field_violations[0][0] == "rep_email"
            # A rep's decision, recorded by the operator's command, is in the server's answer after a refresh.
            first = proposed.updates[0]
            assert not first.decision and not proposed.acceptance
            done = subprocess.run(
                ["relgraph", "proposals", "decide", first.proposal_id, "reject", "--tenant", b, "--as-of", str(AS_OF)],
                env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert done.returncode == 0 and "recorded: reject" in done.stdout, done.stderr
            server.holder.refresh()
            decided = member.list_proposed_updates(pipeline_pb2.ListProposedUpdatesRequest(limit=1000))
            assert [(u.proposal_id, u.decision) for u in decided.updates if u.decision] == [
                (first.proposal_id, "reject")
            ]
            assert [(a.field, a.decided, a.accepted_share) for a in decided.acceptance] == [(first.field, 1, 0.0)]
            # Neither another tenant nor a team that does not own the deal sees it.
            for key in (served.keys["member_a"], keys[idle]):
                with Client(f"127.0.0.1:{port}", key) as other:
                    answer_to_other = other.list_proposed_updates(pipeline_pb2.ListProposedUpdatesRequest(limit=1000))
                    assert not answer_to_other.acceptance and not any(u.decision for u in answer_to_other.updates)
        with Client(f"127.0.0.1:{port}", served.keys["partner_a"]) as partner, pytest.raises(ApiError) as info:
            partner.forecast_bookings()
        assert info.value.code == "PERMISSION_DENIED"
    finally:
        server.stop()
    operator = _relgraph(env, "forecast", "--tenant", b, "--period", "month", "--periods", "3", "--by", "rep",
                         "--as-of", str(AS_OF))  # fmt: skip
    assert operator == json.loads(response_json(answer))
    teams = _relgraph(env, "forecast", "--tenant", b, "--period", "month", "--periods", "3", "--by", "team",
                      "--as-of", str(AS_OF))  # fmt: skip
    assert teams == json.loads(response_json(by_team))
    assert answer.open_deals == sum(1 for d in deals if d["tenant"] == b and "outcome" not in d) > 0
    team_forecast, team_health, team_proposals = scoped[team]
    assert 0 < team_forecast.open_deals == team_health.open_deals == len(open_by_team[team]) <= answer.open_deals
    assert [u.proposal_id for u in team_proposals.updates] == [
        u.proposal_id for u in proposed.updates if u.deal_id in open_by_team[team]
    ]
    idle_forecast, idle_health, idle_proposals = scoped[idle]
    assert idle_forecast.open_deals == idle_health.open_deals == 0 and not idle_proposals.updates
    assert proposed.open_deals == answer.open_deals and proposed.updates
    assert {u.deal_id for u in proposed.updates} <= {d["id"] for d in deals if d["tenant"] == b}

    # The operator's queue is the same proposals, with the decision recorded above, counted.
    queue = _relgraph(env, "proposals", "--tenant", b, "--limit", "1000", "--as-of", str(AS_OF))
    assert [p["proposal_id"] for p in queue["proposals"]] == [u.proposal_id for u in proposed.updates]
    assert queue["proposals"][0]["decision"] == "reject"
    assert queue["acceptance"] == {first.field: {"decided": 1.0, "accepted": 0.0}}
    unknown = subprocess.run(
        ["relgraph", "proposals", "decide", "0" * 16, "accept", "--tenant", b, "--as-of", str(AS_OF)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert unknown.returncode == 1 and "no current proposal" in unknown.stderr
    members = {
        pseudo.pid(json.loads(line)["email"])
        for line in (served.network / "ingest" / "members.jsonl").read_text().splitlines()
        if json.loads(line)["tenant"] == b
    }
    assert answer.by_rep and {rep.rep_pid for rep in answer.by_rep} <= members
    # By team: the owners' teams in the tenant's member records, adding up to the whole forecast.
    member_teams = {
        json.loads(line)["team"]
        for line in (served.network / "ingest" / "members.jsonl").read_text().splitlines()
        if json.loads(line)["tenant"] == b
    }
    assert by_team.by_team and not by_team.by_rep and {t.team for t in by_team.by_team} <= member_teams
    assert sum(t.reps for t in by_team.by_team) == len(answer.by_rep)
    for i, period in enumerate(answer.periods):
        assert sum(t.expected[i] for t in by_team.by_team) == pytest.approx(period.expected)
    assert [p.label for p in answer.periods] == ["2026-06", "2026-07", "2026-08"][: len(answer.periods)]
    for p in answer.periods:
        assert 0 <= p.p10 <= p.p50 <= p.p90 and p.expected >= 0
