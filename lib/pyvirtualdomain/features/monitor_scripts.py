"""monitor_scripts: the user's own health checks, run after libvirt says the domain runs
(no shell: whitespace-separated executables, as VirtualDomain splits them)."""

from __future__ import annotations

import os
import subprocess

from ..core.context import Context, Result
from ..deadline import Deadline
from ..errors import AgentError
from ..ocf import OCFExit


def run_monitor_scripts(ctx: Context, name: str, deadline: Deadline) -> Result | None:
    """Run each of monitor_scripts (no shell: whitespace-separated executables, as
    VirtualDomain splits them), sharing the time left; the first failure is the result."""
    scripts = ctx.params.monitor_scripts.split()
    for i, script in enumerate(scripts):
        budget = deadline.remaining() / (len(scripts) - i)
        try:
            r = subprocess.run([script], stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=max(0.1, budget), env=dict(ctx.environ))
        except subprocess.TimeoutExpired:
            return Result(OCFExit.ERR_GENERIC, f"monitor script {script} for {name} did not "
                          f"finish in {budget:.1f}s")
        except OSError as exc:
            return Result(OCFExit.ERR_GENERIC, f"monitor script {script} for {name} cannot "
                          f"run: {exc.strerror}")
        if r.returncode != 0:
            out = " ".join((r.stdout + r.stderr).split())[-300:]
            return Result(OCFExit.ERR_GENERIC, f"monitor script {script} for {name} returned "
                          f"{r.returncode}{': ' + out if out else ''}")
        ctx.log.debug(f"monitor script {script} passed")
    return None


def wait_monitor_scripts(ctx: Context, name: str, deadline: Deadline) -> None:
    """start and migrate_from: wait until the monitor scripts pass, inside the deadline."""
    if not ctx.params.monitor_scripts.strip():
        return
    while True:
        failed = run_monitor_scripts(ctx, name, deadline)
        if failed is None:
            return
        if deadline.remaining() < 1.5:
            raise AgentError(f"{failed.reason} (still failing at the end of the timeout)")
        ctx.log.debug(f"{failed.reason}; retrying")
        ctx.sleep(1.0)


def check_monitor_scripts(scripts: str) -> list[str]:
    return [f"monitor script {s} is not an executable file on this node"
            for s in scripts.split() if not (os.path.isfile(s) and os.access(s, os.X_OK))]
