"""migration_decisions: when and how migrate_to steers, and what its outcome means."""

from __future__ import annotations

import pytest

from pyvirtualdomain.migration_decisions import (
    DOWNTIME_STEPS,
    STEER_EVERY_S,
    Steer,
    Verdict,
    judge,
    next_steer,
    steer_due,
)

MIB = 1024 * 1024


def test_steer_only_when_the_measured_rate_cannot_finish_in_time():
    # 100 MiB left at 10 MiB/s: 10 s needed
    assert steer_due(10 * MIB, 100 * MIB, time_left_s=5.0, since_last_steer_s=STEER_EVERY_S)
    assert not steer_due(10 * MIB, 100 * MIB, time_left_s=20.0, since_last_steer_s=60.0)
    # no rate measured yet: nothing to judge by
    assert not steer_due(0, 100 * MIB, time_left_s=1.0, since_last_steer_s=60.0)
    # the last step had no time to show in the figures
    assert not steer_due(10 * MIB, 100 * MIB, time_left_s=5.0,
                         since_last_steer_s=STEER_EVERY_S - 0.1)


def test_postcopy_is_switched_on_once():
    assert next_steer("postcopy", 0) == Steer(postcopy=True, downtime_ms=0, next_step=1)
    assert next_steer("postcopy", 1) is None


def test_downtime_grows_step_by_step_then_stops():
    taken = []
    step = 0
    while (s := next_steer("downtime", step)) is not None:
        assert not s.postcopy
        taken.append(s.downtime_ms)
        step = s.next_step
    assert tuple(taken) == DOWNTIME_STEPS
    assert taken == sorted(taken)


def test_abort_never_steers():
    assert next_steer("abort", 0) is None


@pytest.mark.parametrize("returned,failed,here,there,verdict,remove_incoming", [
    # libvirt's answer is checked against both hosts
    (True, False, False, True, Verdict.MIGRATED, False),
    (True, False, None, None, Verdict.MIGRATED, False),
    (True, False, True, True, Verdict.STILL_HERE, False),
    # the call failed but the guest ended on the target only: that is a migration
    (True, True, False, True, Verdict.MIGRATED, False),
    # failed: keeps running here, an incoming copy on the target is removed
    (True, True, True, True, Verdict.KEPT_HERE, True),
    (True, True, True, False, Verdict.KEPT_HERE, False),
    # failed and not running here: nobody can say where it runs
    (True, True, False, False, Verdict.UNCLEAR, False),
    (True, True, None, True, Verdict.UNCLEAR, False),
    (False, False, True, True, Verdict.NOT_ENDED, False),
])
def test_judge(returned, failed, here, there, verdict, remove_incoming):
    j = judge(returned, failed, here, there)
    assert j.verdict == verdict
    assert j.remove_incoming == remove_incoming
    assert j.error_overruled == (verdict == Verdict.MIGRATED and failed)


@pytest.mark.parametrize("returned,here,there,recover", [
    # the target died after the switch: nothing to recover from, and nothing to destroy
    (True, True, False, False),
    (True, True, None, False),
    # the link broke, both halves still there: ask libvirt to recover, destroy neither
    (True, True, True, True),
    (False, True, True, True),
])
def test_a_failed_postcopy_never_removes_either_side(returned, here, there, recover):
    """Issue 13 #11: after post-copy began, the source is paused and cannot resume; treating
    it as "keeps running here" destroyed the incoming copy on the target: the guest was
    lost."""
    j = judge(returned, True, here, there, postcopy=True)
    assert j.verdict == Verdict.POSTCOPY_FAILED
    assert not j.remove_incoming
    assert j.recover == recover


def test_a_postcopy_that_finished_is_a_migration():
    assert judge(True, False, False, True, postcopy=True).verdict == Verdict.MIGRATED
