"""The public ingest format (DESIGN §7): validation of each record kind and its normalization into
the pseudonymized row that the writer stores. Free text never passes: titles become a level and a
function, signal topics and values must be short codes, and emails become pids here.

Field-by-field documentation with examples: docs/ingest-format.md."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, timezone
from typing import Any

from graph.pseudonymize import MAX_ECHO_CHARS, Pseudonymizer, normalize_domain
from relgraph.errors import RecordError

KINDS = ("member", "employment", "deal", "deal_contact", "interaction", "signal")
INTERACTION_KINDS = ("email", "meeting", "call", "message")
TWO_WAY_INTERACTIONS = frozenset({"meeting", "call"})  # both sides take part by nature
SIGNAL_KINDS = ("poll_answer", "page_visit", "webinar_attended", "content_download", "job_change", "intent_topic")
TITLE_LEVELS = ("ic", "manager", "director", "vp", "c_level")
FUNCTIONS = ("executive", "sales", "marketing", "finance", "operations", "engineering", "it", "legal",
             "procurement", "hr", "product", "other")
DEAL_CONTACT_ROLES = ("champion", "economic_buyer", "decision_maker", "influencer", "user", "legal",
                      "procurement", "other")
OUTCOMES = ("open", "won", "lost")
MAX_RECIPIENTS = 100
# The window every time must fall in (DESIGN §4, bounded input): from the Unix epoch to the start
# of 2100, so a time always fits the serving snapshot's uint32 seconds and an event code's int64.
MIN_TIME = 0  # 1970-01-01T00:00:00Z
MAX_TIME = 4_102_444_800  # 2100-01-01T00:00:00Z
MAX_AMOUNT = 1e15  # deal amounts, in the tenant's currency
MAX_COMPANY_SIZE = 10_000_000  # employees
MAX_TITLE_CHARS = 200
MAX_STAGE_CHANGES = 100

_TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
_CODE = re.compile(r"^[a-z0-9][a-z0-9_.:/+-]{0,63}\Z")

# Title keywords (regular expressions, matched as whole words) -> level, checked in order: the
# first match wins, so "VP of Sales Operations" is a vp, and "Director" is not a CTO.
_LEVEL_WORDS: tuple[tuple[str, str], ...] = (
    ("c_level", r"chief|ceo|cfo|cto|coo|cio|cmo|cro|president|founder|owner"),
    ("vp", r"vp|svp|evp|vice president|head of"),
    ("director", r"director"),
    ("manager", r"manager|lead|supervisor"),
)
_FUNCTION_WORDS: tuple[tuple[str, str], ...] = (
    ("procurement", r"procurement|purchasing|sourcing|buyer"),
    ("finance", r"finance|financial|cfo|accounting|controller|treasur\w*"),
    ("legal", r"legal|counsel|attorney|compliance"),
    ("it", r"it|information technology|cio|infrastructure|security"),
    ("engineering", r"engineer\w*|develop\w*|cto|software|r&d"),
    ("operations", r"operations|ops|coo|supply chain|logistics"),
    ("marketing", r"marketing|cmo|brand|growth"),
    ("sales", r"sales|account executive|business development|cro|revenue"),
    ("hr", r"hr|human resources|people|talent|recruit\w*"),
    ("product", r"product"),
    ("executive", r"ceo|president|founder|owner|chief"),
)
_LEVEL_RES = tuple((level, re.compile(rf"\b(?:{words})\b")) for level, words in _LEVEL_WORDS)
_FUNCTION_RES = tuple((fn, re.compile(rf"\b(?:{words})\b")) for fn, words in _FUNCTION_WORDS)


def normalize_title(title: str) -> tuple[str, str]:
    """Map a free-text job title to (title_level, function); the text itself is never stored."""
    text = title.lower()
    level = next((lvl for lvl, pattern in _LEVEL_RES if pattern.search(text)), "ic")
    function = next((fn for fn, pattern in _FUNCTION_RES if pattern.search(text)), "other")
    return level, function


def size_band(employees: int) -> str:
    for upper, band in ((10, "1-10"), (50, "11-50"), (200, "51-200"), (1000, "201-1000"), (5000, "1001-5000")):
        if employees <= upper:
            return band
    return "5001+"


def activity_id(*parts: object) -> str:
    """A stable id for an event that came without one, so re-ingesting it is recognised."""
    return "h" + hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:24]


# -- field readers ----------------------------------------------------------------------------

def is_tenant_id(value: object) -> bool:
    return isinstance(value, str) and bool(_TENANT.match(value))


def is_code(value: object) -> bool:
    """A short lower-case code: how relgraph carries anything descriptive (no free text)."""
    return isinstance(value, str) and bool(_CODE.match(value))


def is_record_id(value: object) -> bool:
    """A source system's id (a CRM deal id, an activity id)."""
    return isinstance(value, str) and bool(_ID.match(value))


