"""One monotonic deadline per action, derived from Pacemaker's op timeout."""

from __future__ import annotations

import time
from typing import Callable

Clock = Callable[[], float]


class Deadline:
    """A point in monotonic time by which the action must have returned."""

    def __init__(self, seconds: float, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self.total = max(0.0, seconds)
        self.end = clock() + self.total

    @classmethod
    def until(cls, end: float, clock: Clock = time.monotonic) -> Deadline:
        d = cls(0.0, clock)
        d.end = end
        d.total = max(0.0, end - clock())
        return d

    def now(self) -> float:
        return self._clock()

    def remaining(self) -> float:
        return max(0.0, self.end - self._clock())

    def expired(self) -> bool:
        return self._clock() >= self.end

    def before(self, reserve_s: float) -> Deadline:
        """A deadline ``reserve_s`` seconds earlier: the time left once a tail is kept back."""
        return Deadline.until(self.end - reserve_s, self._clock)

    def bound(self, at_most_s: float) -> float:
        """Seconds to allow one step: ``at_most_s`` but never past this deadline."""
        return max(0.0, min(at_most_s, self.remaining()))


def for_action(meta_timeout_ms: int | None, default_s: float, margin_s: float,
               clock: Clock = time.monotonic) -> Deadline:
    """The action's deadline: the op timeout (or the metadata default) less a safety margin
    for process start-up, the final write and the executor noticing our exit."""
    total = meta_timeout_ms / 1000.0 if meta_timeout_ms and meta_timeout_ms > 0 else default_s
    return Deadline(total - min(margin_s, total * 0.1), clock)
