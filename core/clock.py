"""The one clock answers are computed at: the wall clock, or a fixed time (`RELGRAPH_AS_OF`) to
replay a dataset observed in the past. Injected wherever an answer depends on "now" (warm-path
recency, the link model's strengths, deal answers), so replaying moves all of them together."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    def now(self) -> int:
        """Epoch seconds."""
        ...


@dataclass(frozen=True)
class SystemClock:
    def now(self) -> int:
        return int(time.time())


@dataclass(frozen=True)
class FixedClock:
    as_of: int

    def now(self) -> int:
        return self.as_of


def clock_at(as_of: int) -> Clock:
    """A clock fixed at `as_of` (epoch seconds), or the wall clock when it is 0."""
    return FixedClock(as_of) if as_of else SystemClock()
