"""A "node in namespaces": what the one-node cluster, the two libvirt hosts, the csync2 pair
and the two-node cluster share. A node is a network namespace (``ip netns``) plus a private
mount and UTS namespace; every process of the harness in it is found by namespace, stopped by
pid, and the namespace deleted, so nothing is left behind.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from .common import CLEAN_PATH, CallTimeout, HarnessError

UNIFIED_CGROUP = "/sys/fs/cgroup/unified"


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {"PATH": CLEAN_PATH, "LANG": "C"}
    env.update(extra or {})
    return env


def run(argv: Sequence[str], timeout_s: float = 30.0, check: bool = True,
        env: Mapping[str, str] | None = None,
        input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with a clean environment (plus ``env``), bounded: CallTimeout when it
    does not finish in time, HarnessError on a non-zero exit when ``check``."""
    try:
        proc = subprocess.run(list(argv), input=input_text, capture_output=True, text=True,
                              timeout=timeout_s, check=False, env=clean_env(env),
                              stdin=None if input_text is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise CallTimeout(f"{' '.join(argv)}: no answer within {timeout_s:.0f}s") from exc
    if check and proc.returncode != 0:
        raise HarnessError(f"{' '.join(argv)} exited with {proc.returncode}: "
                           f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def netns_pids(name: str) -> list[int]:
    """Every process whose network namespace is ``name`` (ip netns pids)."""
    if not netns_exists(name):
        return []
    proc = run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def hybrid_cgroups() -> bool:
    """cgroup v1 controllers plus an (empty) cgroup2 at /sys/fs/cgroup/unified: libvirt-lxc
    fails with that layout, so nodes unmount the latter in their mount namespace."""
    with open("/proc/mounts", encoding="utf-8") as f:
        mounts = [line.split() for line in f]
    return (any(m[1] == UNIFIED_CGROUP and m[2] == "cgroup2" for m in mounts if len(m) > 2)
            and any(m[2] == "cgroup" for m in mounts if len(m) > 2))


def mount_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []
