"""The export cache keeps one log per scope: the newest graph's."""

from __future__ import annotations

from pathlib import Path

from graph.export_cache import cached_interaction_log
from graph.interaction_log import ExportScope
from graph.memory_reader import InMemoryGraph
from graph.pseudonymize import Pseudonymizer
from graph.reader import ALL_TENANTS, TenantScope


def _interaction(i: int) -> dict[str, object]:
    return {
        "kind": "interaction",
        "tenant": "acme",
        "id": f"m{i}",
        "type": "email",
        "ts": 1_700_000_000 + i,
        "from": "ann@acme.example",
        "to": [f"buyer{i}@globex.example"],
    }


def test_a_changed_graph_replaces_its_scopes_log_and_keeps_the_others(tmp_path: Path, pseudo: Pseudonymizer) -> None:
    graph = InMemoryGraph(pseudo)
    graph.ingest([_interaction(0)])
    network, acme = ExportScope(tenants=ALL_TENANTS), ExportScope(tenants=TenantScope.of("acme"))

    first = cached_interaction_log(graph, network, tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    assert cached_interaction_log(graph, network, tmp_path).interactions == first.interactions == 1
    cached_interaction_log(graph, acme, tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2

    graph.ingest([_interaction(1)])
    assert cached_interaction_log(graph, network, tmp_path).interactions == 2
    assert len(list(tmp_path.glob("*.npz"))) == 2  # the network's earlier log went; acme's stays
