"""Title understanding measured on labelled corpora of real-world titles (tests/data/job_titles.tsv
and job_titles_holdout.tsv, written independently of the classifier; sources named in the files):
accuracy on level and on function is printed with every mistake, and must stay at or above the bar."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from core.titles import normalize_title
from core.vocabulary import FUNCTIONS, TITLE_LEVELS

DATA = Path(__file__).parents[2] / "data"
CORPORA = (DATA / "job_titles.tsv", DATA / "job_titles_holdout.tsv")
LEVEL_BAR, FUNCTION_BAR = 0.97, 0.93


def _corpus() -> list[dict[str, str]]:
    lines = [
        line
        for corpus in CORPORA
        for line in corpus.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    return list(csv.DictReader(lines, fieldnames=["title", "level", "function", "source"], delimiter="\t"))


def test_corpus_is_well_formed() -> None:
    rows = _corpus()
    titles = [row["title"].casefold() for row in rows]
    assert len(set(titles)) == len(titles) >= 300, "at least 300 distinct titles"
    for row in rows:
        assert row["level"] in TITLE_LEVELS and row["function"] in FUNCTIONS, row
        assert row["source"] in {"onet", "soc", "esco", "enron", "posting"}, row


def test_accuracy_on_the_corpus(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _corpus()
    predicted = [normalize_title(row["title"]) for row in rows]
    level_misses = [(r, p) for r, p in zip(rows, predicted) if p[0] != r["level"]]
    function_misses = [(r, p) for r, p in zip(rows, predicted) if p[1] != r["function"]]
    level_accuracy = 1 - len(level_misses) / len(rows)
    function_accuracy = 1 - len(function_misses) / len(rows)
    with capsys.disabled():
        print(f"\ntitles: {len(rows)}; level accuracy {level_accuracy:.1%}, function accuracy {function_accuracy:.1%}")
        for row, (level, function) in level_misses + function_misses:
            print(
                f"  miss: {row['title']!r}: got {level}/{function}, "
                f"labelled {row['level']}/{row['function']} ({row['source']})"
            )
    assert level_accuracy >= LEVEL_BAR
    assert function_accuracy >= FUNCTION_BAR


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Vice President, Sales", ("vp", "sales")),  # not the president inside "vice president"
        ("President", ("c_level", "executive")),
        ("Chief of Staff", ("director", "executive")),
        ("Employee, Chief Operating Officer", ("ic", "operations")),  # rank first, then the office
        ("EVP, Chief Revenue Officer", ("c_level", "sales")),  # an officer's later title counts
        ("Managing Director", ("c_level", "executive")),
        ("Managing Director, Investment Banking", ("vp", "finance")),
        ("Executive Assistant to the CEO", ("ic", "other")),
        ("Security Engineer", ("ic", "it")),  # a domain word beats a role noun
        ("Vertriebsleiter", ("director", "sales")),
        ("", ("ic", "other")),
    ],
)
def test_precedence_rules(title: str, expected: tuple[str, str]) -> None:
    assert normalize_title(title) == expected
