"""`relgraph evaluate paths --dataset DIR --as-of T`: is the best-ranked introduction a good one?

The dataset (public ingest format) is split at T: every record but the interactions at or after T
is ingested into a throwaway Neo4j and served the way `relgraph serve` would at T (the snapshot, the
served strengths: the promoted link model's when one loads, else the heuristic). Then seeded random
questions are asked: a source person of a tenant and a target they had no direct contact with
before T (at VP level and above when the dataset has titles, else anyone), and every answer is
scored against what happened in the `horizon_days` after T: a path is *confirmed* when every hop
of it interacted (either way) within the horizon, the evidence that the introduction would work.

Beside the served ranking, on the same questions: a random shortest path, the recency-weighted
product (per hop, the sum over its interactions of exp(-age / 30 days), mapped r -> r / (1 + r)),
and the raw-count product (c -> c / (1 + c)).

A dataset with no member records (one organisation's mail, like the SNAP email network) is that
organisation's own data: everyone in its interactions becomes a member who may ask."""

from __future__ import annotations

import itertools
import json
import tempfile
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from core.config import Config
from core.errors import ConfigError, InvalidInputError, NoModelError, QueryTooCostlyError, RecordError
from core.vocabulary import MAX_TIME, MIN_TIME, TITLE_LEVELS
from gnn.features import graph_at, pair_keys
from gnn.model_kinds import LINK
from gnn.registry import ModelRegistry
from graph.ingest import input_files, read_records
from graph.interaction_log import ExportScope, InteractionLog
from graph.neo4j_reader import Neo4jReader
from graph.pseudonymize import Pseudonymizer
from graph.reader import ALL_TENANTS
from graph.records import parse_record
from jobs.evaluate import ingested_dataset
from server import snapshot as snapshots
from server.link_strengths import log_positions, score_all
from server.snapshot import Snapshot
from server.strength_scale import BANDS, band, strength_scale
from server.warm_paths import MAX_HOPS, FoundPath, PathSearch, find_paths

TARGETS = ("auto", "vp+", "any")
_VP = TITLE_LEVELS.index("vp")
_DAY = 86_400


@dataclass(frozen=True, kw_only=True)
class PathEvalSettings:
    """One path evaluation; keyword-only and validated (errors name the setting)."""

    as_of: int
    horizon_days: int = 90
    queries: int = 300
    k: int = 3
    targets: str = "auto"  # vp+ where the dataset has titles, else any
    seed: int = 0

    def __post_init__(self) -> None:
        if not MIN_TIME < self.as_of < MAX_TIME:
            raise ConfigError(f"--as-of must be between 1970 and 2100, got {self.as_of}")
        for name, low, high in (("horizon_days", 1, 3650), ("queries", 1, 100_000), ("k", 1, 100)):
            if not low <= getattr(self, name) <= high:
                raise ConfigError(f"{name} must be in [{low}, {high}], got {getattr(self, name)}")
        if self.targets not in TARGETS:
            raise ConfigError(f"--targets must be one of {', '.join(TARGETS)}, got {self.targets!r}")


@dataclass(frozen=True)
class RankingScore:
    """How one ranking did on the answered questions."""

    top1_confirmed: float  # share whose top path had every hop interact within the horizon
    topk_confirmed: float  # share with at least one such path among the top k
    hop_confirmed: float  # share of the top paths' hops that interacted within the horizon
    mean_hops: float  # of the top paths


@dataclass(frozen=True)
class PathEvalReport:
    dataset: str
    as_of: int
    horizon_days: int
    targets: str
    k: int
    questions: int
    answered: int
    served: str  # what the served ranking used: "heuristic-v2" or "link-model-vNNNN"
    scores: dict[str, RankingScore]  # "served" first, then the baselines
    bands: dict[str, tuple[int, float]]  # served paths' hops by band: (hops, share that interacted)

    @property
    def coverage(self) -> float:
        return self.answered / self.questions if self.questions else 0.0

    def verdict(self) -> str:
        served = self.scores["served"].top1_confirmed
        rivals = {name: s.top1_confirmed for name, s in self.scores.items() if name != "served"}
        best = max(rivals, key=lambda name: rivals[name])
        margin = served - rivals[best]
        if margin > 0:
            return f"served ranking beats every baseline (top-1 confirmed, margin over {best}: {margin:+.3f})"
        return f"served ranking does NOT beat {best} (top-1 confirmed {served:.3f} vs {rivals[best]:.3f})"

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k != "scores"},
            "coverage": self.coverage,
            "scores": {name: asdict(score) for name, score in self.scores.items()},
            "verdict": self.verdict(),
        }


