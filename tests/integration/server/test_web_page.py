"""The web page served at / by the HTTP gateway, loaded in headless Chromium against the real
server: the warm paths it draws are the gRPC answer's, and a deal's estimate or refusal shows."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import pytest

from relgraph.client import ApiError
from relgraph.v1 import buyer_intelligence_pb2, warm_paths_pb2
from tests.integration.server.conftest import Served

pytestmark = pytest.mark.neo4j


def browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        pytest.skip("no Chromium: bin/setup installs Debian's chromium when it runs as root")
    return found


def rendered(url: str, *extra: str) -> str:
    """The page's DOM after its scripts ran (virtual time waits while requests are pending)."""
    done = subprocess.run(
        [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--virtual-time-budget=15000", *extra, "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Drawn(HTMLParser):
    """What the page drew: per path its people (pseudonyms, "" when masked) and strength; the
    boxes and hop edges; the status lines."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[tuple[list[str], float]] = []
        self.boxes = self.hops = 0
        self.body: dict[str, str | None] = {}
        self._in: str | None = None
        self.text: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "body":
            self.body = a
        elif tag == "metadata" and "path" in classes:
            self.paths.append(((a["data-people"] or "").split(","), float(a["data-strength"] or 0)))
        elif tag == "g" and "box" in classes:
            self.boxes += 1
        elif tag == "line" and "hop" in classes:
            self.hops += 1
        elif a.get("id") in ("paths-status", "deal-status", "deal-estimate"):
            self._in = a["id"]

    def handle_data(self, data: str) -> None:
        if self._in:
            self.text[self._in] = self.text.get(self._in, "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag == "div":
            self._in = None


def test_the_page_draws_the_grpc_answers_paths(served: Served) -> None:
    network = served.network / "ingest"
    target = json.loads((network / "deal_contacts.jsonl").read_text().partition("\n")[0])["email"]
    deal = json.loads((network / "deals.jsonl").read_text().partition("\n")[0])["id"]
    fragment = urlencode({"key": served.keys["member_a"], "target": target, "k": 5, "deal": deal})
    page = Drawn()
    page.feed(rendered(f"{served.http_url}/#{fragment}"))
    assert page.body.get("data-paths-done") == "true" and page.body.get("data-deal-done") == "true"

    with served.client("member_a") as member:
        answer = member.find_warm_paths(warm_paths_pb2.FindWarmPathsRequest(target_email=target, k=5))
        try:
            stage: object = member.estimate_deal_stage(buyer_intelligence_pb2.EstimateDealStageRequest(deal_id=deal))
        except ApiError as error:
            stage = error
    expected = [
        [p.pid if p.identified else "" for p in (path.source, *(hop.person for hop in path.hops))]
        for path in answer.paths
    ]
    assert expected and [people for people, _ in page.paths] == expected
    for (_, drawn), path in zip(page.paths, answer.paths, strict=True):
        assert drawn == pytest.approx(path.strength, rel=1e-4)
    hops = {(a, b) for people in expected for a, b in itertools.pairwise(people) if a and b}
    assert page.hops >= len(hops) and page.hops <= sum(len(path.hops) for path in answer.paths)
    assert page.boxes >= 1 + max(len(path.hops) for path in answer.paths)
    assert f"{len(answer.paths)} path(s)" in page.text["paths-status"]
    if isinstance(stage, ApiError):
        assert f"{stage.code.lower()}: {stage.message}" in page.text["deal-status"]
    else:
        assert f"Estimated stage {stage.estimated_stage}" in page.text["deal-estimate"]  # type: ignore[attr-defined]


def test_a_bad_key_and_a_bad_target_are_shown_not_drawn(served: Served) -> None:
    page = Drawn()
    page.feed(rendered(f"{served.http_url}/#{urlencode({'key': 'rgk_0000_nope', 'target': 'x@y.example'})}"))
    assert page.paths == [] and page.text["paths-status"].startswith("unauthenticated:")
    page = Drawn()
    page.feed(rendered(f"{served.http_url}/#{urlencode({'key': served.keys['member_a'], 'target': 'not a domain'})}"))
    assert page.paths == [] and "target_company.domain" in page.text["paths-status"]


def test_a_screenshot_can_be_taken(served: Served, tmp_path: Path) -> None:
    shot = tmp_path / "page.png"
    rendered(f"{served.http_url}/", f"--screenshot={shot}", "--window-size=1200,800")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
