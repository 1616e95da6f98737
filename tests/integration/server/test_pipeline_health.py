"""GetPipelineHealth on the real server: the member's own tenant only, the same audit as the
operator's `relgraph audit hygiene` reading Neo4j, refused to partners and for bad fields."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from relgraph.client import ApiError
from relgraph.v1 import pipeline_pb2
from tests.integration.server.conftest import Served

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
