"""Ingest against the real Neo4j: idempotence, strictness, tenant scoping, erasure, privacy."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from core.errors import ReadOnlyViolationError
from graph.ingest import ingest
from graph.operations import NETWORK, audit_subject, erase_person, prune_erasure_tombstones, stats
from graph.pseudonymize import Pseudonymizer
from graph.schema import LATEST_VERSION, current_version, migrate
from graph.store import GraphStore, Query
from jobs.generate import _FIRST, _LAST

pytestmark = pytest.mark.neo4j

ALL_PROPERTIES = Query(
    "test.all_properties",
    """
MATCH (n) RETURN 'node' AS what, labels(n) AS labels, properties(n) AS props
UNION ALL
MATCH ()-[r]->() RETURN 'rel' AS what, [type(r)] AS labels, properties(r) AS props
""",
)


def _records(network: Path, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (network / "ingest" / f"{name}.jsonl").read_text().splitlines()]


def _write_jsonl(path: Path, records: list[dict[str, Any] | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_reingesting_the_same_input_changes_nothing(
    store: GraphStore, small_network: Path, pseudo: Pseudonymizer
) -> None:
    first = ingest(store, [small_network / "ingest"], pseudo, progress=False)
    assert first.rejected == 0 and first.nodes_created > 0 and first.events_added > 0
    before = stats(store)
    stamp = store.read(
        Query("test.knows_stamp", "MATCH ()-[k:KNOWS]->() RETURN max(k.updated_at) AS t, sum(k.count) AS n")
    )
    second = ingest(store, [small_network / "ingest"], pseudo, progress=False)
    assert (second.nodes_created, second.relationships_created, second.events_added) == (0, 0, 0)
    assert second.events_already_present == first.events_added
    assert stats(store) == before
    assert (
        store.read(Query("test.knows_stamp", "MATCH ()-[k:KNOWS]->() RETURN max(k.updated_at) AS t, sum(k.count) AS n"))
        == stamp
    )


def test_a_file_with_one_bad_line_changes_nothing(store: GraphStore, tmp_path: Path, pseudo: Pseudonymizer) -> None:
    good = {
        "kind": "interaction",
        "tenant": "acme",
        "type": "email",
        "ts": 1767225600,
        "from": "a@acme.example",
        "to": ["b@buyer.example"],
    }
    path = _write_jsonl(
        tmp_path / "events.jsonl",
        [
            good,
            {**good, "ts": 1767225700},
            '{"kind": "interaction", "tenant":',
            {**good, "from": "not-an-email"},
            {**good, "ts": 1767225800},
        ],
    )
    summary = ingest(store, [path], pseudo, progress=False)
    assert summary.files_rejected == 1 and summary.accepted == 0
    assert [(e.line, e.reason.split(":")[0]) for e in summary.first_errors] == [
        (3, "not valid JSON"),
        (4, "field 'from'"),
    ]
    assert all(e.file == str(path) for e in summary.first_errors)
    empty = stats(store)
    assert sum(empty.nodes.values()) == 0 and sum(empty.relationships.values()) == 0
    lenient = ingest(store, [path], pseudo, strict=False, progress=False)
    assert lenient.accepted == 3 and lenient.rejected == 2
    knows = store.read(Query("test.knows", "MATCH ()-[k:KNOWS]->() RETURN k.count AS count, k.tenant_id AS tenant"))
    assert knows == [{"count": 3, "tenant": "acme"}]


def test_knows_evidence_is_exact(store: GraphStore, tmp_path: Path, pseudo: Pseudonymizer) -> None:
    a, b = "a@acme.example", "b@buyer.example"
    events = [
        ("email", a, b, 100),
        ("email", a, b, 200),
        ("email", b, a, 300),
        ("meeting", a, b, 400),
        ("email", a, b, 200),
    ]  # the last repeats the second: one event
    path = _write_jsonl(
        tmp_path / "interactions.jsonl",
        [
            {"kind": "interaction", "tenant": "acme", "type": t, "ts": ts, "from": f, "to": [to]}
            for t, f, to, ts in events
        ],
    )
    ingest(store, [path], pseudo, progress=False)
    rows = store.read(
        Query(
            "test.knows",
            """
        MATCH (lo:Person)-[k:KNOWS]->(hi:Person)
        RETURN lo.pid AS lo, k.count AS count, k.fwd AS fwd, k.rev AS rev, k.two_way AS two_way,
               k.first_ts AS first, k.last_ts AS last, size(k.events) AS logged""",
        )
    )
    assert len(rows) == 1
    row = rows[0]
    a_is_lo = row["lo"] == pseudo.pid(a)
    from_a, from_b = 2, 1  # distinct emails; the meeting counts both ways
    assert row["count"] == 4 and row["logged"] == 4
    assert (row["fwd"], row["rev"]) == ((from_a + 1, from_b + 1) if a_is_lo else (from_b + 1, from_a + 1))
    assert row["two_way"] == 2 and (row["first"], row["last"]) == (100, 400)


def test_every_tenant_owned_write_is_scoped(store: GraphStore, small_network: Path, pseudo: Pseudonymizer) -> None:
    ingest(store, [small_network / "ingest"], pseudo, progress=False)
    unscoped = store.read(
        Query(
            "test.unscoped",
            """
        MATCH ()-[r]->() WHERE r.tenant_id IS NULL RETURN type(r) AS t, count(*) AS n
        UNION ALL
        MATCH (n) WHERE (n:Deal OR n:Activity) AND n.tenant_id IS NULL RETURN labels(n)[0] AS t, count(*) AS n""",
        )
    )
    assert unscoped == []
    crossed = store.read(
        Query(
            "test.crossed",
            """
        MATCH (a:Activity)-[r]-() WHERE r.tenant_id <> a.tenant_id RETURN count(*) AS n
        UNION ALL
        MATCH (d:Deal)-[r]-() WHERE r.tenant_id <> d.tenant_id RETURN count(*) AS n
        UNION ALL
        MATCH (a:Activity)-[:ON]->(d:Deal) WHERE a.tenant_id <> d.tenant_id RETURN count(*) AS n""",
        )
    )
    assert all(row["n"] == 0 for row in crossed)
    by_tenant = stats(store).tenants
    members = Counter(r["tenant"] for r in _records(small_network, "members"))
    deals = Counter(r["tenant"] for r in _records(small_network, "deals"))
    signals = Counter(r["tenant"] for r in _records(small_network, "signals"))
    assert set(by_tenant) == set(members)
    for tenant in members:
        assert by_tenant[tenant]["members"] == members[tenant]
        assert by_tenant[tenant].get("Deal", 0) == deals[tenant]
        assert by_tenant[tenant].get("Signal", 0) == signals[tenant]
        assert stats(store, tenant).tenants == {tenant: by_tenant[tenant]}


def test_no_email_or_name_is_stored_anywhere(store: GraphStore, small_network: Path, pseudo: Pseudonymizer) -> None:
    ingest(store, [small_network / "ingest"], pseudo, progress=False)
    emails = {r["email"] for r in _records(small_network, "members")} | {
        r["from"] for r in _records(small_network, "interactions")
    }
    names = set(_FIRST) | set(_LAST)
    values: list[str] = []
    for row in store.read(ALL_PROPERTIES):
        for value in row["props"].values():
            values.extend(str(v) for v in (value if isinstance(value, list) else [value]))
    assert values, "the graph should not be empty"
    leaks = [
        v
        for v in values
        if "@" in v or v in emails or v.lower() in names or any(part in names for part in v.lower().split("."))
    ]
    assert leaks == []


def test_erasure_leaves_no_trace(store: GraphStore, small_network: Path, pseudo: Pseudonymizer) -> None:
    ingest(store, [small_network / "ingest"], pseudo, progress=False)
    contact = _records(small_network, "deal_contacts")[0]["email"]
    pid = pseudo.pid(contact)
    before = store.read(
        Query(
            "test.touching",
            """
        MATCH (p:Person {pid: $pid})
        RETURN COUNT { (p)--() } AS rels, COUNT { (p)<-[:BY|WITH]-(a) } AS took_part""",
        ),
        pid=pid,
    )
    assert before and before[0]["rels"] > 0 and before[0]["took_part"] > 0
    # Any spelling of the address finds the person.
    report = erase_person(store, pseudo.pid(contact.upper()), scope=NETWORK, actor="test", retention_s=60)
    assert report.found and report.nodes_deleted == 1 + before[0]["took_part"]
    assert report.relationships_deleted >= before[0]["rels"]
    mentions = [row["labels"] for row in store.read(ALL_PROPERTIES) if pid in json.dumps(row["props"], default=str)]
    assert mentions == [["Erasure"]], "only the tombstone that running servers read may name the pid"
    assert store.read(Query("test.person", "MATCH (p:Person {pid: $pid}) RETURN p"), pid=pid) == []
    dangling = store.read(
        Query(
            "test.dangling",
            """
        MATCH (a:Activity) WHERE NOT (a)-[:BY]->(:Person) RETURN count(a) AS n""",
        )
    )
    assert dangling == [{"n": 0}]
    audit = store.read(Query("test.audit", "MATCH (a:ErasureAudit) RETURN a.scope AS scope, a.subject AS subject"))
    assert audit == [{"scope": NETWORK, "subject": audit_subject(pid)}]
    assert prune_erasure_tombstones(store, retention_s=0) == 1
    assert [row for row in store.read(ALL_PROPERTIES) if pid in json.dumps(row["props"], default=str)] == []
    again = erase_person(store, pid, scope=NETWORK, actor="test", retention_s=60)
    assert not again.found and again.nodes_deleted == 0


def test_migrations_rerun_cleanly(store: GraphStore) -> None:
    assert current_version(store) == LATEST_VERSION
    assert migrate(store) == []
    names = {row["name"] for row in store.read(Query("test.constraints", "SHOW CONSTRAINTS YIELD name RETURN name"))}
    assert {"person_pid", "company_cid", "deal_key", "activity_key", "tenant_id"} <= names


def test_operator_cypher_is_read_only(store: GraphStore) -> None:
    keys, rows, truncated = store.read_only("MATCH (n:Person) RETURN count(n) AS n")
    assert keys == ["n"] and rows == [{"n": 0}] and not truncated
    for write in ("CREATE (:Person {pid: 'x'})", "MATCH (n) DETACH DELETE n", "CREATE INDEX x FOR (n:X) ON (n.y)"):
        with pytest.raises(ReadOnlyViolationError):
            store.read_only(write)
    assert store.read_only("MATCH (n:Person) RETURN count(n) AS n")[1] == [{"n": 0}]
