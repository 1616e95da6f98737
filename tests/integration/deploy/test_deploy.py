"""The deployment checks (bin/lint-deploy, deploy/validate.py) pass on deploy/ as it is, and catch a
chart or compose file that is broken: an unknown field in a Deployment, a bad RayJob field, a
compose service publishing a port nothing listens on. The chart's config file is one relgraph reads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from core.config import load_config

REPO = Path(__file__).resolve().parents[3]


def _lint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "bin" / "lint-deploy"), *args], capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="module")
def helm() -> str:
    """The helm binary bin/lint-deploy pins, installing it (through the Go module proxy) if needed."""
    bin_dir = Path(os.environ.get("RELGRAPH_CACHE", Path.home() / ".cache" / "relgraph")) / "bin"
    if not list(bin_dir.glob("helm-*")):
        assert _lint().returncode == 0
    pinned = re.search(r"^helm_version=(\S+)$", (REPO / "bin" / "lint-deploy").read_text(), re.M)
    assert pinned
    return str(bin_dir / f"helm-{pinned[1]}")


@pytest.fixture
def chart(tmp_path: Path) -> Path:
    copy = tmp_path / "relgraph"
    shutil.copytree(REPO / "deploy" / "helm" / "relgraph", copy)
    return copy


def test_the_deployment_files_pass() -> None:
    run = _lint()
    assert run.returncode == 0, run.stderr
    assert "chart and compose valid" in run.stdout


def test_an_unknown_deployment_field_is_caught(chart: Path) -> None:
    deployment = chart / "templates" / "deployment.yaml"
    deployment.write_text(deployment.read_text().replace("  selector:\n", "  replicaz: 3\n  selector:\n", 1))
    run = _lint("--chart", str(chart))
    assert run.returncode == 1 and "Deployment/relgraph" in run.stderr and "replicaz" in run.stderr


def test_a_bad_rayjob_field_is_caught(chart: Path) -> None:
    helpers = chart / "templates" / "_helpers.tpl"
    helpers.write_text(
        helpers.read_text().replace("shutdownAfterJobFinishes: true", "shutdownAfterJobFinishes: yes-please")
    )
    run = _lint("--chart", str(chart))
    assert run.returncode == 1 and "RayJob" in run.stderr and "shutdownAfterJobFinishes" in run.stderr


def test_a_compose_port_nothing_listens_on_is_caught(tmp_path: Path) -> None:
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    compose["services"]["server"]["ports"].append("127.0.0.1:8081:8081")
    compose["services"]["demo"]["depends_on"]["ghost"] = {"condition": "service_started"}
    for service in compose["services"].values():
        if "build" in service:
            service["build"]["context"] = str(REPO)
    broken = tmp_path / "compose.yaml"
    broken.write_text(yaml.safe_dump(compose))
    run = _lint("--compose", str(broken))
    assert run.returncode == 1
    assert "publishes port 8081" in run.stderr and "'ghost'" in run.stderr


def test_the_chart_config_file_is_one_relgraph_reads(tmp_path: Path, helm: str) -> None:
    rendered = subprocess.run(
        [
            helm,
            "template",
            "rg",
            str(REPO / "deploy" / "helm" / "relgraph"),
            "--kube-version",
            "1.31.0",
            "--set",
            "server.minCohortDeals=25",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    config_map = next(
        d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ConfigMap" and "relgraph.toml" in d["data"]
    )
    toml = tmp_path / "relgraph.toml"
    toml.write_text(config_map["data"]["relgraph.toml"])
    tomllib.loads(toml.read_text())
    config = load_config({"RELGRAPH_CONFIG": str(toml)})
    assert config.neo4j.uri == "bolt://relgraph-neo4j:7687" and config.server.min_cohort_deals == 25
    assert config.server.metrics_host == "0.0.0.0" and str(config.home) == "/var/lib/relgraph"
