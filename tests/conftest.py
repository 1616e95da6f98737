"""Shared fixtures. Integration tests run against a real Neo4j: the one NEO4J_URI names, or else a
managed server this session starts in a temporary home on a free port (never skipped)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import Config, load_config
from graph.neo4j_server import ManagedNeo4j
from graph.pseudonymize import Pseudonymizer
from graph.store import GraphStore
from jobs.generate import GeneratorConfig, generate
from tests.support.neo4j import empty_store, managed_neo4j

TEST_KEY = "test-network-key-0123456789"


@pytest.fixture(scope="session")
def neo4j_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    base = load_config()
    if base.neo4j.uri is not None:
        yield dataclasses.replace(base, network_key=TEST_KEY)
        return
    with managed_neo4j(
        dataclasses.replace(base, network_key=TEST_KEY), tmp_path_factory.mktemp("neo4j-home")
    ) as config:
        yield config


@pytest.fixture
def store(neo4j_config: Config) -> Iterator[GraphStore]:
    """A store on an empty graph (schema applied)."""
    with empty_store(neo4j_config) as s:
        yield s


@pytest.fixture
def cli_env(neo4j_config: Config) -> dict[str, str]:
    """Environment that points the `relgraph` command at the test Neo4j."""

    server = ManagedNeo4j(neo4j_config)
    uri = neo4j_config.neo4j.uri or server.uri
    password = neo4j_config.neo4j.password or server.password()
    assert password is not None
    return {
        **{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},  # runs are tracked under the test home
        "NEO4J_URI": uri,
        "NEO4J_USER": neo4j_config.neo4j.user,
        "NEO4J_PASSWORD": password,
        "RELGRAPH_NETWORK_KEY": TEST_KEY,
        "RELGRAPH_HOME": str(neo4j_config.home),
    }


@pytest.fixture(scope="session")
def pseudo() -> Pseudonymizer:
    return Pseudonymizer(TEST_KEY)


@pytest.fixture(scope="session")
def small_network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated 3-tenant network of 600 people (its ingest files under ./ingest)."""
    out = tmp_path_factory.mktemp("network")
    generate(GeneratorConfig(people=600, tenants=3, seed=3), out)
    return out
