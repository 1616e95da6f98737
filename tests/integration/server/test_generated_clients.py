"""The Go and TypeScript clients generated from proto/ (bin/gen-clients) call the real server with
a real key, and get what the Python client gets. A language whose toolchain is absent is skipped,
saying so; on this project's machines both are present, so both run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from relgraph.client import ApiError
from relgraph.v1 import buyer_intelligence_pb2, warm_paths_pb2
from tests.integration.server.conftest import Served, assert_same_answer

pytestmark = pytest.mark.neo4j
REPO = Path(__file__).resolve().parents[3]
CLIENTS = {
    "go": (["go"], [str(REPO / "clients/go/bin/relgraph-client")], "-"),
    "ts": (["node", "npm"], [str(REPO / "clients/ts/node_modules/.bin/tsx"), str(REPO / "clients/ts/main.ts")], "--"),
}


@pytest.fixture(scope="module")
def generated() -> list[str]:
    """The languages bin/gen-clients generated and built (it installs its plugins once)."""
    done = subprocess.run(["bash", str(REPO / "bin/gen-clients")], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


@pytest.mark.parametrize("language", sorted(CLIENTS))
def test_a_generated_client_gets_the_python_clients_answers(
    served: Served, generated: list[str], language: str
) -> None:
    tools, command, dash = CLIENTS[language]
    absent = [tool for tool in tools if shutil.which(tool) is None]
    if absent:
        pytest.skip(f"{', '.join(absent)} absent: the {language} client cannot be built here")
    assert language in generated
    target = json.loads((served.network / "ingest" / "deal_contacts.jsonl").read_text().partition("\n")[0])["email"]
    deal = json.loads((served.network / "ingest" / "deals.jsonl").read_text().partition("\n")[0])["id"]
    done = subprocess.run(
        [*command, f"{dash}server", served.address, f"{dash}target-email", target, f"{dash}deal", deal],
        env={**os.environ, "RELGRAPH_KEY": served.keys["member_a"]},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines: dict[str, dict[str, Any]] = {line["rpc"]: line for line in map(json.loads, done.stdout.splitlines())}

    with served.client("member_a") as member:
        paths = member.find_warm_paths(warm_paths_pb2.FindWarmPathsRequest(target_email=target))
        theirs = json_format.ParseDict(lines["FindWarmPaths"]["answer"], warm_paths_pb2.FindWarmPathsResponse())
        assert paths.paths
        theirs.snapshot_age_seconds = paths.snapshot_age_seconds
        assert_same_answer(theirs, paths)
        try:
            stage: Any = member.estimate_deal_stage(buyer_intelligence_pb2.EstimateDealStageRequest(deal_id=deal))
        except ApiError as error:
            stage = error
    if isinstance(stage, ApiError):  # no deal model is promoted in this world: the same refusal
        assert lines["EstimateDealStage"]["error"] == {
            "code": grpc.StatusCode[stage.code].value[0],
            "message": stage.message,
        }
    else:
        answer = lines["EstimateDealStage"]["answer"]
        assert json_format.ParseDict(answer, buyer_intelligence_pb2.EstimateDealStageResponse()) == stage
