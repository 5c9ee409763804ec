"""What migrate_to decides, as pure functions of what it observed: whether to steer a
migration that will not converge in time and how, and what a finished (or abandoned)
migration means for where the guest runs. actions/migrate.py only polls libvirt and applies
these; the unit tests exercise them directly."""

from __future__ import annotations

from enum import Enum

from .tuples import NamedTuple

# Downtime steps (ms) for migration_deadline_action=downtime.
DOWNTIME_STEPS = (300, 1000, 3000, 10000)
# Steer at most this often: each step needs a few seconds to show in the transfer figures.
STEER_EVERY_S = 3.0


def steer_due(bytes_per_s: int, remaining_bytes: int, time_left_s: float,
              since_last_steer_s: float) -> bool:
    """Whether the migration, at its measured rate, would not finish before it must be
    aborted. Judged as soon as a rate is measured (a slow first pass can alone outlast the
    timeout), then at most every STEER_EVERY_S."""
    if bytes_per_s <= 0 or since_last_steer_s < STEER_EVERY_S:
        return False
    return remaining_bytes / bytes_per_s > time_left_s


class Steer(NamedTuple):
    """One application of migration_deadline_action."""

    postcopy: bool  # switch to post-copy (else: allow downtime_ms of downtime)
    downtime_ms: int
    next_step: int


def next_steer(action: str, step: int) -> Steer | None:
    """The next steering step for ``action`` (abort|downtime|postcopy) after ``step`` steps
    already taken; None when there is nothing more to try."""
    if action == "postcopy" and step == 0:
        return Steer(True, 0, 1)
    if action == "downtime" and step < len(DOWNTIME_STEPS):
        return Steer(False, DOWNTIME_STEPS[step], step + 1)
    return None


class Verdict(Enum):
    MIGRATED = "the guest runs on the target only"
    STILL_HERE = "libvirt reported success but the guest still runs here"
    KEPT_HERE = "the migration failed and the guest keeps running here"
    NOT_ENDED = "the migration call did not return even after the abort"
    UNCLEAR = "the migration failed and where the guest runs is not clear"
    POSTCOPY_FAILED = ("the migration failed after post-copy began: neither host holds all of "
                       "the guest's memory")


class Judgement(NamedTuple):
    verdict: Verdict
    # The target holds an unfinished incoming copy that must go (the source still runs).
    remove_incoming: bool = False
    # libvirt's call failed although the guest ended on the target only.
    error_overruled: bool = False
    # Worth asking libvirt to recover the failed post-copy migration (the target still has
    # its part of the guest).
    recover: bool = False


def judge(returned: bool, failed: bool, here: bool | None, there: bool | None,
          postcopy: bool = False) -> Judgement:
    """Where the guest runs after the migration call: decided by reading both hosts
    (``here``/``there``: active on the source/target, None when it cannot be told), not only
    by what the call said (``returned``: it ended, ``failed``: with an error). ``postcopy``:
    the migration passed a post-copy switch-over; after it neither side may be destroyed,
    for each holds part of the guest's memory."""
    if not returned and not postcopy:
        return Judgement(Verdict.NOT_ENDED)
    moved = here is False and there is True
    if returned and (not failed or moved):
        if here:
            return Judgement(Verdict.STILL_HERE)
        return Judgement(Verdict.MIGRATED, error_overruled=failed)
    if postcopy:
        return Judgement(Verdict.POSTCOPY_FAILED, recover=bool(there))
    if here:
        return Judgement(Verdict.KEPT_HERE, remove_incoming=bool(there))
    return Judgement(Verdict.UNCLEAR)
