"""bench/migrate_load.py's outcome summary: what Pacemaker would do after each run."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.migrate_load import Run, outcome_summary  # noqa: E402


def _run(method: str, rate: float, outcome: str, rc: int | None, reboot: bool = False) -> Run:
    return Run(method, rate, outcome, rc, 1.0, 40.0, 1, 100.0, reboot)


def test_a_failed_or_killed_migrate_to_counts_as_a_restart_and_a_lost_guest_apart() -> None:
    runs = [_run("VD", 32, "timed-out-kept", None), _run("VD", 32, "migrated", 0),
            _run("ours-default", 32, "migrated", 0), _run("ours-default", 32, "migrated", 0),
            _run("ours-abort", 32, "aborted-kept", 1),
            _run("ours-abort", 32, "migrated (rc said failed)", 1),
            _run("virsh", 32, "lost", None), _run("VD", 0, "migrated", 0, reboot=True)]
    lines = outcome_summary(runs)
    header = lines[2].strip("| ").split(" | ")
    assert header == ["dirty MiB/s", "virsh", "VD", "ours-abort", "ours-default"]
    rows = {line.split(" | ")[0].strip("| "): line.strip("| ").split(" | ")[1:]
            for line in lines[4:]}
    # a migration with rc 1 is a failed migrate_to for Pacemaker: stop and start
    assert rows["32"] == ["0 / 0 / 1", "1 / 1 / 0", "0 / 2 / 0", "2 / 0 / 0"]
    # a reboot seen by the guest is counted as lost, whatever libvirt said
    assert rows["0"] == ["-", "0 / 0 / 1", "-", "-"]


def test_the_link_cap_is_a_token_bucket_in_bytes_per_second_and_can_be_lifted() -> None:
    from tests.harness.twohosts import link_cap_argv

    argv = link_cap_argv("ns-a", "veth-a", 32)
    assert argv[:8] == ["tc", "-n", "ns-a", "qdisc", "replace", "dev", "veth-a", "root"]
    assert argv[8:11] == ["tbf", "rate", f"{32 * 1024 * 1024}bps"]  # tc: "bps" is bytes/s
    assert int(argv[argv.index("burst") + 1]) >= 32 * 1024 * 1024 // 100
    assert link_cap_argv("ns-a", "veth-a", None) == ["tc", "-n", "ns-a", "qdisc", "del", "dev",
                                                     "veth-a", "root"]
