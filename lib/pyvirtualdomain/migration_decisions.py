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


# A round whose dirty rate is at least this share of the transfer rate never converges.
STUCK_DIRTY_SHARE = 0.8
# Rounds compared to see the amount left shrink: the latest against the one this far back.
TREND_ROUNDS = 2
# The amount left must shrink by this share over TREND_ROUNDS, else the migration is stuck.
TREND_SHRINK = 0.9


class Convergence:
    """Whether a precopy migration will finish in time, from the trend over its rounds.

    One sample says little: within a round the amount left swings from a few MiB to tens of
    MiB as the pass sweeps memory the guest keeps dirtying, so "left / rate > time left" stays
    false until the last seconds, too late for any step to work. Per round this keeps the
    least and the most left, and the transfer and dirty rates: from the second round on a
    migration is stuck when the guest dirties memory nearly as fast as it is sent, or when the
    least left no longer shrinks from round to round; and it is late when the most left of
    the last two rounds, at the rate memory is sent net of dirtying, needs more than the time
    left minus what the next steps need to work (``reserve_s``). A stuck migration is steered
    when the time left comes down to that reserve; a late one at once."""

    def __init__(self) -> None:
        self.least: dict[int, int] = {}
        self.most: dict[int, int] = {}
        self.iteration = 0
        self.bytes_per_s = 0
        self.dirty_bytes_per_s = 0

    def add(self, iteration: int, remaining_bytes: int, bytes_per_s: int,
            dirty_bytes_per_s: int) -> None:
        self.iteration = max(self.iteration, iteration)
        it = iteration
        self.least[it] = min(self.least.get(it, remaining_bytes), remaining_bytes)
        self.most[it] = max(self.most.get(it, remaining_bytes), remaining_bytes)
        if bytes_per_s > 0:
            self.bytes_per_s = bytes_per_s
        if iteration >= 2:  # the first pass dirties nothing by definition: no rate yet
            self.dirty_bytes_per_s = max(dirty_bytes_per_s, 0)

    def left_bytes(self) -> int:
        """The most left over the current and the previous round (the swing's top), the
        first pass (the whole memory) left out once a later round began."""
        first = 2 if self.iteration >= 2 else 1
        rounds = [r for r in self.most if r >= max(first, self.iteration - 1)]
        return max((self.most[r] for r in rounds), default=0)

    def needed_s(self) -> float | None:
        """Seconds the migration needs at its trend (None: no rate measured yet, or it does
        not converge at all)."""
        if self.bytes_per_s <= 0:
            return None
        net = self.bytes_per_s - self.dirty_bytes_per_s
        if net <= 0:
            return None
        return self.left_bytes() / net

    def stuck(self) -> str | None:
        """Why the migration will not converge on its own (None: it may)."""
        if self.iteration < 2 or self.bytes_per_s <= 0:
            return None
        mib = 1024 * 1024
        if self.dirty_bytes_per_s >= STUCK_DIRTY_SHARE * self.bytes_per_s:
            return (f"the guest dirties {self.dirty_bytes_per_s / mib:.1f} MiB/s, "
                    f"{self.bytes_per_s / mib:.1f} MiB/s are sent")
        done = sorted(r for r in self.least if r < self.iteration)
        if len(done) > TREND_ROUNDS:
            latest, earlier = self.least[done[-1]], self.least[done[-1 - TREND_ROUNDS]]
            if latest > TREND_SHRINK * earlier:
                return (f"after {len(done)} rounds {latest / mib:.0f} MiB are still left "
                        f"({earlier / mib:.0f} MiB {TREND_ROUNDS} rounds before)")
        return None

    def steer_reason(self, time_left_s: float, reserve_s: float) -> str | None:
        """Why to steer now (None: not yet). A stuck migration is steered once the time left
        is what the steps need (``reserve_s``) plus one steering interval, not at once: until
        then libvirt's own downtime limit holds, and a migration that converges after all
        (a lucky round) costs the guest no longer pause than it would have without us."""
        if self.bytes_per_s <= 0:
            return None
        why = self.stuck()
        if why:
            return why if time_left_s <= reserve_s + STEER_EVERY_S else None
        needed = self.needed_s()
        if needed is not None and needed > time_left_s - reserve_s:
            return (f"{self.left_bytes() / 1024 / 1024:.0f} MiB left need {needed:.0f} s, "
                    f"{time_left_s:.0f} s left")
        return None


def step_reserve_s(action: str, step: int, left_bytes: int, bytes_per_s: int) -> float:
    """What the remaining steps of ``action`` need to work once taken: each downtime step a
    few seconds to show in the figures and a last pass; post-copy the time to pull what is
    left at the transfer rate (migrate_to waits for it)."""
    last_pass = left_bytes / bytes_per_s if bytes_per_s > 0 else 0.0
    if action == "downtime":
        steps_left = max(len(DOWNTIME_STEPS) - step, 0)
        return steps_left * STEER_EVERY_S + last_pass
    if action == "postcopy" and step == 0:
        return 2 * last_pass + STEER_EVERY_S
    return 0.0


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
