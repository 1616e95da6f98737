"""Validation on every core gives what validation in one process gives: the same rows in the same
order, the same counts and the same rejections with the same line numbers, strict or not."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from core.vocabulary import KINDS
from graph import ingest
from graph.ingest import _validate_in_parallel as parallel
from graph.ingest import validated
from graph.pseudonymize import Pseudonymizer

PSEUDO = Pseudonymizer("unit-test-key-0123456789")
SERIAL = 1 << 40  # parts so large that nothing is split: one process


def _validate(files: list[Path], strict: bool, part_bytes: int) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    with validated(files, PSEUDO, strict=strict, chunk=500, show=False, part_bytes=part_bytes) as run:
        rows = {kind: [row for chunk in run.spool.chunks(kind) for row in chunk] for kind in KINDS}
        summary = run.finish().to_dict()
        tenants = sorted(run.tenants)
    for timing in ("seconds", "validate_seconds", "write_seconds", "events_per_s", "phase_seconds"):
        summary.pop(timing)
    return {**summary, "tenants": tenants}, rows


@pytest.fixture(scope="module")
def inputs(small_network: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The generated network, plus copies with bad lines (one in the last part of a split file),
    a byte-order mark and blank lines, and a gzipped file."""
    out = tmp_path_factory.mktemp("inputs")
    files = sorted((small_network / "ingest").glob("*.jsonl"))
    interactions = (small_network / "ingest" / "interactions.jsonl").read_bytes().splitlines(keepends=True)
    bad = out / "bad.jsonl"
    bad.write_bytes(
        b"\xef\xbb\xbf"
        + b"".join(interactions[:3000])
        + b"\n{not json\n"
        + b"".join(interactions[3000:6000])
        + json.dumps({"kind": "member", "tenant": "UPPER", "email": "a@b.example"}).encode()
        + b"\n\n"
    )
    zipped = out / "members.jsonl.gz"
    with open(files[-2], "rb") as src, gzip.open(zipped, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return [*files, bad, zipped]


@pytest.mark.parametrize("strict", [True, False])
def test_parts_on_every_core_validate_as_one_process(
    inputs: list[Path], strict: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    serial_summary, serial_rows = _validate(inputs, strict, SERIAL)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1})  # two cores, whatever this machine has
    pooled = []
    monkeypatch.setattr(ingest, "_validate_in_parallel", lambda *a: pooled.append(parallel(*a)))
    parallel_summary, parallel_rows = _validate(inputs, strict, 64 * 1024)  # interactions: about 60 parts
    assert pooled, "the parallel path ran"
    assert parallel_summary == serial_summary
    assert parallel_rows == serial_rows
    assert serial_summary["rejected"] > 0 and serial_summary["accepted"] > 20_000
    lines = [(Path(e["file"]).name, e["line"]) for e in serial_summary["first_errors"]]
    assert ("bad.jsonl", 3002) in lines and ("bad.jsonl", 6003) in lines