def echo(value: Any) -> str:
    """A bad value as an error message may repeat it: short, so a hostile value cannot flood a log
    line or a gRPC status."""
    return repr(str(value)[:MAX_ECHO_CHARS])


def _get(rec: Mapping[str, Any], name: str, required: bool = True) -> Any:
    value = rec.get(name)
    if value is None or value == "":
        if required:
            raise RecordError(f"missing required field {name!r}", name)
        return None
    return value


def _pattern(rec: Mapping[str, Any], name: str, pattern: re.Pattern[str], what: str, required: bool = True) -> str | None:
    value = _get(rec, name, required)
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.match(value):
        raise RecordError(f"field {name!r} must be {what}, got {echo(value)}", name)
    return value


def _choice(rec: Mapping[str, Any], name: str, choices: tuple[str, ...], required: bool = True) -> str | None:
    value = _get(rec, name, required)
    if value is None:
        return None
    if not isinstance(value, str) or value not in choices:
        raise RecordError(f"field {name!r} must be one of {', '.join(choices)}; got {echo(value)}", name)
    return str(value)


def parse_time(value: Any, name: str = "ts") -> int:
    """Epoch seconds from an integer, or from ISO 8601 (a date, or a date-time with a UTC offset),
    within [MIN_TIME, MAX_TIME): anything else is a RecordError naming the field."""
    seconds = _seconds(value, name)
    if not MIN_TIME <= seconds < MAX_TIME:
        raise RecordError(f"field {name!r} must lie between 1970-01-01 and 2100-01-01, got {echo(value)}", name)
    return seconds


def _seconds(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise RecordError(f"field {name!r} must be a time", name)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RecordError(f"field {name!r} must be a finite time, got {echo(value)}", name)
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            # More digits than any time in the window can have is out of range, not a huge integer to build.
            return int(text) if len(text) <= 12 else MAX_TIME
        try:
            if len(text) == 10:
                d = date.fromisoformat(text)
                return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp())
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except (ValueError, OverflowError):
            pass
        else:
            if parsed.tzinfo is None:
                raise RecordError(f"field {name!r} needs a UTC offset (e.g. 2026-03-01T09:30:00Z), got {echo(text)}", name)
            try:
                return int(parsed.timestamp())
            except (ValueError, OverflowError):
                return MAX_TIME
    raise RecordError(f"field {name!r} must be epoch seconds or ISO 8601, got {echo(value)}", name)


def _time(rec: Mapping[str, Any], name: str, required: bool = True) -> int | None:
    value = _get(rec, name, required)
    return None if value is None else parse_time(value, name)


def _number(rec: Mapping[str, Any], name: str, upper: float, required: bool = True) -> float | None:
    """A finite number in [0, upper]."""
    value = _get(rec, name, required)
    if value is None:
        return None
    if isinstance(value, bool):
        raise RecordError(f"field {name!r} must be a number, got {echo(value)}", name)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise RecordError(f"field {name!r} must be a number, got {echo(value)}", name) from exc
    if not math.isfinite(number) or not 0 <= number <= upper:
        raise RecordError(f"field {name!r} must be a number between 0 and {upper:g}, got {echo(value)}", name)
    return number


