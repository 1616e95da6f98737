"""The domain vocabulary every layer shares: record and event kinds, title levels and functions,
deal-contact roles, the bounds of every time and number relgraph accepts, and how a time is read
(how a job title becomes a level and a function: core/titles.py). No I/O."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from typing import Any

from core.errors import RecordError

MAX_ECHO_CHARS = 40  # how much of a bad value an error message repeats

KINDS = ("member", "employment", "deal", "deal_contact", "interaction", "signal")
INTERACTION_KINDS = ("email", "meeting", "call", "message")
TWO_WAY_INTERACTIONS = frozenset({"meeting", "call"})  # both sides take part by nature
SIGNAL_KINDS = ("poll_answer", "page_visit", "webinar_attended", "content_download", "job_change", "intent_topic")
TITLE_LEVELS = ("ic", "manager", "director", "vp", "c_level")
FUNCTIONS = (
    "executive",
    "sales",
    "marketing",
    "finance",
    "operations",
    "engineering",
    "it",
    "legal",
    "procurement",
    "hr",
    "product",
    "other",
)
DEAL_CONTACT_ROLES = (
    "champion",
    "economic_buyer",
    "decision_maker",
    "influencer",
    "user",
    "legal",
    "procurement",
    "other",
)
OUTCOMES = ("open", "won", "lost")
SIZE_BANDS = ("1-10", "11-50", "51-200", "201-1000", "1001-5000", "5001+")  # company size bands
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


def size_band(employees: int) -> str:
    """The size band of a company of `employees` people."""
    for upper, band in zip((10, 50, 200, 1000, 5000), SIZE_BANDS):
        if employees <= upper:
            return band
    return SIZE_BANDS[-1]


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
                return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except (ValueError, OverflowError):
            pass
        else:
            if parsed.tzinfo is None:
                raise RecordError(
                    f"field {name!r} needs a UTC offset (e.g. 2026-03-01T09:30:00Z), got {echo(text)}", name
                )
            try:
                return int(parsed.timestamp())
            except (ValueError, OverflowError):
                return MAX_TIME
    raise RecordError(f"field {name!r} must be epoch seconds or ISO 8601, got {echo(value)}", name)
