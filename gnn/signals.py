"""Deal signals: events around a deal's account that matter to it, ranked.

Candidates come from anyone connected to the account in the graph, not only the deal's listed
contacts: signals (poll answers, page visits, webinars, downloads, intent topics) that the deal's
tenant ingested from people who work or worked at the account or are on the deal; contacts who
left the account; new executives there; and the deal going silent. Relevance is a documented rule,
not a learned model (`signal-rules-v1`): a weight per kind and topic, halved every `half_life`
days since the event, times 1.0 for a listed contact and 0.9 for anyone else at the account."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gnn.deals import DAY
from graph.deal_bundle import Deal, DealBundle, Job

RANKER_VERSION = "signal-rules-v1"
LOOKBACK_DAYS = 365
SILENT_AFTER_DAYS = 21
_SENIOR_LEVELS = ("vp", "c_level")
# (kind, topic or "*") -> (weight, half-life in days, why it matters)
_RULES: dict[tuple[str, str], tuple[float, float, str]] = {
    ("poll_answer", "contract_expiry"): (1.0, 180.0, "says when their current contract ends: the buying window"),
    ("poll_answer", "*"): (0.3, 30.0, "answered a poll"),
    ("page_visit", "pricing"): (0.85, 14.0, "looked at pricing: budget is being sized"),
    ("page_visit", "*"): (0.2, 14.0, "visited your site"),
    ("intent_topic", "*"): (0.5, 30.0, "researching the topic"),
    ("webinar_attended", "*"): (0.25, 30.0, "attended a webinar"),
    ("content_download", "*"): (0.25, 30.0, "downloaded content"),
    ("job_change", "*"): (0.6, 90.0, "changed jobs"),
    ("contact_left", "*"): (0.9, 90.0, "a contact on this deal left the account: re-establish the relationship"),
    ("new_executive", "*"): (0.75, 90.0, "a new executive at the account may reset priorities and budget"),
    ("went_silent", "*"): (0.7, 0.0, "the buyer side has gone quiet"),
}


@dataclass(frozen=True)
class RankedSignal:
    kind: str
    topic: str
    value: str
    ts: int
    pid: str  # who; "" for the deal itself (went silent)
    why: str
    relevance: float


def rank_signals(
    data: DealBundle, deal: Deal, as_of: int, limit: int, visible: Callable[[str], bool]
) -> list[RankedSignal]:
    """The `limit` most relevant signals around `deal` at `as_of`, about people `visible` says the
    deal's tenant may see (a signal about anyone else is left out, not masked: its time and kind
    would still be another tenant's data)."""
    found = [*_ingested(data, deal, as_of), *_job_moves(data, deal, as_of), *_silence(deal, as_of)]
    found = [s for s in found if not s.pid or visible(s.pid)]
    found.sort(key=lambda s: (-s.relevance, -s.ts, s.kind, s.pid))
    return found[:limit]


def _score(kind: str, topic: str, ts: int, as_of: int, contact: bool) -> tuple[float, str]:
    weight, half_life, why = _RULES.get((kind, topic)) or _RULES[(kind, "*")]
    decay = 0.5 ** ((as_of - ts) / DAY / half_life) if half_life > 0 else 1.0
    return min(1.0, max(0.0, weight * decay * (1.0 if contact else 0.9))), why  # scalars: NumPy's per-call cost


def _ingested(data: DealBundle, deal: Deal, as_of: int) -> list[RankedSignal]:
    since = as_of - LOOKBACK_DAYS * DAY
    account = data.account_people(deal.cid, deal.tenant)
    found = account.signals[bisect_left(account.signal_times, since) : bisect_right(account.signal_times, as_of)]
    found += [  # listed contacts who never worked at the account
        s
        for pid in deal.contacts
        if pid not in account.staff
        for s in data.signals.get((deal.tenant, pid), ())
        if since <= s.ts <= as_of
    ]
    out = []
    for s in found:
        relevance, why = _score(s.kind, s.topic, s.ts, as_of, s.pid in deal.contacts)
        role = deal.contacts.get(s.pid)
        who = f"the deal's {role.replace('_', ' ')}" if role else "someone at the account who is not on the deal"
        out.append(RankedSignal(s.kind, s.topic, s.value, s.ts, s.pid, f"{who} {why}", relevance))
    return out


def _job_moves(data: DealBundle, deal: Deal, as_of: int) -> list[RankedSignal]:
    """Listed contacts who left the account, and executives who joined it since shortly before the
    deal was created (the account's jobs by start time: only those that began in the window)."""
    since = as_of - LOOKBACK_DAYS * DAY
    joined_after = max(since, deal.created - 90 * DAY + 1)

    def new_executive(pid: str, job: Job) -> RankedSignal:
        relevance, why = _score("new_executive", "*", job.start, as_of, pid in deal.contacts)
        return RankedSignal("new_executive", "joined_account", job.level, job.start, pid, why, relevance)

    out = []
    for pid, role in deal.contacts.items():
        for job in data.jobs.get(pid, ()):
            if job.cid != deal.cid:
                continue
            if since <= job.end <= as_of:
                relevance, why = _score("contact_left", "*", job.end, as_of, True)
                out.append(RankedSignal("job_change", "left_account", role, job.end, pid, why, relevance))
            elif job.level in _SENIOR_LEVELS and joined_after <= job.start <= as_of:
                out.append(new_executive(pid, job))
    account = data.account_people(deal.cid, deal.tenant)
    started = account.jobs[bisect_left(account.job_starts, joined_after) : bisect_right(account.job_starts, as_of)]
    out += [new_executive(pid, job) for pid, job in started if pid not in deal.contacts and job.level in _SENIOR_LEVELS]
    return out


def _silence(deal: Deal, as_of: int) -> list[RankedSignal]:
    """An open deal whose buyer side was active (3+ interactions) and has said nothing for 3 weeks."""
    if deal.closed >= 0 and deal.closed <= as_of:
        return []
    from_buyer = deal.ts[deal.inbound & (deal.ts <= as_of)]
    if np.sum(deal.ts <= as_of) < 3 or from_buyer.size == 0 or as_of - int(from_buyer[-1]) < SILENT_AFTER_DAYS * DAY:
        return []
    quiet_days = (as_of - int(from_buyer[-1])) // DAY
    relevance, why = _score("went_silent", "*", int(from_buyer[-1]), as_of, True)
    return [
        RankedSignal(
            "went_silent",
            "no_buyer_reply",
            f"{quiet_days}_days",
            int(from_buyer[-1]),
            "",
            f"{why}: no message from the buyer in {quiet_days} days",
            relevance,
        )
    ]