def _email_pid(rec: Mapping[str, Any], name: str, pseudo: Pseudonymizer) -> str:
    value = _get(rec, name)
    if not isinstance(value, str):
        raise RecordError(f"field {name!r} must be an email address", name)
    try:
        return pseudo.pid(value)
    except RecordError as exc:
        raise RecordError(f"field {name!r}: {exc.reason}", name) from exc


def _domain(rec: Mapping[str, Any], name: str) -> str:
    value = _get(rec, name)
    try:
        return normalize_domain(str(value))
    except RecordError as exc:
        raise RecordError(f"field {name!r}: {exc.reason}", name) from exc


def _level_and_function(rec: Mapping[str, Any]) -> tuple[str, str]:
    title = _get(rec, "title", False)
    if title is not None and (not isinstance(title, str) or len(title) > MAX_TITLE_CHARS):
        raise RecordError(f"field 'title' must be text of at most {MAX_TITLE_CHARS} characters", "title")
    level, function = normalize_title(title) if title else ("ic", "other")
    return (_choice(rec, "title_level", TITLE_LEVELS, False) or level,
            _choice(rec, "function", FUNCTIONS, False) or function)


# -- record kinds -----------------------------------------------------------------------------
# Each parser returns the row the writer stores (graph/ingest.py); keys are the Cypher parameters.

def _member(rec: Mapping[str, Any], tenant: str, pseudo: Pseudonymizer) -> dict[str, Any]:
    level, function = _level_and_function(rec)
    return {"pid": _email_pid(rec, "email", pseudo), "role": _pattern(rec, "role", _CODE, "a short code", False) or "member",
            "team": _pattern(rec, "team", _CODE, "a short code", False) or "", "level": level, "function": function}


def _employment(rec: Mapping[str, Any], tenant: str, pseudo: Pseudonymizer) -> dict[str, Any]:
    level, function = _level_and_function(rec)
    start = _time(rec, "from")
    end = _time(rec, "to", False)
    if end is not None and start is not None and end < start:
        raise RecordError("field 'to' is before 'from'", "to")
    employees = _number(rec, "company_size", MAX_COMPANY_SIZE, False)
    return {"pid": _email_pid(rec, "email", pseudo), "cid": _domain(rec, "company"), "level": level,
            "function": function, "from": start, "to": -1 if end is None else end,
            "industry": _pattern(rec, "company_industry", _CODE, "a short code", False) or "",
            "size_band": size_band(int(employees)) if employees is not None else ""}


def _deal(rec: Mapping[str, Any], tenant: str, pseudo: Pseudonymizer) -> dict[str, Any]:
    deal_id = _pattern(rec, "id", _ID, "an id of letters, digits and _.:-")
    created = _time(rec, "created")
    stages = _get(rec, "stages", False) or []
    if isinstance(stages, str):  # CSV form: "discovery@2026-01-05;proposal@2026-02-01"
        stages = [dict(zip(("stage", "ts"), item.split("@", 1))) for item in stages.split(";") if item]
    if not isinstance(stages, list):
        raise RecordError("field 'stages' must be a list of {stage, ts}", "stages")
    if len(stages) > MAX_STAGE_CHANGES:
        raise RecordError(f"field 'stages' has {len(stages)} changes; at most {MAX_STAGE_CHANGES}", "stages")
    names, times = [], []
    for i, change in enumerate(stages):
        if not isinstance(change, Mapping):
            raise RecordError(f"stages[{i}] must be an object with 'stage' and 'ts'", "stages")
        names.append(_pattern(change, "stage", _CODE, "a short stage code"))
        times.append(parse_time(change.get("ts"), f"stages[{i}].ts"))
    if times != sorted(times):
        raise RecordError("stage changes must be in time order", "stages")
    outcome = _choice(rec, "outcome", OUTCOMES, False) or "open"
    closed = _time(rec, "closed", False)
    if outcome != "open" and closed is None:
        raise RecordError(f"a deal with outcome {outcome!r} needs 'closed'", "closed")
    if closed is not None and created is not None and closed < created:
        raise RecordError("field 'closed' is before 'created'", "closed")
    return {"deal_id": deal_id, "cid": _domain(rec, "account"), "owner": _email_pid(rec, "owner", pseudo),
            "amount": _number(rec, "amount", MAX_AMOUNT, False) or 0.0, "created": created,
            "product": _pattern(rec, "product", _CODE, "a short code", False) or "",
            "stage_names": names, "stage_ts": times, "crm_stage": names[-1] if names else "",
            "closed": -1 if closed is None else closed, "outcome": outcome}


