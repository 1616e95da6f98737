"""`relgraph bench ingest --initial` at a small size: both paths run, on throwaway servers of their
own, and build graphs of the same size."""

from __future__ import annotations

from core.config import Config
from jobs.bench_ingest import run_ingest_benchmark


def test_the_ingest_benchmark_measures_both_paths_on_the_same_network(neo4j_config: Config) -> None:
    assert neo4j_config.network_key is not None
    result = run_ingest_benchmark(
        neo4j_config, people=300, baseline_events=20, network_key=neo4j_config.network_key, initial=True
    )
    assert result["transactional_events_per_s"] > 0 and result["initial_events_per_s"] > 0
    assert (result["initial_nodes"], result["initial_relationships"]) == (
        result["nodes_created"],
        result["relationships_created"],
    )
    assert set(result["initial_phase_seconds"]) == {
        "validate",
        "aggregate",
        "csv",
        "stop",
        "import",
        "start",
        "migrate",
    }
    assert result["initial_peak_rss_mb"] > 0
    assert result["reingest_events_added"] == 0
