import json
from pathlib import Path

from jobs.generate import STAGES, GeneratorConfig, generate


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jsonl"))}


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    cfg = GeneratorConfig(people=800, tenants=3, seed=11)
    generate(cfg, tmp_path / "a")
    generate(cfg, tmp_path / "b")
    generate(GeneratorConfig(people=800, tenants=3, seed=12), tmp_path / "c")
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b
    assert a.keys() == c.keys() and a != c
    assert {
        "ingest/members.jsonl",
        "ingest/interactions.jsonl",
        "ingest/deals.jsonl",
        "ingest/signals.jsonl",
        "ground_truth/deals.jsonl",
        "ground_truth/strong_ties.jsonl",
    } <= a.keys()


def test_crm_hygiene_and_ground_truth(tmp_path: Path) -> None:
    generate(GeneratorConfig(people=30000, tenants=4, seed=5, hygiene=0.4), tmp_path)
    truth = [json.loads(line) for line in (tmp_path / "ground_truth" / "deals.jsonl").read_text().splitlines()]
    assert len(truth) == 600
    correct = sum(t["crm_correct"] for t in truth) / len(truth)
    assert 0.32 <= correct <= 0.48, correct  # hygiene 0.4: 40% of records right and current
    assert {t["true_stage"] for t in truth} <= set(STAGES) | {"closed_won", "closed_lost"}

    # Buyer type drives the process: enterprise deals take longer from creation to close.
    def days(t: dict) -> float:
        return (t["close_ts"] - t["true_stage_starts"][0]["ts"]) / 86400

    ent = [days(t) for t in truth if t["buyer_type"]["enterprise"] and t["outcome"] == "won"]
    smb = [days(t) for t in truth if not t["buyer_type"]["enterprise"] and t["outcome"] == "won"]
    assert sum(ent) / len(ent) > 1.5 * sum(smb) / len(smb)


def test_planted_poll_answers_come_from_people_not_on_the_deal(tmp_path: Path) -> None:
    generate(GeneratorConfig(people=20000, tenants=3, seed=8), tmp_path)
    planted = [json.loads(line) for line in (tmp_path / "ground_truth" / "signals.jsonl").read_text().splitlines()]
    polls = {p["signal"]: p["deal"] for p in planted if p["kind"] == "poll_answer"}
    assert polls
    contacts: dict[str, set[str]] = {}
    for line in (tmp_path / "ingest" / "deal_contacts.jsonl").read_text().splitlines():
        c = json.loads(line)
        contacts.setdefault(c["deal"], set()).add(c["email"])
    for line in (tmp_path / "ingest" / "signals.jsonl").read_text().splitlines():
        s = json.loads(line)
        if s["id"] in polls:
            assert s["email"] not in contacts.get(polls[s["id"]], set())
            assert s["topic"] == "contract_expiry"


def _relationships_per_person(root: Path, people: int) -> float:
    pairs = set()
    for line in (root / "ingest" / "interactions.jsonl").read_text().splitlines():
        record = json.loads(line)
        pairs |= {(record["tenant"], *sorted((record["from"], to))) for to in record["to"]}
    return 2 * len(pairs) / people  # each relationship is one of each of its two people


def test_density_sets_relationships_per_person(tmp_path: Path) -> None:
    for density in (5.0, 20.0):
        generate(
            GeneratorConfig(people=3000, tenants=3, seed=2, relationships_per_person=density), tmp_path / str(density)
        )
        assert abs(_relationships_per_person(tmp_path / str(density), 3000) - density) / density < 0.2