def _deal_contact(rec: Mapping[str, Any], tenant: str, pseudo: Pseudonymizer) -> dict[str, Any]:
    return {"deal_id": _pattern(rec, "deal", _ID, "a deal id"), "pid": _email_pid(rec, "email", pseudo),
            "role": _choice(rec, "role", DEAL_CONTACT_ROLES, False) or "other"}


def _interaction(rec: Mapping[str, Any], tenant: str, pseudo: Pseudonymizer) -> dict[str, Any]:
    kind = _choice(rec, "type", INTERACTION_KINDS)
    ts = _time(rec, "ts")
    sender = _email_pid(rec, "from", pseudo)
    to = _get(rec, "to")
    if isinstance(to, str):
        to = [t for t in to.split(";") if t]
    if not isinstance(to, list) or not to:
        raise RecordError("field 'to' must be a non-empty list of email addresses", "to")
    if len(to) > MAX_RECIPIENTS:
        raise RecordError(f"field 'to' has {len(to)} recipients; at most {MAX_RECIPIENTS}", "to")
    recipients = sorted({_email_pid({"to": t}, "to", pseudo) for t in to} - {sender})
    if not recipients:
        raise RecordError("field 'to' names no one but the sender", "to")
    deal = _pattern(rec, "deal", _ID, "a deal id", False) or ""
    aid = _pattern(rec, "id", _ID, "an id", False) or activity_id(tenant, kind, ts, sender, *recipients)
    return {"id": aid, "kind": kind, "ts": ts, "from": sender, "to": recipients, "deal": deal}


def _signal(rec: Mapping[str, Any], tenant: str, pseudo: Pseudonymizer) -> dict[str, Any]:
    kind = _choice(rec, "type", SIGNAL_KINDS)
    ts = _time(rec, "ts")
    pid = _email_pid(rec, "email", pseudo)
    topic = _pattern(rec, "topic", _CODE, "a short code (no free text)")
    value = _pattern(rec, "value", _CODE, "a short code (no free text)", False) or ""
    aid = _pattern(rec, "id", _ID, "an id", False) or activity_id(tenant, kind, ts, pid, topic, value)
    return {"id": aid, "kind": kind, "ts": ts, "pid": pid, "topic": topic, "value": value,
            "deal": _pattern(rec, "deal", _ID, "a deal id", False) or ""}


_PARSERS: dict[str, Callable[[Mapping[str, Any], str, Pseudonymizer], dict[str, Any]]] = {
    "member": _member, "employment": _employment, "deal": _deal, "deal_contact": _deal_contact,
    "interaction": _interaction, "signal": _signal,
}


def parse_record(rec: Mapping[str, Any], pseudo: Pseudonymizer, default_kind: str | None = None) -> tuple[str, str, dict[str, Any]]:
    """Validate one record and return (kind, tenant, row); raise RecordError with the reason."""
    if not isinstance(rec, Mapping):
        raise RecordError("a record must be a JSON object")
    kind = rec.get("kind") or default_kind
    if not isinstance(kind, str) or kind not in _PARSERS:
        raise RecordError(f"field 'kind' must be one of {', '.join(KINDS)}; got {echo(kind)}", "kind")
    tenant = _pattern(rec, "tenant", _TENANT, "a tenant id (lower-case letters, digits, _ and -)")
    assert tenant is not None
    return kind, tenant, _PARSERS[kind](rec, tenant, pseudo)
