"""bench/evacuate.py's split of each migration at libvirt's qemu log events."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.evacuate import DST, SRC, phases  # noqa: E402


def _stamp(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def test_a_migration_is_split_at_the_target_start_and_the_source_stop(tmp_path: Path) -> None:
    t0 = 1_800_000_000.0
    logs = {SRC: tmp_path / "src.log", DST: tmp_path / "dst.log"}
    logs[SRC].write_text(f"{_stamp(t0 - 60)}+0000: starting up libvirt version: 9.0.0\n"
                         f"{_stamp(t0 + 0.8)}+0000: shutting down, reason=migrated\n")
    logs[DST].write_text(f"{_stamp(t0 + 0.1)}+0000: starting up libvirt version: 9.0.0\n"
                         "char device redirected to /dev/pts/2 (label charserial0)\n")
    ops = [
        {"rsc": "g", "node": SRC, "agent": "PyVirtualDomain", "action": "migrate_to", "rc": 0,
         "t": t0, "t_end": t0 + 2.3, "ms": 2300},
        {"rsc": "h", "node": DST, "agent": "PyVirtualDomain", "action": "monitor", "rc": 0,
         "t": t0 + 2.31, "t_end": t0 + 2.5, "ms": 190},
        {"rsc": "g", "node": DST, "agent": "PyVirtualDomain", "action": "migrate_from",
         "rc": 0, "t": t0 + 2.6, "t_end": t0 + 2.7, "ms": 100},
    ]
    ph = phases(ops, lambda node, dom: logs[node])["ours"]
    assert [round(x, 3) for x in (ph.before[0], ph.moving[0], ph.after[0])] == [0.1, 0.7, 1.5]
    assert [round(g, 3) for g in ph.gap_monitor] == [0.3] and ph.gap_free == []
    assert ph.first_monitor_ms == [190]


def test_a_round_without_a_time_is_left_out_of_the_ratio_and_said_so() -> None:
    """A round where one guest was never seen beating on the target has no time (inf): the
    ratio is over the rounds that have one, and says what was left out (a full run printed
    "0.00x" for ours against such a round)."""
    import argparse

    from bench.evacuate import Evacuation, render

    def ev(agent: str, total: float) -> Evacuation:
        return Evacuation(agent=agent, limit="1", n=8, total_s=total,
                          downtime_ms=[100] * 7 + ([-1] if total == float("inf") else [100]),
                          reboots=0, migrated=8)

    results = [ev("ours", 19.4), ev("VD", float("inf")), ev("ours", 18.5), ev("VD", 21.88)]
    host = {"when": "now", "node": "vm", "cores": "2", "commit": "x"}
    text = render(results, argparse.Namespace(rounds=2), host)
    [line] = [x for x in text.splitlines() if x.startswith("- migration-limit 1, N=8")]
    assert "0.00x" not in line
    assert line.startswith(f"- migration-limit 1, N=8: {18.95 / 21.88:.2f}x"), line
    assert "1 round of VD left out" in line, line
