"""The `relgraph` command as a user runs it, against the real Neo4j."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from graph.store import GraphStore

pytestmark = pytest.mark.neo4j


def relgraph(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["relgraph", *args], env=env, capture_output=True, text=True, timeout=300)


def test_ingest_stats_erase_and_cypher(store: GraphStore, cli_env: dict[str, str], small_network: Path) -> None:
    done = relgraph(cli_env, "ingest", str(small_network / "ingest"), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["rejected"] == 0 and summary["events_per_s"] > 0

    result = json.loads(relgraph(cli_env, "stats", "--json").stdout)
    assert result["nodes"]["Person"] > 0 and len(result["tenants"]) == 3
    tenant = next(iter(result["tenants"]))
    scoped = json.loads(relgraph(cli_env, "stats", "--tenant", tenant, "--json").stdout)
    assert scoped["tenants"] == {tenant: result["tenants"][tenant]}

    email = json.loads((small_network / "ingest" / "members.jsonl").read_text().partition("\n")[0])["email"]
    unscoped = relgraph(cli_env, "erase", "--email", email)
    assert unscoped.returncode == 1 and "--tenant T" in unscoped.stderr and "--network" in unscoped.stderr
    first = relgraph(cli_env, "erase", "--email", email, "--network")
    assert first.returncode == 0 and first.stdout.startswith("erased person")
    second = relgraph(cli_env, "erase", "--email", email, "--network")
    assert second.returncode == 0 and second.stdout.startswith("nothing to erase")

    rows = json.loads(relgraph(cli_env, "cypher", "MATCH (p:Person) RETURN count(p) AS n", "--json").stdout)
    assert rows == [{"n": result["nodes"]["Person"] - 1}]
    refused = relgraph(cli_env, "cypher", "MATCH (p:Person) DETACH DELETE p")
    assert refused.returncode == 1 and "read-only" in refused.stderr


def test_bad_input_gives_a_clear_error_and_exit_code(
    store: GraphStore, cli_env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "interactions.jsonl"
    bad.write_text('{"kind": "interaction", "tenant": "acme", "type": "email", "ts": 1, "from": "a@x.example"}\n')
    done = relgraph(cli_env, "ingest", str(bad))
    assert done.returncode == 2
    assert f"{bad}:1: missing required field 'to'" in done.stdout
    missing = relgraph(cli_env, "ingest", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 1 and "no such file" in missing.stderr
