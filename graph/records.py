"""The public ingest format (DESIGN §7): validation of each record kind and its normalization into
the pseudonymized row that the writer stores. Free text never passes: titles become a level and a
function, signal topics and values must be short codes, and emails become pids here.

Field-by-field documentation with examples: docs/ingest-format.md."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from typing import Any

from core.errors import RecordError
from core.titles import normalize_title
from core.vocabulary import (
    DEAL_CONTACT_ROLES,
    FUNCTIONS,
    INTERACTION_KINDS,
    KINDS,
    MAX_AMOUNT,
    MAX_COMPANY_SIZE,
    MAX_RECIPIENTS,
    MAX_STAGE_CHANGES,
    MAX_TITLE_CHARS,
    OUTCOMES,
    SIGNAL_KINDS,
    TITLE_LEVELS,
    echo,
    is_code,
    is_record_id,
    is_tenant_id,
    parse_time,
    size_band,
)
from graph.pseudonymize import Pseudonymizer, normalize_domain


def activity_id(*parts: object) -> str:
    """A stable id for an event that came without one, so re-ingesting it is recognised."""
    return "h" + hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:24]


# -- field readers ----------------------------------------------------------------------------


def _get(rec: Mapping[str, Any], name: str, required: bool = True) -> Any:
    value = rec.get(name)
    if value is None or value == "":
        if required:
            raise RecordError(f"missing required field {name!r}", name)
        return None
    return value


def _pattern(
    rec: Mapping[str, Any], name: str, valid: Callable[[object], bool], what: str, required: bool = True
) -> str | None:
    value = _get(rec, name, required)
    if value is None:
        return None
    if not isinstance(value, str) or not valid(value):
        raise RecordError(f"field {name!r} must be {what}, got {echo(value)}", name)
    return value


def _choice(rec: Mapping[str, Any], name: str, choices: tuple[str, ...], required: bool = True) -> str | None:
    value = _get(rec, name, required)
    if value is None:
        return None
    if not isinstance(value, str) or value not in choices:
        raise RecordError(f"field {name!r} must be one of {', '.join(choices)}; got {echo(value)}", name)
    return str(value)


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
    return (
        _choice(rec, "title_level", TITLE_LEVELS, False) or level,
        _choice(rec, "function", FUNCTIONS, False) or function,
    )


# -- record kinds -----------------------------------------------------------------------------
# Each parser returns the row the writer stores (graph/ingest.py); keys are the Cypher parameters.


def _member(rec: Mapping[str, Any], tenant: str, pseudo: Pseudonymizer) -> dict[str, Any]:
    level, function = _level_and_function(rec)
    return {
        "pid": _email_pid(rec, "email", pseudo),
        "role": _pattern(rec, "role", is_code, "a short code", False) or "member",
        "team": _pattern(rec, "team", is_code, "a short code", False) or "",
        "level": level,
        "function": function,
    }


def _employment(rec: Mapping[str, Any], tenant: str, pseudo: Pseudonymizer) -> dict[str, Any]:
    level, function = _level_and_function(rec)
    start = _time(rec, "from")
    end = _time(rec, "to", False)
    if end is not None and start is not None and end < start:
        raise RecordError("field 'to' is before 'from'", "to")
    employees = _number(rec, "company_size", MAX_COMPANY_SIZE, False)
    return {
        "pid": _email_pid(rec, "email", pseudo),
        "cid": _domain(rec, "company"),
        "level": level,
        "function": function,
        "from": start,
        "to": -1 if end is None else end,
        "industry": _pattern(rec, "company_industry", is_code, "a short code", False) or "",
        "size_band": size_band(int(employees)) if employees is not None else "",
    }


def _deal(rec: Mapping[str, Any], tenant: str, pseudo: Pseudonymizer) -> dict[str, Any]:
    deal_id = _pattern(rec, "id", is_record_id, "an id of letters, digits and _.:-")
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
        names.append(_pattern(change, "stage", is_code, "a short stage code"))
        times.append(parse_time(change.get("ts"), f"stages[{i}].ts"))
    if times != sorted(times):
        raise RecordError("stage changes must be in time order", "stages")
    outcome = _choice(rec, "outcome", OUTCOMES, False) or "open"
    closed = _time(rec, "closed", False)
    if outcome != "open" and closed is None:
        raise RecordError(f"a deal with outcome {outcome!r} needs 'closed'", "closed")
    if closed is not None and created is not None and closed < created:
        raise RecordError("field 'closed' is before 'created'", "closed")
    if times and created is not None and times[0] < created:
        raise RecordError("a stage change is before 'created'", "stages")
    if times and closed is not None and times[-1] > closed:
        raise RecordError("a stage change is after 'closed'", "stages")
    close_date = _time(rec, "close_date", False)  # the CRM's expected close, as the rep keeps it
    if close_date is not None and created is not None and close_date < created:
        raise RecordError("field 'close_date' is before 'created'", "close_date")
    return {
        "deal_id": deal_id,
        "cid": _domain(rec, "account"),
        "owner": _email_pid(rec, "owner", pseudo),
        "amount": _number(rec, "amount", MAX_AMOUNT, False) or 0.0,
        "created": created,
        "product": _pattern(rec, "product", is_code, "a short code", False) or "",
        "stage_names": names,
        "stage_ts": times,
        "crm_stage": names[-1] if names else "",
        "closed": -1 if closed is None else closed,
        "outcome": outcome,
        "close_date": -1 if close_date is None else close_date,
    }


def _deal_contact(rec: Mapping[str, Any], tenant: str, pseudo: Pseudonymizer) -> dict[str, Any]:
    return {
        "deal_id": _pattern(rec, "deal", is_record_id, "a deal id"),
        "pid": _email_pid(rec, "email", pseudo),
        "role": _choice(rec, "role", DEAL_CONTACT_ROLES, False) or "other",
    }


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
    deal = _pattern(rec, "deal", is_record_id, "a deal id", False) or ""
    aid = _pattern(rec, "id", is_record_id, "an id", False) or activity_id(tenant, kind, ts, sender, *recipients)
    return {"id": aid, "kind": kind, "ts": ts, "from": sender, "to": recipients, "deal": deal}


def _signal(rec: Mapping[str, Any], tenant: str, pseudo: Pseudonymizer) -> dict[str, Any]:
    kind = _choice(rec, "type", SIGNAL_KINDS)
    ts = _time(rec, "ts")
    pid = _email_pid(rec, "email", pseudo)
    topic = _pattern(rec, "topic", is_code, "a short code (no free text)")
    value = _pattern(rec, "value", is_code, "a short code (no free text)", False) or ""
    aid = _pattern(rec, "id", is_record_id, "an id", False) or activity_id(tenant, kind, ts, pid, topic, value)
    return {
        "id": aid,
        "kind": kind,
        "ts": ts,
        "pid": pid,
        "topic": topic,
        "value": value,
        "deal": _pattern(rec, "deal", is_record_id, "a deal id", False) or "",
    }


_PARSERS: dict[str, Callable[[Mapping[str, Any], str, Pseudonymizer], dict[str, Any]]] = {
    "member": _member,
    "employment": _employment,
    "deal": _deal,
    "deal_contact": _deal_contact,
    "interaction": _interaction,
    "signal": _signal,
}


def parse_record(
    rec: Mapping[str, Any], pseudo: Pseudonymizer, default_kind: str | None = None
) -> tuple[str, str, dict[str, Any]]:
    """Validate one record and return (kind, tenant, row); raise RecordError with the reason."""
    if not isinstance(rec, Mapping):
        raise RecordError("a record must be a JSON object")
    kind = rec.get("kind") or default_kind
    if not isinstance(kind, str) or kind not in _PARSERS:
        raise RecordError(f"field 'kind' must be one of {', '.join(KINDS)}; got {echo(kind)}", "kind")
    tenant = _pattern(rec, "tenant", is_tenant_id, "a tenant id (lower-case letters, digits, _ and -)")
    assert tenant is not None
    return kind, tenant, _PARSERS[kind](rec, tenant, pseudo)
