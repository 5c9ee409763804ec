"""Running the OCF agent the way Pacemaker's executor does: a clean environment with the
OCF variables, the action as the only argument, and a hard limit on how long it may take."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .common import AGENTS_DIR, CLEAN_PATH, VENV_PYTHON, HarnessError

REASON_PREFIX = "ocf-exit-reason:"
# Beyond the op timeout, how long we wait before calling the agent hung.
HANG_GRACE_S = 15.0
# Used to bound the run when the caller gives no op timeout (the metadata's largest default).
DEFAULT_OP_TIMEOUT_MS = 90000
# Pacemaker exports this with every action; an agent must not mistake it for a parameter.
CRM_FEATURE_SET = "3.16.2"


@dataclass(frozen=True)
class AgentResult:
    action: str
    rc: int
    stdout: str
    stderr: str
    elapsed_s: float
    reason: str | None  # the text after "ocf-exit-reason:" (the last such line), or None

    def __str__(self) -> str:
        return (f"{self.action}: rc={self.rc} in {self.elapsed_s:.2f}s reason={self.reason!r}\n"
                f"--- stderr ---\n{self.stderr.rstrip()}")


class AgentHung(HarnessError):
    """The agent outlived its op timeout plus a grace period and was killed."""

    def __init__(self, message: str, stdout: str, stderr: str) -> None:
        super().__init__(f"{message}\n--- stderr ---\n{stderr.rstrip()}")
        self.stdout = stdout
        self.stderr = stderr


def exit_reason(stderr: str) -> str | None:
    reasons = [line[len(REASON_PREFIX):] for line in stderr.splitlines()
               if line.startswith(REASON_PREFIX)]
    return reasons[-1] if reasons else None


def agent_environment(action: str, params: Mapping[str, str], *, timeout_ms: int | None,
                      interval_ms: int | None, instance: str, state_dir: Path | str,
                      agent: str, env_extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        "PATH": CLEAN_PATH,
        "LANG": "C",
        "OCF_ROOT": "/usr/lib/ocf",
        "OCF_RA_VERSION_MAJOR": "1",
        "OCF_RA_VERSION_MINOR": "1",
        "OCF_RESOURCE_INSTANCE": instance,
        "OCF_RESOURCE_TYPE": agent,
        "OCF_RESOURCE_PROVIDER": "custom",
        "OCF_RESKEY_crm_feature_set": CRM_FEATURE_SET,
        "OCF_RESKEY_CRM_meta_name": action,
        "HA_RSCTMP": str(state_dir),
    }
    for name, value in params.items():
        env[f"OCF_RESKEY_{name}"] = value
    if timeout_ms is not None:
        env["OCF_RESKEY_CRM_meta_timeout"] = str(int(timeout_ms))
    if interval_ms is not None:
        env["OCF_RESKEY_CRM_meta_interval"] = str(int(interval_ms))
    env.update(env_extra or {})
    return env


def run_agent(action: str, params: Mapping[str, str], *, timeout_ms: int | None = None,
              interval_ms: int | None = None, instance: str, state_dir: Path | str,
              env_extra: Mapping[str, str] | None = None, agent: str = "PyVirtualDomain",
              python: Path | str = VENV_PYTHON) -> AgentResult:
    """Run ``agent ACTION`` with OCF_RESKEY_<name> for each of ``params``.

    ``timeout_ms``/``interval_ms`` become OCF_RESKEY_CRM_meta_timeout/_interval (a monitor
    without an interval, or with 0, is a probe). Raises AgentHung when the agent outlives the
    op timeout by HANG_GRACE_S (it is killed with its whole process group)."""
    env = agent_environment(action, params, timeout_ms=timeout_ms, interval_ms=interval_ms,
                            instance=instance, state_dir=state_dir, agent=agent,
                            env_extra=env_extra)
    limit_s = (timeout_ms or DEFAULT_OP_TIMEOUT_MS) / 1000.0 + HANG_GRACE_S
    return run_agent_argv([str(python), str(AGENTS_DIR / agent), action], env, action=action,
                          agent=agent, limit_s=limit_s)


def run_agent_argv(argv: list[str], env: Mapping[str, str], *, action: str, agent: str,
                   limit_s: float, where: str = "") -> AgentResult:
    """Run an agent command line in its own process group; kill the group and raise
    AgentHung when it is still running after ``limit_s``."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(env), cwd="/",
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        raise AgentHung(f"{agent} {action}{where} still running after {limit_s:.0f}s: killed",
                        out.decode(errors="replace"), err.decode(errors="replace")) from None
    elapsed = time.monotonic() - started
    stderr = err.decode(errors="replace")
    return AgentResult(action=action, rc=proc.returncode, stdout=out.decode(errors="replace"),
                       stderr=stderr, elapsed_s=elapsed, reason=exit_reason(stderr))
