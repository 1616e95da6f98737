"""`buf breaking` against the released contract (run by bin/lint-protos in bin/test) refuses a
change that would break existing clients, and accepts an additive one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def _breaking(proto: Path) -> subprocess.CompletedProcess[str]:
    buf = subprocess.run(
        ["bash", "-c", f"source {REPO / 'bin/tools'} && buf_tool"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return subprocess.run(
        [buf, "breaking", "--against", str(REPO / "proto/released/relgraph-v1.binpb")],
        cwd=proto,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    proto = tmp_path / "proto"
    shutil.copytree(REPO / "proto", proto)
    contract = proto / "relgraph/v1/warm_paths.proto"
    text = contract.read_text()
    assert old in text
    contract.write_text(text.replace(old, new))
    return proto


MAX_HOPS = "  // Maximum hops, 1-3; unset means 3.\n  optional int32 max_hops = 5;\n"


def test_a_removed_field_is_refused(tmp_path: Path) -> None:
    done = _breaking(_edited(tmp_path, MAX_HOPS, ""))
    assert done.returncode != 0 and "max_hops" in done.stdout + done.stderr


def test_a_new_field_is_accepted(tmp_path: Path) -> None:
    done = _breaking(_edited(tmp_path, MAX_HOPS, MAX_HOPS + "  // A new option.\n  bool fresh = 99;\n"))
    assert done.returncode == 0, done.stdout + done.stderr