@dataclass(frozen=True)
class PathEvalWorld:
    """A dataset as served at `as_of`, and what happened after it."""

    snapshot: Snapshot  # from every record before as_of, strengths as `relgraph serve` would rank by
    log: InteractionLog  # the interactions before as_of
    later: set[bytes]  # pairs (pair keys of pseudonyms) that interacted within the horizon after as_of
    names_members: bool  # the dataset named its members itself


def load_world(config: Config, dataset: Path, settings: PathEvalSettings, *, network_key: str) -> PathEvalWorld:
    """Split `dataset` at `as_of`, ingest the part before it into a throwaway Neo4j and read it back."""
    with tempfile.TemporaryDirectory(prefix="relgraph-evaluate-paths-") as tmp:
        later, names_members = _split(dataset, settings, Pseudonymizer(network_key), Path(tmp))
        with ingested_dataset(config, Path(tmp) / "before", network_key) as store:
            reader = Neo4jReader(store)
            snap = snapshots.build(reader)
            log = reader.interaction_log(ExportScope(tenants=ALL_TENANTS, end=settings.as_of, with_opted_out=True))
    return PathEvalWorld(_served(snap, log, config, settings.as_of), log, later, names_members)


def evaluate_paths(
    config: Config, dataset: Path, settings: PathEvalSettings, *, network_key: str, progress: bool = False
) -> PathEvalReport:
    world = load_world(config, dataset, settings, network_key=network_key)
    return evaluate_world(world, settings, str(dataset), progress=progress)


def evaluate_world(
    world: PathEvalWorld, settings: PathEvalSettings, dataset: str, *, progress: bool = False
) -> PathEvalReport:
    """Ask the questions of `world` and score the served ranking and the baselines' answers."""
    snap, as_of = world.snapshot, settings.as_of
    rankings = {
        "served": snap,
        "recency_weighted": _with_strengths(snap, _recency_strengths(snap, world.log, as_of), "recency"),
        "raw_count": _with_strengths(snap, _count_strengths(snap), "count"),
    }
    questions = _questions(snap, settings, world.names_members)
    rng = np.random.default_rng(settings.seed + 1)
    random_weights = _with_strengths(snap, rng.uniform(0.5, 1.0, snap.relationships), "random")
    answers: dict[str, list[list[FoundPath]]] = {name: [] for name in (*rankings, "random_shortest_path")}
    for tenant, source, target in tqdm(questions, desc="evaluate paths", unit=" question", disable=not progress):
        for name, ranked in rankings.items():
            answers[name].append(_ask(ranked, tenant, source, target, settings, MAX_HOPS))
        answers["random_shortest_path"].append(_shortest(random_weights, tenant, source, target, settings))
    answered = [i for i, paths in enumerate(answers["served"]) if paths]
    return PathEvalReport(
        dataset=dataset,
        as_of=as_of,
        horizon_days=settings.horizon_days,
        targets=_target_kind(snap, settings),
        k=settings.k,
        questions=len(questions),
        answered=len(answered),
        served=snap.strength_source,
        scores={name: _score(snap, [paths[i] for i in answered], world.later) for name, paths in answers.items()},
        bands=_bands(snap, settings, questions, answers["served"], world.later),
    )


