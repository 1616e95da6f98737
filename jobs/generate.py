"""Seeded generator of a multi-tenant buyer-seller network in the public ingest format, with its
ground truth beside it (DESIGN §6). Deterministic for a seed; streams records to disk in chunks so
a million people need memory only for per-person arrays, never for the records.

Structure: companies with industries and Zipf-like sizes; people with job histories (former
colleagues exist); tenants are seller companies whose employees are members; members' ties form
with homophily (colleagues, former colleagues, same-industry contacts) and decay; deals follow a
stage process that depends on the buyer type, with engagement that matches the true stage; CRM
stages and expected close dates are corrupted according to `hygiene`; signals come from people
around the account who are not on the deal (e.g. an ops director answering a contract-expiry poll)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
from tqdm import tqdm

from core.vocabulary import FUNCTIONS, TITLE_LEVELS

DAY = 86400
WINDOW_START = 1735689600  # 2025-01-01T00:00:00Z
AS_OF = WINDOW_START + 545 * DAY  # 2026-06-30: the generated world is observed at this time
STAGES = ("discovery", "evaluation", "proposal", "negotiation")
INDUSTRIES = (
    "fintech",
    "healthcare",
    "retail",
    "manufacturing",
    "logistics",
    "media",
    "energy",
    "education",
    "software",
    "telecom",
)
_FIRST = (
    "ana",
    "ben",
    "chen",
    "dara",
    "eli",
    "fatima",
    "goran",
    "hana",
    "ivan",
    "jade",
    "kofi",
    "lena",
    "mateo",
    "nadia",
    "omar",
    "priya",
    "quinn",
    "rosa",
    "sven",
    "tara",
    "umar",
    "vera",
    "wei",
    "ximena",
    "yusuf",
    "zoe",
)
_LAST = (
    "abe",
    "berg",
    "costa",
    "diaz",
    "eriksen",
    "fischer",
    "garcia",
    "haddad",
    "ito",
    "jansen",
    "khan",
    "lopez",
    "moreau",
    "nowak",
    "okafor",
    "petrov",
    "quist",
    "rossi",
    "sato",
    "tanaka",
    "ueda",
    "varga",
    "weber",
    "yilmaz",
)
_WORDS = (
    "north",
    "blue",
    "iron",
    "cedar",
    "nova",
    "bright",
    "delta",
    "summit",
    "harbor",
    "pixel",
    "atlas",
    "ember",
    "lumen",
    "vector",
    "orbit",
    "crest",
    "maple",
    "quartz",
    "river",
    "solar",
)
_LEVEL_P = (0.55, 0.25, 0.12, 0.06, 0.02)
_FUNCTION_P = (0.03, 0.14, 0.09, 0.08, 0.14, 0.18, 0.08, 0.03, 0.04, 0.06, 0.08, 0.05)
# Buyer type -> (mean days per stage, probability of stalling per stage). Enterprise buys slowly,
# regulated industries stall in proposal/negotiation (legal, procurement).
_BASE_DAYS = np.array([14.0, 21.0, 14.0, 10.0])
_BASE_STALL = np.array([0.08, 0.12, 0.15, 0.10])
_REGULATED = {"fintech", "healthcare", "energy", "telecom"}
_REGIONS = ("east", "central", "west")  # the sales teams


@dataclass(frozen=True, kw_only=True)
class GeneratorConfig:
    people: int = 2000
    tenants: int = 3
    seed: int = 7
    hygiene: float = 0.4
    member_degree: float = 30.0  # mean ties per member; members hold most of the network's ties
    # When set, the member degree is chosen so that a person has about this many relationships on
    # average (each relationship counts for both its people; real sales networks: about 20);
    # members still hold the ties.
    relationships_per_person: float | None = None
    deals_per_100_people: float = 2.0
    crm_only_share: float = 0.08  # deals logged in the CRM with no synced email or calendar at all
    chunk: int = 20000  # people per written chunk
    tie_chunk: int = 2000  # members per chunk of ties (about 75 interactions each): bounds memory


@dataclass
class GenerationReport:
    out: str
    config: dict[str, Any]
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class _Writers:
    """One JSON Lines file per record kind, plus ground-truth files; counts what it writes."""

    def __init__(self, out: Path) -> None:
        (out / "ingest").mkdir(parents=True, exist_ok=True)
        (out / "ground_truth").mkdir(parents=True, exist_ok=True)
        self._files: dict[tuple[str, str], IO[str]] = {}
        self._out = out
        self.counts: dict[str, int] = {}

    def write(self, name: str, lines: list[str], folder: str = "ingest") -> None:
        key = (folder, name)
        if key not in self._files:
            # Open while the generator writes, closed by close().
            self._files[key] = open(self._out / folder / f"{name}.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        if lines:
            self._files[key].write("\n".join(lines) + "\n")
        label = name if folder == "ingest" else f"{folder}/{name}"
        self.counts[label] = self.counts.get(label, 0) + len(lines)

    def close(self) -> None:
        for f in self._files.values():
            f.close()


def _iso(ts: np.ndarray) -> np.ndarray:
    stamps: np.ndarray = np.char.add(np.datetime_as_string(ts.astype("datetime64[s]")), "Z")
    return stamps


def _j(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


class _World:
    """Per-person and per-company arrays; people are numbered contiguously within each company,
    so 'a random colleague at company c' is a slice lookup."""

    def __init__(self, cfg: GeneratorConfig, rng: np.random.Generator) -> None:
        n = cfg.people
        n_companies = max(cfg.tenants + 10, n // 40)
        weights = rng.pareto(1.2, n_companies) + 1.0
        weights /= weights.sum()
        sizes = rng.multinomial(n - n_companies, weights) + 1  # every company has someone
        self.company_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.company_size = sizes
        self.company_industry = rng.integers(0, len(INDUSTRIES), n_companies)
        self.company_employees = (sizes * rng.uniform(20, 120, n_companies)).astype(np.int64)
        self.domains = [
            f"{_WORDS[i % len(_WORDS)]}{_WORDS[(i * 7 + 3) % len(_WORDS)]}{i}.example" for i in range(n_companies)
        ]
        # Tenants are the largest companies: sellers with many employees observed.
        self.tenant_companies = np.argsort(-sizes, kind="stable")[: cfg.tenants]
        self.tenant_ids = [f"{self.domains[c].split('.')[0]}" for c in self.tenant_companies]
        self.company_tenant = np.full(n_companies, -1)
        self.company_tenant[self.tenant_companies] = np.arange(cfg.tenants)
        self.company = np.repeat(np.arange(n_companies), sizes)
        self.level = rng.choice(len(TITLE_LEVELS), n, p=_LEVEL_P)
        self.function = rng.choice(len(FUNCTIONS), n, p=_FUNCTION_P)
        self.first = rng.integers(0, len(_FIRST), n)
        self.last = rng.integers(0, len(_LAST), n)
        # Job history: up to two earlier employers, same industry with probability 0.6 (homophily).
        self.past = np.full((n, 2), -1)
        n_past = rng.choice(3, n, p=(0.35, 0.45, 0.20))
        for slot in range(2):
            has = n_past > slot
            same_industry = rng.random(n) < 0.6
            candidates = rng.choice(n_companies, n, p=weights)
            self.past[:, slot] = np.where(has, candidates, -1)
            # Re-draw the same-industry ones from a company of that industry when one exists.
            for ind in range(len(INDUSTRIES)):
                pool = np.flatnonzero(self.company_industry == ind)
                pick = has & same_industry & (self.company_industry[self.company] == ind)
                if pool.size and pick.any():
                    self.past[pick, slot] = rng.choice(pool, int(pick.sum()))
        self.past[self.past == self.company[:, None]] = -1
        self.member_tenant = self.company_tenant[self.company]
        self.industry_pool = [np.flatnonzero(self.company_industry == i) for i in range(len(INDUSTRIES))]

    def email(self, i: int) -> str:
        return f"{_FIRST[self.first[i]]}.{_LAST[self.last[i]]}.{i}@{self.domains[self.company[i]]}"

    def random_at(self, companies: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        offsets = (rng.random(companies.size) * self.company_size[companies]).astype(np.int64)
        people: np.ndarray = self.company_start[companies] + offsets
        return people


def generate(cfg: GeneratorConfig, out: str | Path, *, progress: bool = False) -> GenerationReport:
    """Write the network of `cfg` under `out/ingest` and its ground truth under `out/ground_truth`."""
    if cfg.people < 100:
        raise ValueError("--people must be at least 100")
    if not 1 <= cfg.tenants <= 50:
        raise ValueError("--tenants must be between 1 and 50")
    if not 0.0 <= cfg.hygiene <= 1.0:
        raise ValueError("--hygiene must be between 0 and 1")
    if cfg.relationships_per_person is not None and not 0.5 <= cfg.relationships_per_person <= 200:
        raise ValueError("--relationships-per-person must be between 0.5 and 200")
    started = time.perf_counter()
    out = Path(out)
    rng = np.random.default_rng(cfg.seed)
    world = _World(cfg, rng)
    if cfg.relationships_per_person is not None:
        members = max(1, int((world.member_tenant >= 0).sum()))
        cfg = replace(cfg, member_degree=cfg.relationships_per_person * cfg.people / (2 * members))
    writers = _Writers(out)
    try:
        _write_people(world, cfg, writers, progress)
        _write_ties(world, cfg, rng, writers, progress)
        _write_deals(world, cfg, rng, writers, progress)
    finally:
        writers.close()
    report = GenerationReport(
        out=str(out),
        config=asdict(cfg),
        counts=dict(sorted(writers.counts.items())),
        seconds=round(time.perf_counter() - started, 2),
    )
    manifest = {
        **asdict(report),
        "tenants": world.tenant_ids,
        "as_of": int(AS_OF),
        "window_start": WINDOW_START,
        "stages": STAGES,
    }
    (out / "ground_truth" / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return report


def _chunks(n: int, size: int, desc: str, progress: bool) -> Iterator[tuple[int, int]]:
    for start in tqdm(range(0, n, size), desc=desc, disable=not progress, unit=" chunk"):
        yield start, min(n, start + size)


def _write_people(world: _World, cfg: GeneratorConfig, writers: _Writers, progress: bool) -> None:
    for lo, hi in _chunks(cfg.people, cfg.chunk, "people", progress):
        members, jobs = [], []
        for i in range(lo, hi):
            email, c = world.email(i), world.company[i]
            tenant_idx = world.member_tenant[i]
            level, function = TITLE_LEVELS[world.level[i]], FUNCTIONS[world.function[i]]
            tenant = world.tenant_ids[tenant_idx] if tenant_idx >= 0 else world.tenant_ids[i % cfg.tenants]
            if tenant_idx >= 0:
                members.append(
                    _j(
                        {
                            "kind": "member",
                            "tenant": tenant,
                            "email": email,
                            "role": "rep" if function == "sales" else "member",
                            "title_level": level,
                            "function": function,
                            # Sales in three regional teams, everyone else in their function's.
                            "team": f"sales_{_REGIONS[i % len(_REGIONS)]}" if function == "sales" else function,
                        }
                    )
                )
            # Job history: seen by the tenant whose member this is, or (for buyers) by some tenant's enrichment.
            start_current = WINDOW_START - int((i * 2654435761) % (900 * DAY))
            for slot, past in enumerate(world.past[i]):
                if past >= 0:
                    end = start_current - slot * 400 * DAY
                    jobs.append(
                        _j(
                            {
                                "kind": "employment",
                                "tenant": tenant,
                                "email": email,
                                "company": world.domains[past],
                                "from": end - 700 * DAY,
                                "to": end,
                                "title_level": TITLE_LEVELS[max(0, world.level[i] - 1)],
                                "function": function,
                                "company_industry": INDUSTRIES[world.company_industry[past]],
                                "company_size": int(world.company_employees[past]),
                            }
                        )
                    )
            jobs.append(
                _j(
                    {
                        "kind": "employment",
                        "tenant": tenant,
                        "email": email,
                        "company": world.domains[c],
                        "from": start_current,
                        "title_level": level,
                        "function": function,
                        "company_industry": INDUSTRIES[world.company_industry[c]],
                        "company_size": int(world.company_employees[c]),
                    }
                )
            )
        writers.write("members", members)
        writers.write("employment", jobs)


def _write_ties(
    world: _World, cfg: GeneratorConfig, rng: np.random.Generator, writers: _Writers, progress: bool
) -> None:
    """Members' ties: 40% colleagues, 25% former colleagues, 35% contacts in a homophilous industry.
    Each tie has a strength (interaction rate), a reciprocity and an active span; 2% are planted
    strong ties (frequent, two-way, still active at the end) recorded in the ground truth."""
    members = np.flatnonzero(world.member_tenant >= 0)
    n_companies = world.company_size.size
    for lo, hi in _chunks(members.size, cfg.tie_chunk, "ties", progress):
        src = np.repeat(members[lo:hi], rng.poisson(cfg.member_degree, hi - lo))
        kind = rng.choice(3, src.size, p=(0.40, 0.25, 0.35))
        dst = world.random_at(world.company[src], rng)
        past = world.past[src, 0]
        former = (kind == 1) & (past >= 0)
        dst[former] = world.random_at(past[former], rng)
        external = (kind == 2) | ((kind == 1) & (past < 0))
        same_industry = rng.random(src.size) < 0.5
        ext_company = rng.integers(0, n_companies, src.size)
        for ind, pool in enumerate(world.industry_pool):
            pick = external & same_industry & (world.company_industry[world.company[src]] == ind)
            if pool.size and pick.any():
                ext_company[pick] = rng.choice(pool, int(pick.sum()))
        dst[external] = world.random_at(ext_company[external], rng)
        keep = dst != src
        src, dst = src[keep], dst[keep]
        strong = rng.random(src.size) < 0.02
        rate = np.where(strong, 8.0, rng.lognormal(0.2, 0.8, src.size))  # interactions over the span
        recip = np.where(strong, 0.5, rng.beta(2, 3, src.size))
        begin = WINDOW_START + (rng.random(src.size) * 480 * DAY).astype(np.int64)
        begin[strong] = WINDOW_START + (rng.random(int(strong.sum())) * 120 * DAY).astype(np.int64)
        span = np.where(strong, AS_OF - begin, (rng.random(src.size) * (AS_OF - begin)).astype(np.int64))
        n_events = np.maximum(1, rng.poisson(rate))
        tie = np.repeat(np.arange(src.size), n_events)
        ts = begin[tie] + (rng.random(tie.size) * span[tie]).astype(np.int64)
        forward = rng.random(tie.size) >= recip[tie]
        a = np.where(forward, src[tie], dst[tie])
        b = np.where(forward, dst[tie], src[tie])
        kinds = rng.choice(4, tie.size, p=(0.70, 0.12, 0.08, 0.10))
        stamps = _iso(ts)
        tenant_of = world.member_tenant[src[tie]]
        lines = [
            _j(
                {
                    "kind": "interaction",
                    "tenant": world.tenant_ids[t],
                    "id": f"n{lo}-{j}",
                    "type": _KINDS[k],
                    "ts": str(s),
                    "from": world.email(x),
                    "to": [world.email(y)],
                }
            )
            for j, (t, k, s, x, y) in enumerate(
                zip(tenant_of.tolist(), kinds.tolist(), stamps.tolist(), a.tolist(), b.tolist())
            )
        ]
        writers.write("interactions", lines)
        writers.write(
            "strong_ties",
            [
                _j({"tenant": world.tenant_ids[world.member_tenant[x]], "a": world.email(x), "b": world.email(y)})
                for x, y in zip(src[strong].tolist(), dst[strong].tolist())
            ],
            folder="ground_truth",
        )


_KINDS = ("email", "meeting", "call", "message")


def _write_deals(
    world: _World, cfg: GeneratorConfig, rng: np.random.Generator, writers: _Writers, progress: bool
) -> None:
    n_deals = max(cfg.tenants * 5, int(cfg.people * cfg.deals_per_100_people / 100))
    reps_by_tenant = [
        np.flatnonzero((world.member_tenant == t) & (world.function == FUNCTIONS.index("sales")))
        for t in range(cfg.tenants)
    ]
    reps_by_tenant = [r if r.size else np.flatnonzero(world.member_tenant == t) for t, r in enumerate(reps_by_tenant)]
    buyers = np.flatnonzero(
        world.member_tenant < 0
    )  # people at non-tenant companies: larger accounts come up more often
    for lo, hi in _chunks(n_deals, 2000, "deals", progress):
        out: dict[str, list[str]] = {
            "deals": [],
            "deal_contacts": [],
            "interactions": [],
            "signals": [],
            "employment": [],
            "deals_truth": [],
            "signals_truth": [],
        }
        for d in range(lo, hi):
            _one_deal(d, world, cfg, rng, reps_by_tenant, buyers, out)
        for name in ("deals", "deal_contacts", "interactions", "signals", "employment"):
            writers.write(name, out[name])
        writers.write("deals", out["deals_truth"], folder="ground_truth")
        writers.write("signals", out["signals_truth"], folder="ground_truth")


def _crm_stages(
    observed: list[int], created: int, hygiene: float, rng: np.random.Generator
) -> tuple[list[str], list[int]]:
    """The stage history a rep would have typed: with probability `hygiene` every change on time;
    otherwise either updates that stopped at an earlier stage, or a jump to a wrong stage."""
    current = len(observed) - 1
    if rng.random() < hygiene:
        return [STAGES[i] for i in range(current + 1)], list(observed)
    if current > 0 and rng.random() < 0.5:
        stuck = int(rng.integers(0, current))
        return [STAGES[i] for i in range(stuck + 1)], list(observed[: stuck + 1])
    wrong = int(rng.choice([i for i in range(len(STAGES)) if i != current]))
    if wrong == 0:
        return [STAGES[0]], [created]
    return [STAGES[0], STAGES[wrong]], [created, created + (observed[-1] - created) // 2 + 1]


def _crm_close_date(created: int, close_ts: int, is_open: bool, hygiene: float, rng: np.random.Generator) -> int:
    """The expected close date a rep would have typed: set at creation to a guess of 45-120 days on;
    with probability `hygiene` kept current (the actual close once closed; while open, the true
    close give or take two weeks, and never left in the past), else never touched again."""
    guess = created + int(rng.uniform(45, 120) * DAY)
    if rng.random() >= hygiene:
        return guess
    if not is_open:
        return close_ts
    return max(AS_OF + int(rng.uniform(1, 14) * DAY), close_ts + int(rng.normal(0, 14) * DAY))


def _one_deal(
    d: int,
    world: _World,
    cfg: GeneratorConfig,
    rng: np.random.Generator,
    reps_by_tenant: list[np.ndarray],
    buyers: np.ndarray,
    out: dict[str, list[str]],
) -> None:
    t = d % cfg.tenants
    tenant = world.tenant_ids[t]
    rep = int(rng.choice(reps_by_tenant[t]))
    account = int(world.company[rng.choice(buyers)])
    industry = INDUSTRIES[world.company_industry[account]]
    enterprise = world.company_employees[account] > 1000
    days = _BASE_DAYS * (2.2 if enterprise else 1.0)
    stall_p = _BASE_STALL + (np.array([0, 0, 0.12, 0.12]) if industry in _REGULATED else 0)
    # Who takes part, stage by stage (DESIGN §6): discovery is the champion alone; evaluation brings
    # 1-3 evaluators; proposal brings the economic buyer (earlier, in evaluation, when `eb_early`) and
    # the rep's executive sponsor; negotiation brings legal or procurement where the account has them.
    staff = np.arange(world.company_start[account], world.company_start[account] + world.company_size[account])
    senior = staff[world.level[staff] >= 3]
    champion = int(rng.choice(staff))
    economic_buyer = int(rng.choice(senior)) if senior.size else int(rng.choice(staff))
    others = [int(x) for x in rng.choice(staff, min(staff.size, int(rng.integers(1, 4))), replace=False)]
    gatekeepers = staff[np.isin(world.function[staff], (FUNCTIONS.index("legal"), FUNCTIONS.index("procurement")))]
    gatekeeper = int(rng.choice(gatekeepers)) if gatekeepers.size and rng.random() < 0.95 else None
    sponsors = reps_by_tenant[t][reps_by_tenant[t] != rep]
    sponsor = int(rng.choice(sponsors)) if sponsors.size and rng.random() < 0.9 else None
    contacts = {champion: "champion", economic_buyer: "economic_buyer"}
    for o in others:
        contacts.setdefault(o, "influencer")
    warm_intro = bool(rng.random() < 0.3)
    eb_early = bool(rng.random() < 0.5)
    eb_engaged = eb_early or rng.random() < 0.8
    created = WINDOW_START + int(rng.random() * (AS_OF - WINDOW_START - 20 * DAY))
    if eb_early:  # an economic buyer engaged before the proposal shortens proposal and negotiation
        days = days * np.array([1.0, 1.0, 0.6, 0.6])
    # True process: stage durations, stalls, and where (if anywhere) it is lost.
    win_p = 0.25 + 0.2 * warm_intro + 0.2 * eb_early
    stage_start, stalled, now, outcome = [created], [], created, "won"
    for s in range(len(STAGES)):
        dur = rng.gamma(4.0, days[s] / 4.0)
        if rng.random() < stall_p[s]:
            stalled.append(STAGES[s])
            dur *= 3
            win_p = max(0.05, win_p - 0.1)
        now += int(dur * DAY)
        if rng.random() > (win_p**0.25):  # lost somewhere along the way
            outcome = "lost"
            break
        if s + 1 < len(STAGES):
            stage_start.append(now)
    close_ts = now
    is_open = close_ts > AS_OF
    observed = [x for x in stage_start if x <= AS_OF]
    true_stage = STAGES[len(observed) - 1] if is_open else ("closed_won" if outcome == "won" else "closed_lost")
    # CRM as the rep keeps it: right and current with probability `hygiene`, else lagging or wrong.
    crm_names, crm_starts = _crm_stages(observed, created, cfg.hygiene, rng)
    deal_id = f"D{d:07d}"
    owner = world.email(rep)
    deal: dict[str, Any] = {
        "kind": "deal",
        "tenant": tenant,
        "id": deal_id,
        "account": world.domains[account],
        "owner": owner,
        "amount": round(float(rng.lognormal(10, 1)), 2),
        "created": int(created),
        "product": "platform" if rng.random() < 0.6 else "analytics",
        "stages": [{"stage": n, "ts": int(s)} for n, s in zip(crm_names, crm_starts)],
    }
    if not is_open:
        deal["outcome"], deal["closed"] = outcome, int(close_ts)
    # Its own random stream, so that adding it left every other generated value as it was.
    deal["close_date"] = _crm_close_date(created, close_ts, is_open, cfg.hygiene, np.random.default_rng((cfg.seed, d)))
    out["deals"].append(_j(deal))
    crm_only = bool(rng.random() < cfg.crm_only_share)
    if warm_intro and not crm_only:  # the introduction: a colleague of the rep already knows the champion
        _prior_tie(world, tenant, t, rep, champion, created, rng, out)
    listed = [c for c, role in contacts.items() if role != "economic_buyer" or rng.random() < 0.7]
    for c in listed:
        out["deal_contacts"].append(
            _j(
                {
                    "kind": "deal_contact",
                    "tenant": tenant,
                    "deal": deal_id,
                    "email": world.email(c),
                    "role": contacts[c],
                }
            )
        )
    # Engagement that matches the true stage: who, how often, how senior, meetings vs emails.
    end = min(close_ts, AS_OF)
    n_ev = 0
    joins = [
        [champion],
        others + ([economic_buyer] if eb_early else []),
        [economic_buyer] if eb_engaged and not eb_early else [],
        [] if gatekeeper is None else [gatekeeper],
    ]
    for s, start in enumerate(observed if not crm_only else []):
        stop = min(observed[s + 1] if s + 1 < len(observed) else end, end)
        span_days = max(1, (stop - start) // DAY)
        joining = joins[s]
        people = [p for k in range(s + 1) for p in joins[k]]
        sellers = [rep] + ([sponsor] if s >= 2 and sponsor is not None else [])
        rate = (0.25, 0.4, 0.5, 0.6)[s] * (0.3 if STAGES[s] in stalled else 1.0)
        # The stage opens with a kickoff meeting with whoever joins now; then the stage's everyday traffic.
        kickoff = [(int(start + rng.random() * 2 * DAY), who, "meeting", sellers[-1]) for who in joining]
        traffic = [
            (
                int(start + rng.random() * (stop - start)),
                people[int(rng.integers(0, len(people)))],
                "meeting" if rng.random() < (0.05, 0.3, 0.25, 0.2)[s] else "email",
                sellers[int(rng.integers(0, len(sellers)))],
            )
            for _ in range(int(rng.poisson(rate * span_days)))
        ]
        for ts, who, kind, seller in kickoff + traffic:
            if ts >= end:
                continue
            out["interactions"].append(
                _j(
                    {
                        "kind": "interaction",
                        "tenant": tenant,
                        "id": f"{deal_id}-{n_ev}",
                        "type": kind,
                        "ts": ts,
                        "from": world.email(seller),
                        "to": [world.email(who)],
                        "deal": deal_id,
                    }
                )
            )
            n_ev += 1
            if kind == "email" and rng.random() < (0.5, 0.65, 0.7, 0.75)[s]:  # a reply, after a stage-dependent delay
                reply = ts + int(rng.exponential((3.0, 1.5, 1.0, 0.8)[s]) * DAY)
                if reply < end:
                    out["interactions"].append(
                        _j(
                            {
                                "kind": "interaction",
                                "tenant": tenant,
                                "id": f"{deal_id}-{n_ev}",
                                "type": "email",
                                "ts": reply,
                                "from": world.email(who),
                                "to": [world.email(seller)],
                                "deal": deal_id,
                            }
                        )
                    )
                    n_ev += 1
    # Planted signals nobody on the deal sees: an ops/finance person at the account who is not a contact.
    planted = []
    bystanders = [int(x) for x in staff if int(x) not in contacts]
    if is_open and bystanders and rng.random() < 0.4:
        who = bystanders[int(rng.integers(0, len(bystanders)))]
        ts = int(max(created, AS_OF - rng.random() * 30 * DAY))
        sid = f"S{deal_id}-poll"
        out["signals"].append(
            _j(
                {
                    "kind": "signal",
                    "tenant": tenant,
                    "id": sid,
                    "type": "poll_answer",
                    "ts": ts,
                    "email": world.email(who),
                    "topic": "contract_expiry",
                    "value": str(rng.choice(["0-3_months", "4-6_months", "10-12_months"])),
                }
            )
        )
        planted.append({"signal": sid, "kind": "poll_answer", "why": "contract expiry answer by a non-contact"})
    if is_open and rng.random() < 0.3:
        sid = f"S{deal_id}-pricing"
        out["signals"].append(
            _j(
                {
                    "kind": "signal",
                    "tenant": tenant,
                    "id": sid,
                    "type": "page_visit",
                    "ts": int(AS_OF - rng.random() * 14 * DAY),
                    "email": world.email(champion),
                    "topic": "pricing",
                    "value": "pricing_page",
                }
            )
        )
        planted.append({"signal": sid, "kind": "page_visit", "why": "champion visited pricing"})
    if is_open and rng.random() < 0.1:  # the champion leaves for another company
        left = int(AS_OF - rng.random() * 60 * DAY)
        out["employment"].append(
            _j(
                {
                    "kind": "employment",
                    "tenant": tenant,
                    "email": world.email(champion),
                    "company": world.domains[account],
                    "from": WINDOW_START - 400 * DAY,
                    "to": left,
                    "title_level": TITLE_LEVELS[world.level[champion]],
                    "function": FUNCTIONS[world.function[champion]],
                }
            )
        )
        planted.append({"signal": f"job_change:{deal_id}", "kind": "job_change", "why": "champion left the account"})
    if is_open and bystanders and rng.random() < 0.1:  # a new executive joins the account
        who = bystanders[int(rng.integers(0, len(bystanders)))]
        out["employment"].append(
            _j(
                {
                    "kind": "employment",
                    "tenant": tenant,
                    "email": world.email(who),
                    "company": world.domains[account],
                    "from": int(AS_OF - rng.random() * 45 * DAY),
                    "title_level": "vp",
                    "function": FUNCTIONS[world.function[who]],
                }
            )
        )
        planted.append({"signal": f"new_executive:{deal_id}", "kind": "new_executive", "why": "new VP at the account"})
    _background_signals(world, tenant, deal_id, staff, created, rng, out)
    for p in planted:
        out["signals_truth"].append(_j({"tenant": tenant, "deal": deal_id, **p}))
    out["deals_truth"].append(
        _j(
            {
                "tenant": tenant,
                "deal": deal_id,
                "as_of": AS_OF,
                "true_stage": true_stage,
                "open": is_open,
                "outcome": outcome if not is_open else None,
                "close_ts": int(close_ts),
                "true_stage_starts": [{"stage": STAGES[i], "ts": int(s)} for i, s in enumerate(stage_start)],
                "crm_stage": crm_names[-1],
                "crm_correct": crm_names[-1] == STAGES[len(observed) - 1],
                "buyer_type": {"industry": industry, "enterprise": bool(enterprise)},
                "stalled": stalled,
                "warm_intro": warm_intro,
                "economic_buyer_engaged": eb_engaged,
                "economic_buyer_early": eb_early,
                "crm_only": crm_only,
            }
        )
    )


def _prior_tie(
    world: _World,
    tenant: str,
    t: int,
    rep: int,
    champion: int,
    created: int,
    rng: np.random.Generator,
    out: dict[str, list[str]],
) -> None:
    """Interactions, before the deal, between the champion and the rep or a colleague of the rep."""
    colleagues = np.flatnonzero(world.member_tenant == t)
    introducer = rep if rng.random() < 0.4 else int(rng.choice(colleagues))
    for k in range(int(rng.integers(3, 9))):
        ts = int(created - (30 + rng.random() * 270) * DAY)
        a, b = (introducer, champion) if rng.random() < 0.55 else (champion, introducer)
        out["interactions"].append(
            _j(
                {
                    "kind": "interaction",
                    "tenant": tenant,
                    "id": f"intro-{created}-{champion}-{k}",
                    "type": "email" if rng.random() < 0.7 else "meeting",
                    "ts": ts,
                    "from": world.email(a),
                    "to": [world.email(b)],
                }
            )
        )


_BACKGROUND_SIGNALS = (
    ("webinar_attended", "industry_trends", "attended"),
    ("content_download", "whitepaper", "roi_guide"),
    ("poll_answer", "event_rating", "4_of_5"),
    ("page_visit", "blog", "blog_post"),
)


def _background_signals(
    world: _World,
    tenant: str,
    deal_id: str,
    staff: np.ndarray,
    created: int,
    rng: np.random.Generator,
    out: dict[str, list[str]],
) -> None:
    """Everyday signals by people at the account that say little about the deal: the noise that a
    planted signal has to rise above."""
    for k in range(int(rng.poisson(2.0))):
        kind, topic, value = _BACKGROUND_SIGNALS[int(rng.integers(0, len(_BACKGROUND_SIGNALS)))]
        ts = int(created + rng.random() * (AS_OF - created))
        out["signals"].append(
            _j(
                {
                    "kind": "signal",
                    "tenant": tenant,
                    "id": f"S{deal_id}-bg{k}",
                    "type": kind,
                    "ts": ts,
                    "email": world.email(int(rng.choice(staff))),
                    "topic": topic,
                    "value": value,
                }
            )
        )
