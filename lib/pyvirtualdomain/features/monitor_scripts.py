"""monitor_scripts: the user's own health checks, run after libvirt says the domain runs
(no shell: whitespace-separated executables, as VirtualDomain splits them)."""

from __future__ import annotations

import os
import subprocess

from ..core.context import Context
from ..deadline import Deadline
from ..errors import AgentError

# Pause between two runs of the scripts while start waits for them to pass.
RETRY_PAUSE_S = 1.0


def run_monitor_scripts(ctx: Context, name: str, deadline: Deadline) -> None:
    """Run each of monitor_scripts, sharing the time left; raise on the first failure."""
    scripts = ctx.params.monitor_scripts.split()
    for i, script in enumerate(scripts):
        budget = deadline.remaining() / (len(scripts) - i)
        try:
            r = subprocess.run([script], stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=max(0.1, budget), env=dict(ctx.environ))
        except subprocess.TimeoutExpired:
            raise AgentError(f"monitor script {script} for {name} did not finish in "
                             f"{budget:.1f}s") from None
        except OSError as exc:
            raise AgentError(f"monitor script {script} for {name} cannot run: "
                             f"{exc.strerror}") from None
        if r.returncode != 0:
            out = " ".join((r.stdout + r.stderr).split())[-300:]
            raise AgentError(f"monitor script {script} for {name} returned {r.returncode}"
                             f"{': ' + out if out else ''}")
        ctx.log.debug(f"monitor script {script} passed")


def wait_monitor_scripts(ctx: Context, name: str, deadline: Deadline) -> None:
    """start and migrate_from: wait until the monitor scripts pass, inside the deadline."""
    if not ctx.params.monitor_scripts.strip():
        return
    while True:
        try:
            run_monitor_scripts(ctx, name, deadline)
            return
        except AgentError as failed:
            if deadline.remaining() < 1.5:
                raise AgentError(f"{failed.reason} (still failing at the end of the "
                                 "timeout)") from None
            ctx.log.debug(f"{failed.reason}; retrying")
        ctx.sleep(RETRY_PAUSE_S)


def check_monitor_scripts(scripts: str, path: str | None = None) -> list[str]:
    """The scripts that cannot run here: a name without a slash is looked up in ``path`` (the
    agent's PATH), as the monitor runs it (VirtualDomain runs them through the shell)."""
    import shutil

    missing = []
    for script in scripts.split():
        found = shutil.which(script, path=path or os.defpath) if "/" not in script else (
            script if os.path.isfile(script) and os.access(script, os.X_OK) else None)
        if found is None:
            missing.append(f"monitor script {script} is not an executable file on this node")
    return missing