def _split(dataset: Path, settings: PathEvalSettings, pseudo: Pseudonymizer, tmp: Path) -> tuple[set[bytes], bool]:
    """Write every record but the interactions at or after `as_of` to tmp/before (members added when
    the dataset has none; the first bad record stops it, named by file and line); return the pairs
    that interacted within the horizon after `as_of` (as pair keys of pseudonyms), and whether the
    dataset named its members itself."""
    if not dataset.exists():
        raise ConfigError(f"--dataset {dataset}: no such file or folder")
    end = settings.as_of + settings.horizon_days * _DAY
    later: set[bytes] = set()
    people: dict[str, set[str]] = {}  # tenant -> emails in its interactions before as_of
    has_members = False
    (tmp / "before").mkdir()
    with open(tmp / "before" / "records.jsonl", "w", encoding="utf-8") as out:
        for path in input_files([dataset]):
            for line, record, default_kind in read_records(path):
                try:
                    if isinstance(record, RecordError):
                        raise record
                    kind, tenant, row = parse_record(record, pseudo, default_kind)
                except RecordError as exc:
                    raise InvalidInputError(f"{path}:{line}: {exc}; fix the dataset and rerun") from exc
                has_members |= kind == "member"
                if kind == "interaction":
                    if row["ts"] >= settings.as_of:
                        if row["ts"] < end:
                            later.update(_pair(row["from"], to) for to in row["to"])
                        continue
                    people.setdefault(tenant, set()).update(_emails(record))
                out.write(json.dumps({**record, "kind": kind}) + "\n")
        if not has_members:
            for tenant, emails in sorted(people.items()):
                for email in sorted(emails):
                    out.write(json.dumps({"kind": "member", "tenant": tenant, "email": email}) + "\n")
    return later, has_members


def _emails(record: dict[str, Any]) -> list[str]:
    to = record["to"]
    return [e for e in (str(record["from"]), *(to.split(";") if isinstance(to, str) else map(str, to))) if e]


def _pair(a: str, b: str) -> bytes:
    lo, hi = sorted((a, b))
    return f"{lo}:{hi}".encode()


def _served(snap: Snapshot, log: InteractionLog, config: Config, as_of: int) -> Snapshot:
    """The snapshot with the strengths `relgraph serve` would rank by: the promoted link model's, else the heuristic."""
    try:
        scorer = LINK.load_promoted(ModelRegistry(config.models_dir))
    except NoModelError:
        return snap
    return score_all(snap, scorer, log, as_of, basis=scorer.source)[0]


def _with_strengths(snap: Snapshot, strength: np.ndarray, source: str) -> Snapshot:
    return replace(snap, edge_strength=strength.astype(np.float32), strength_source=source)


def _count_strengths(snap: Snapshot) -> np.ndarray:
    count = snap.edge_count.astype(np.float64)
    strength: np.ndarray = count / (1.0 + count)
    return strength


def _recency_strengths(snap: Snapshot, log: InteractionLog, as_of: int) -> np.ndarray:
    graph = graph_at(log, as_of)
    lo, hi, present = log_positions(snap, log)
    pos, found = graph.lookup(pair_keys(lo, hi, graph.n))
    recency = np.where(found & present, graph.recency_30d[pos] if graph.keys.shape[0] else 0.0, 0.0)
    strength: np.ndarray = recency / (1.0 + recency)
    return strength


def _target_kind(snap: Snapshot, settings: PathEvalSettings) -> str:
    if settings.targets != "auto":
        return settings.targets
    return "vp+" if bool((snap.level >= _VP).any()) else "any"


def _questions(snap: Snapshot, settings: PathEvalSettings, names_members: bool) -> list[tuple[int, int, int]]:
    """Seeded (tenant, source, target) questions: a member with relationships asks for someone it
    never interacted with before `as_of` (not a colleague, when the dataset names its members)."""
    rng = np.random.default_rng(settings.seed)
    degree = np.diff(snap.indptr)
    eligible = degree > 0
    if _target_kind(snap, settings) == "vp+":
        eligible &= snap.level >= _VP
    candidates = np.flatnonzero(eligible)
    askers = [(t, np.flatnonzero(snap.member_mask(t) & (degree > 0))) for t in range(len(snap.tenants.ids))]
    askers = [(t, members) for t, members in askers if members.size]
    if not askers or not candidates.size:
        raise ConfigError("the dataset has no one to ask or no one to reach before --as-of; pick a later --as-of")
    questions: list[tuple[int, int, int]] = []
    for _ in range(settings.queries * 20):  # enough draws to find the questions, bounded
        if len(questions) == settings.queries:
            break
        tenant, members = askers[rng.integers(len(askers))]
        source, target = int(members[rng.integers(members.size)]), int(candidates[rng.integers(candidates.size)])
        neighbors, _ = snap.edges_of(source)
        if target == source or target in neighbors or (names_members and snap.member_mask(tenant)[target]):
            continue
        questions.append((tenant, source, target))
    return questions


