"""The never-on-two-hosts oracle: did a guest ever run twice at once?

The guest node VM (tests/harness/guestnode.py) writes, every ~100 ms, one line

    ORACLE <boot id> <counter> <uptime>

in ONE write to a virtio-serial port. Its domain XML connects that port to ONE file in the
cluster's shared directory (``<channel type='file'>`` with ``append='on'``), which whichever
qemu runs the guest opens for appending: a qemu on either node, before and after a live
migration, after a recovery. So the file is the guest's own account of when it ran:

* two copies running at once (the same guest started on both nodes, a migration that left
  the source running, a fenced node whose copy survived) both append, and the file then
  shows the lines of two boot ids interleaved: the first boot id comes back after the
  second one started;
* a live migration keeps the boot id and the counter goes on by exactly one: a hidden
  stop/start behind a "migration" shows as a new boot id;
* nothing is lost or torn: every line is one write of one whole record; counters of a boot
  go up by one without gaps and its uptimes never go back.

Why this channel: a virtio disk written synchronously would also survive the node being
fenced, but two copies would overwrite each other's blocks instead of interleaving, and
finding where a new boot starts writing needs a scan; a serial console sends byte by byte
(lines of two copies could tear into each other). A virtio-serial port hands the host whole
lines, qemu's file backend appends each with one write, and a power cut (SIGKILL) cannot
split a write to a local file. The file lives outside both nodes, so it survives either.

The checker is strict: any malformed line, gap, counter or uptime going back, or a boot id
returning after another started, is a failure (``OracleReport.problems``).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from .common import HarnessError

RECORD = re.compile(r"ORACLE ([0-9a-f-]{36}) (\d+) (\d+\.\d+)")


@dataclass(frozen=True)
class Record:
    line: int  # 0-based line number in the file
    boot_id: str
    counter: int
    uptime: float


@dataclass
class Run:
    """Consecutive records of one boot id."""

    boot_id: str
    first: Record
    last: Record
    count: int = 1


@dataclass
class OracleReport:
    records: list[Record] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def boot_ids(self) -> list[str]:
        return [r.boot_id for r in self.runs]

    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        runs = "; ".join(f"{r.boot_id[:8]} lines {r.first.line}-{r.last.line} counters "
                         f"{r.first.counter}-{r.last.counter}" for r in self.runs)
        n = len(self.records) or sum(r.count for r in self.runs)
        return f"{n} records, runs: {runs or 'none'}"


def runs_in_summary(summary: str) -> int:
    """How many boots an ``OracleReport.summary()`` names (a soak's JSON keeps only that)."""
    runs = summary.partition("runs: ")[2]
    return 0 if runs in ("", "none") else len(runs.split("; "))


class OracleChecker:
    """The checker, fed one line at a time (``check_lines`` feeds a list; the soak feeds a
    file that grows for hours, reading only what is new). ``start_line``: the line number of
    the first line fed; a boot whose records begin before it may begin at any counter, one
    that begins inside must begin at 0. ``keep_records`` False keeps only the runs (a long
    file's records would fill the memory)."""

    def __init__(self, start_line: int = 0, keep_records: bool = True) -> None:
        self.report = OracleReport()
        self.next_line = start_line
        self._start_line = start_line
        self._keep = keep_records
        self._finished: set[str] = set()

    def feed(self, text: str) -> list[str]:
        """Check the next line; the problems it shows (also added to the report)."""
        i = self.next_line
        self.next_line += 1
        rep = self.report
        found: list[str] = []
        m = RECORD.fullmatch(text)
        if m is None:
            found.append(f"line {i}: not a whole record: {text[:120]!r}")
            rep.problems.extend(found)
            return found
        rec = Record(i, m.group(1), int(m.group(2)), float(m.group(3)))
        if self._keep:
            rep.records.append(rec)
        cur = rep.runs[-1] if rep.runs else None
        if cur is not None and cur.boot_id == rec.boot_id:
            if rec.counter != cur.last.counter + 1:
                found.append(f"line {i}: boot {rec.boot_id[:8]}: counter {rec.counter} "
                             f"after {cur.last.counter} (lost or repeated records)")
            if rec.uptime < cur.last.uptime:
                found.append(f"line {i}: boot {rec.boot_id[:8]}: uptime went back "
                             f"({cur.last.uptime} -> {rec.uptime})")
            cur.last = rec
            cur.count += 1
            rep.problems.extend(found)
            return found
        if rec.boot_id in self._finished:
            found.append(
                f"line {i}: boot {rec.boot_id[:8]} writes again after boot "
                f"{cur.boot_id[:8] if cur else '?'} started: two copies of the guest ran at once")
        elif rep.runs or self._start_line == 0:
            if rec.counter != 0:
                found.append(f"line {i}: boot {rec.boot_id[:8]} starts at counter "
                             f"{rec.counter}, not 0 (records lost)")
        if cur is not None:
            self._finished.add(cur.boot_id)
        rep.runs.append(Run(rec.boot_id, rec, rec))
        rep.problems.extend(found)
        return found

    @property
    def last(self) -> Record | None:
        return self.report.runs[-1].last if self.report.runs else None


def check_lines(lines: list[str], start_line: int = 0) -> OracleReport:
    """Check ``lines`` (the file from line ``start_line`` on). A boot whose records begin
    before ``start_line`` may begin at any counter; one that begins inside must begin at 0."""
    checker = OracleChecker(start_line)
    for text in lines:
        checker.feed(text)
    return checker.report


# libvirt hands a file chardev with append='on' to virtlogd, which rotates it like a console
# log: at 2 MiB (its max_size) the file becomes "<path>.0" (older ones ".1", ".2"; max_backups
# 3, the oldest dropped) and a new "<path>" is started, at a line boundary.
ROTATED_BACKUPS = 3


def oracle_files(path: Path) -> list[Path]:
    """The oracle's files, oldest first: virtlogd's backups that exist, then ``path``."""
    path = Path(path)
    backups = [path.with_name(f"{path.name}.{i}") for i in reversed(range(ROTATED_BACKUPS))]
    return [b for b in backups if b.exists()] + [path]


class OracleTail:
    """An oracle file read as it grows: each ``poll`` checks the whole lines appended since
    the last one (a line being written stays for the next poll). The file is checked from
    its beginning, so anything anywhere in it is seen once. It is followed across virtlogd's
    rotations: the file being read is held open, read to its end once a new file took its
    name, and the new one is read from its start."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.checker = OracleChecker(0, keep_records=False)
        self._file: BinaryIO | None = None
        self._partial = b""

    def _read_new(self) -> bytes:
        if self._file is None:
            try:
                self._file = open(self.path, "rb")  # noqa: SIM115 - held across polls
            except FileNotFoundError:
                return b""
        data = self._file.read()
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return data  # being rotated: the new file comes with the next poll
        held = os.fstat(self._file.fileno())
        if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            # rotated: what was appended to the old file before it was renamed is read above
            self.close()
            data += self._read_new()
        return data

    def poll(self) -> list[str]:
        """The problems in the lines appended since the last poll."""
        data = self._partial + self._read_new()
        *whole, self._partial = data.split(b"\n")
        found: list[str] = []
        for raw in whole:
            found.extend(self.checker.feed(raw.decode("utf-8", "replace")))
        return found

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    @property
    def report(self) -> OracleReport:
        return self.checker.report


class Oracle:
    """The oracle file of one guest."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def lines(self) -> list[str]:
        """Every whole line, virtlogd's rotated backups first (see ``oracle_files``)."""
        data = b""
        for path in oracle_files(self.path):
            try:
                data += path.read_bytes()
            except FileNotFoundError:
                continue
        text = data.decode("utf-8", "replace")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        elif lines:
            # a record being appended right now; complete on the next read
            lines.pop()
        return lines

    def mark(self) -> int:
        """A position (line count) to check from later."""
        return len(self.lines())

    def report(self, since: int = 0) -> OracleReport:
        return check_lines(self.lines()[since:], since)

    def check(self, since: int = 0) -> OracleReport:
        """The report of the whole file (any interleaving anywhere fails), restricted to
        runs since ``since``; raises HarnessError listing the problems."""
        whole = self.report(0)
        if whole.problems:
            raise HarnessError("oracle: " + "; ".join(whole.problems[:10])
                               + f" ({whole.summary()})")
        return self.report(since)

    def wait_records(self, after: int, timeout_s: float, boot_id: str | None = None) -> Record:
        """Until a record newer than line ``after`` arrives (of ``boot_id`` if given): the
        guest runs. Its last record."""
        end = time.monotonic() + timeout_s
        while True:
            rep = self.report(after)
            recs = [r for r in rep.records if boot_id is None or r.boot_id == boot_id]
            if recs:
                return recs[-1]
            if time.monotonic() >= end:
                raise HarnessError(f"oracle: no record after line {after}"
                                   + (f" of boot {boot_id[:8]}" if boot_id else "")
                                   + f" within {timeout_s:.0f}s ({self.report(0).summary()})")
            time.sleep(0.1)
