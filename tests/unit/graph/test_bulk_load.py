"""The bulk load's aggregation and CSV encoding, without a server (the graph it builds is compared
with the transactional path's on real Neo4j servers in tests/integration/graph/test_bulk_load.py)."""

from pathlib import Path

import pytest

from graph.bulk_load import GraphBuilder, write_import_files
from graph.events import event_code
from graph.ingest import input_files


def _interaction(sender: str, to: list[str], ts: int, kind: str = "email", tenant: str = "t") -> dict[str, object]:
    return {"tenant": tenant, "id": f"{sender}{ts}", "kind": kind, "ts": ts, "from": sender, "to": to, "deal": ""}


def test_knows_aggregates_each_pair_as_the_knows_statement_does() -> None:
    graph = GraphBuilder(now_ms=1)
    graph.add(
        "interaction",
        [
            _interaction("b", ["a", "c"], 10),
            _interaction("b", ["a"], 10),  # the same event again
            _interaction("a", ["b"], 20, kind="call"),  # counts in both directions
            _interaction("a", ["b"], 30, tenant="u"),
        ],
    )
    knows = {(t, lo, hi): props for t, lo, hi, props in graph.knows()}
    assert knows[("t", "a", "b")] == {
        "events": f"{event_code(10, 'email', False)};{event_code(20, 'call', True)}",
        "count": 2,
        "fwd": 1,
        "rev": 2,
        "two_way": 1,
        "first_ts": 10,
        "last_ts": 20,
    }
    assert knows[("t", "b", "c")]["fwd"] == 1 and knows[("t", "b", "c")]["rev"] == 0
    assert knows[("u", "a", "b")]["count"] == 1
    assert (graph.events_logged, graph.interaction_entries) == (4, 5)


def test_csv_fields_keep_empty_strings_and_leave_out_missing_values(tmp_path: Path) -> None:
    graph = GraphBuilder(now_ms=7)
    graph.add("employment", [{"tenant": "t", "pid": "p", "cid": "c.example", "from": 5, "to": -1, "level": "ic",
                              "function": "it", "industry": "", "size_band": "11-50"}])  # fmt: skip
    graph.add("member", [{"tenant": "t", "pid": "p", "role": "rep", "team": "", "level": "ic", "function": "it"}])
    files = write_import_files(graph, tmp_path)
    assert (tmp_path / "company.csv").read_text().splitlines() == [
        "cid:ID(Company),industry,size_band",
        '"c.example",,"11-50"',  # no industry given: no property, as in Cypher
    ]
    assert '"p","t","t","rep","",' in (tmp_path / "member_of.csv").read_text()  # an empty team stays ''
    assert (files.node_count, files.relationship_count) == (3, 2)


def test_an_array_item_that_would_split_is_refused(tmp_path: Path) -> None:
    graph = GraphBuilder(now_ms=7)
    deal = {"tenant": "t", "deal_id": "d", "cid": "c.example", "owner": "p", "amount": 0.0, "created": 1,
            "product": "", "stage_names": ["a;b"], "stage_ts": [2], "crm_stage": "a;b", "closed": -1,
            "outcome": "open"}  # fmt: skip
    graph.add("deal", [deal])
    with pytest.raises(ValueError, match="cannot hold ';'"):
        write_import_files(graph, tmp_path)


def test_a_generator_folder_contributes_its_ingest_part(tmp_path: Path) -> None:
    for name in ("ingest/members.jsonl", "ground_truth/deals.jsonl"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("{}\n")
    skipped: list[str] = []
    assert input_files([tmp_path], skipped) == [tmp_path / "ingest" / "members.jsonl"]
    assert skipped == [f"{tmp_path / 'ground_truth'}: the generator's ground truth, not ingest records"]
