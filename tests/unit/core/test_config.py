from pathlib import Path

import pytest

from core.config import DEFAULT_BOLT_PORT, load_config
from core.errors import ConfigError


def test_defaults_and_environment_overrides(tmp_path: Path) -> None:
    assert load_config({}).managed_neo4j.port == DEFAULT_BOLT_PORT
    config = load_config(
        {
            "NEO4J_URI": "bolt://db:7687",
            "NEO4J_PASSWORD": "pw",
            "RELGRAPH_HOME": str(tmp_path),
            "RELGRAPH_NEO4J_PORT": "7999",
            "RELGRAPH_NETWORK_KEY": "k" * 16,
        }
    )
    assert config.neo4j.uri == "bolt://db:7687" and not config.uses_managed_neo4j
    assert config.home == tmp_path and config.managed_neo4j.port == 7999


def test_file_settings_with_unknown_keys_are_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[ingest]\nbatch_size = 500\n[neo4j]\ndatabase = "graph"\n')
    config = load_config({"RELGRAPH_CONFIG": str(good)})
    assert config.ingest.batch_size == 500 and config.neo4j.database == "graph"
    bad = tmp_path / "bad.toml"
    bad.write_text("[ingest]\nbatch_sise = 500\n")
    with pytest.raises(ConfigError, match="batch_sise"):
        load_config({"RELGRAPH_CONFIG": str(bad)})


def test_short_network_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="RELGRAPH_NETWORK_KEY"):
        load_config({"RELGRAPH_NETWORK_KEY": "short"})


def test_log_level_is_one_of_the_named_levels() -> None:
    assert load_config({}).server.log_level == "INFO"
    assert load_config({"RELGRAPH_LOG_LEVEL": "DEBUG"}).server.log_level == "DEBUG"
    with pytest.raises(ConfigError, match="log_level must be one of DEBUG, INFO, WARNING, ERROR"):
        load_config({"RELGRAPH_LOG_LEVEL": "verbose"})
