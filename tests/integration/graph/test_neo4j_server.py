"""The managed Neo4j's lifecycle and its clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from core.config import Config
from core.errors import ProvisionError
from graph.neo4j_server import ManagedNeo4j

pytestmark = pytest.mark.neo4j


def test_running_server_reports_status(neo4j_config: Config) -> None:
    if not neo4j_config.uses_managed_neo4j:
        pytest.fail("this suite expects the managed Neo4j; unset NEO4J_URI")
    status = ManagedNeo4j(neo4j_config).status()
    assert status.running and status.bolt_answers and status.uri.startswith("bolt://127.0.0.1:")


def test_port_taken_is_a_clear_error(neo4j_config: Config, tmp_path: Path) -> None:
    other = ManagedNeo4j(dataclasses.replace(neo4j_config, home=tmp_path))  # same port, another home
    with pytest.raises(ProvisionError, match=f"port {neo4j_config.managed_neo4j.port} is taken"):
        other.start()
    assert not other.status().running


def test_missing_java_is_a_clear_error(neo4j_config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ProvisionError, match="Java 17"):
        ManagedNeo4j(dataclasses.replace(neo4j_config, home=tmp_path / "h")).start()
