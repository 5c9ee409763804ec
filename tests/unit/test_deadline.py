"""The monotonic deadline."""

from __future__ import annotations

import pytest

from pyvirtualdomain.deadline import Deadline, for_action


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_deadline_arithmetic():
    clock = FakeClock()
    d = for_action(20000, 90, 1.0, clock)
    assert d.total == pytest.approx(19.0)
    assert for_action(None, 90, 1.0, clock).total == pytest.approx(89.0)
    assert for_action(2000, 90, 1.0, clock).total == pytest.approx(1.8)
    tail = d.before(5)
    clock.t += 10
    assert tail.remaining() == pytest.approx(4.0) and d.remaining() == pytest.approx(9.0)
    assert d.bound(3) == 3 and d.bound(100) == pytest.approx(9.0)
    clock.t += 100
    assert d.expired() and d.remaining() == 0 and Deadline(5, clock).remaining() == 5