def _ask(
    snap: Snapshot, tenant: int, source: int, target: int, settings: PathEvalSettings, hops: int
) -> list[FoundPath]:
    query = PathSearch(
        tenant=tenant,
        targets=np.array([target]),
        sources=np.array([source]),
        k=settings.k,
        max_hops=hops,
        allow_cross_tenant=True,
        as_of=settings.as_of,
    )
    try:
        return find_paths(snap, query, max_work=50_000_000)
    except QueryTooCostlyError:
        return []  # as the server would refuse it: unanswered


def _shortest(snap: Snapshot, tenant: int, source: int, target: int, settings: PathEvalSettings) -> list[FoundPath]:
    """Up to k paths of the fewest hops, in random order (random strengths, fewest hops first)."""
    for hops in range(1, MAX_HOPS + 1):
        if paths := _ask(snap, tenant, source, target, settings, hops):
            return paths
    return []


def _score(snap: Snapshot, answers: list[list[FoundPath]], later: set[bytes]) -> RankingScore:
    def confirmed_hops(path: FoundPath) -> list[bool]:
        names = [snap.pid(n) for n in path.nodes]
        return [_pair(a, b) in later for a, b in itertools.pairwise(names)]

    if not answers:
        return RankingScore(0.0, 0.0, 0.0, 0.0)
    top = [confirmed_hops(paths[0]) for paths in answers]
    return RankingScore(
        top1_confirmed=float(np.mean([all(hops) for hops in top])),
        topk_confirmed=float(np.mean([any(all(confirmed_hops(p)) for p in paths) for paths in answers])),
        hop_confirmed=float(np.mean([hit for hops in top for hit in hops])),
        mean_hops=float(np.mean([len(hops) for hops in top])),
    )


def _bands(
    snap: Snapshot,
    settings: PathEvalSettings,
    questions: list[tuple[int, int, int]],
    answers: list[list[FoundPath]],
    later: set[bytes],
) -> dict[str, tuple[int, float]]:
    """Every hop of the served answers by the band its score puts it in (the asking tenant's scale),
    with the share of them that interacted within the horizon: the bands' calibration."""
    scale = strength_scale(snap, settings.as_of)
    hits: dict[str, list[bool]] = {name: [] for _, name in BANDS}
    for (tenant, _, _), paths in zip(questions, answers):
        for path in paths:
            strengths = snap.strength(np.array(path.edges), settings.as_of)
            for (a, b), strength in zip(itertools.pairwise(path.nodes), strengths):
                score = scale.score(float(strength), tenant)
                if score is not None:
                    hits[band(score)].append(_pair(snap.pid(a), snap.pid(b)) in later)
    return {name: (len(h), float(np.mean(h)) if h else 0.0) for name, h in hits.items()}


def render(report: PathEvalReport) -> str:
    day = datetime.fromtimestamp(report.as_of, UTC).date()
    lines = [
        f"warm paths on {report.dataset} at {day}: {report.questions} questions (targets {report.targets}), "
        f"horizon {report.horizon_days} days; answered {report.answered} ({report.coverage:.1%}); "
        f"served strengths: {report.served}",
        f"{'ranking':<22} {'top-1 confirmed':>15} {f'top-{report.k} any':>10} {'hop hits':>9} {'mean hops':>10}",
    ]
    for name, score in report.scores.items():
        lines.append(
            f"{name:<22} {score.top1_confirmed:>15.3f} {score.topk_confirmed:>10.3f} "
            f"{score.hop_confirmed:>9.3f} {score.mean_hops:>10.2f}"
        )
    lines.append(report.verdict())
    lines.append(
        "served hops by band, share that interacted within the horizon: "
        + ", ".join(f"{name} {share:.1%} of {hops}" for name, (hops, share) in report.bands.items())
    )
    return "\n".join(lines)
