"""tests/harness/subreaper.py: a command's orphans are the reaper's, collected at once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.harness.common import pid_alive, wait_until

SUBREAPER = Path(__file__).resolve().parents[1] / "harness" / "subreaper.py"


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rfind(")") + 2:].split()[1])


def _exists(pid: int) -> bool:
    """Still in the process table, a zombie included."""
    return Path(f"/proc/{pid}").exists()


def _run(script: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    pidfile = tmp_path / "reaper.pid"
    proc = subprocess.run([sys.executable, str(SUBREAPER), "--pidfile", str(pidfile), "--",
                           "/bin/sh", "-c", script], capture_output=True, text=True,
                          timeout=30, check=False)
    return proc, int(pidfile.read_text())


def test_the_command_s_exit_status_and_output_come_back_at_once(tmp_path: Path) -> None:
    t0 = time.monotonic()
    proc, reaper = _run("echo out; echo err >&2; sleep 2 >/dev/null 2>&1 </dev/null & exit 3",
                        tmp_path)
    took = time.monotonic() - t0
    assert proc.returncode == 3, proc
    assert (proc.stdout, proc.stderr) == ("out\n", "err\n")
    assert took < 1.5, f"waited for the orphan: {took:.1f}s"
    assert pid_alive(reaper), "the reaper left while the orphan runs"


def test_an_orphan_goes_to_the_reaper_which_collects_it_and_leaves(tmp_path: Path) -> None:
    orphan_file = tmp_path / "orphan.pid"
    proc, reaper = _run(f"sleep 1 >/dev/null 2>&1 </dev/null & echo $! > {orphan_file}",
                        tmp_path)
    assert proc.returncode == 0, proc
    orphan = int(orphan_file.read_text())
    assert _ppid(orphan) == reaper, "the daemonized process is not the reaper's"
    # Collected as soon as it ends (not left a zombie for PID 1), and then the reaper goes.
    assert wait_until(lambda: not pid_alive(orphan), 5.0, 0.01)
    assert wait_until(lambda: not _exists(orphan), 0.3, 0.01), "left a zombie"
    assert wait_until(lambda: not pid_alive(reaper), 2.0, 0.02), "the reaper stayed"


def test_a_command_killed_by_a_signal_exits_as_a_shell_says(tmp_path: Path) -> None:
    proc, reaper = _run("kill -TERM $$", tmp_path)
    assert proc.returncode == 128 + 15, proc
    assert wait_until(lambda: not pid_alive(reaper), 2.0, 0.02)


def test_a_command_that_cannot_run_is_127_with_a_reason(tmp_path: Path) -> None:
    pidfile = tmp_path / "reaper.pid"
    proc = subprocess.run([sys.executable, str(SUBREAPER), "--pidfile", str(pidfile), "--",
                           str(tmp_path / "no-such-program")], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 127, proc
    assert "cannot run" in proc.stderr


def test_no_command_is_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, str(SUBREAPER), "--"], capture_output=True,
                          text=True, timeout=30, check=False)
    assert proc.returncode == 2
    assert "usage" in proc.stderr
