"""A log kept current pair by pair (`with_pairs_replaced` over `pair_interactions`) equals the whole
log read again, whatever changed between the people it holds, and refuses a newcomer."""

from __future__ import annotations

from typing import Any

import numpy as np

from graph.interaction_log import ExportScope, InteractionLog, with_pairs_replaced
from graph.memory_reader import InMemoryGraph
from graph.reader import ALL_TENANTS
from tests.support.plain import plain
from tests.support.serving import ANN, AS_OF, BOB, CFO, GIL, OPS, VP, world

SCOPE = ExportScope(tenants=ALL_TENANTS, end=AS_OF, with_opted_out=True)


def _talk(tenant: str, kind: str, ts: str, sender: str, to: str) -> dict[str, Any]:
    return {"kind": "interaction", "tenant": tenant, "type": kind, "ts": ts, "from": sender, "to": [to]}


def _patched(graph: InMemoryGraph, kept: InteractionLog, since_ms: int) -> InteractionLog | None:
    pairs = sorted({(row.lo, row.hi) for row in graph.knows_changed(since_ms, ALL_TENANTS)})
    lo, hi = (np.array([pair[i] for pair in pairs], dtype="S32") for i in (0, 1))
    return with_pairs_replaced(kept, lo, hi, graph.pair_interactions(pairs, SCOPE))


def _watermark(graph: InMemoryGraph) -> int:
    return max(row.updated_at for row in graph.knows_changed(0, ALL_TENANTS))


def test_a_log_patched_with_the_changed_pairs_equals_the_whole_log_read_again() -> None:
    graph = world()
    kept, since = graph.interaction_log(SCOPE), _watermark(graph)
    graph.ingest(
        [
            _talk("acme", "call", "2026-05-25T10:00:00Z", ANN, OPS),  # a pair acme holds, again
            _talk("acme", "email", "2026-05-26T10:00:00Z", CFO, BOB),  # the other way round
            _talk("acme", "meeting", "2026-05-20T15:00:00Z", VP, CFO),  # what globex logged too: counts once
            _talk("globex", "email", "2026-05-27T10:00:00Z", GIL, OPS),  # a new pair of people the log holds
            _talk("acme", "email", "2026-07-01T10:00:00Z", ANN, CFO),  # after the scope's end: left out
        ]
    )
    patched = _patched(graph, kept, since)
    assert patched is not None and patched.interactions == kept.interactions + 3
    assert plain(patched) == plain(graph.interaction_log(SCOPE))


def test_a_newcomer_needs_the_whole_log() -> None:
    graph = world()
    kept, since = graph.interaction_log(SCOPE), _watermark(graph)
    graph.ingest([_talk("acme", "email", "2026-05-25T10:00:00Z", ANN, "new@buyer.example")])
    assert _patched(graph, kept, since) is None
