"""A "node in namespaces": what the one-node cluster, the two libvirt hosts, the csync2 pair
and the two-node cluster share. A node is a network namespace (``ip netns``) plus a private
mount and UTS namespace; every process of the harness in it is found by namespace, stopped by
pid, and the namespace deleted, so nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .common import (
    CLEAN_PATH,
    CallTimeout,
    HarnessError,
    all_pids,
    descendants,
    pid_alive,
    read_cmdline,
    read_comm,
    read_reaper,
    reaped,
    wait_until,
)

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


# -- one node --------------------------------------------------------------------------------


def create_netns(name: str) -> None:
    run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def delete_netns(name: str) -> str | None:
    """Delete the network namespace (and so its interfaces) if no process is left in it;
    what prevents it, or None."""
    if not netns_exists(name):
        return None
    alive = [p for p in netns_pids(name) if pid_alive(p)]
    if alive:
        return f"netns {name}: pids {alive}"
    proc = run(["ip", "netns", "del", name], check=False)
    if proc.returncode != 0:
        return f"ip netns del {name}: {proc.stderr.strip()}"
    return None


class NsNode:
    """A node made of a network namespace ``netns`` plus a private mount and UTS namespace.

    ``enter(script)`` creates the mount and UTS namespaces (in the existing network namespace)
    and runs ``script`` there as root; the script must start the **anchor**, a process that
    lives as long as the node (``setsid sleep ...``, its pid written to ``anchor.pid`` in
    ``run_dir``, which the script binds into the node): everything later enters the node
    through it (``nsenter -t ANCHOR``). Daemons are found by pidfile below ``run_dir`` and
    checked by name and network namespace. The node's processes are those of its network
    namespace and everything below them (containers have namespaces of their own), also after
    the anchor died (``processes``); ``power_cut`` kills them all at once, as pulling the plug
    would. (Not by mount namespace: its inode number may be reused by an unrelated one once
    the node's is gone.)"""

    def __init__(self, name: str, netns: str, node_dir: Path, pidfiles: Mapping[str, str]) -> None:
        self.name = name
        self.netns = netns
        self.dir = Path(node_dir)
        self.run_dir = self.dir / "run"
        self.log_dir = self.dir / "log"
        self.pidfiles = dict(pidfiles)
        self.pidfiles.setdefault("anchor", "anchor.pid")
        self._children: list[subprocess.Popen[bytes]] = []
        # The subreapers the set-up script and daemon restarts ran under (tests/harness/
        # subreaper.py): the node's daemons and their guests are theirs to collect.
        self._reapers: list[int] = []

    # -- facts -------------------------------------------------------------------------------

    def pid(self, daemon: str) -> int | None:
        """Our daemon's pid while it runs (checked by name and network namespace)."""
        pid = read_pid(self.run_dir / self.pidfiles[daemon])
        if pid is None or not pid_alive(pid):
            return None
        if daemon != "anchor" and read_comm(pid) != daemon[:15]:
            return None
        if pid not in netns_pids(self.netns):
            return None
        return pid

    def processes(self, marks: Sequence[str] = ()) -> list[int]:
        """Every live process of the node: in its network namespace, below those (containers
        have namespaces of their own), and processes of ours naming one of ``marks`` in their
        command line that run in a mount namespace other than the machine's (what a killed
        container controller left)."""
        # The harness runs in the machine's namespaces (pid 1's are not readable here).
        root_mnt = mount_ns(os.getpid())
        found: set[int] = set(netns_pids(self.netns))
        if marks:
            for pid in all_pids():
                if mount_ns(pid) in (None, root_mnt):
                    continue
                argv = read_cmdline(pid)
                if any(m in a for a in argv for m in marks):
                    found.add(pid)
        for pid in list(found):
            found.update(descendants(pid))
        found.discard(os.getpid())
        return sorted(p for p in found if pid_alive(p))

    # -- running things inside ---------------------------------------------------------------

    def nsenter_argv(self) -> list[str]:
        anchor = self.pid("anchor")
        if anchor is None:
            raise HarnessError(f"node {self.name}: its namespaces are gone (no anchor process; "
                               f"state in {self.dir})")
        return ["nsenter", "-t", str(anchor), "-n", "-m", "-u", "--"]

    def exec(self, argv: Sequence[str], timeout_s: float = 60.0, check: bool = False,
             env: Mapping[str, str] | None = None,
             input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the node's network, mount and UTS namespaces."""
        return run(self.nsenter_argv() + list(argv), timeout_s, check, env, input_text)

    def _reaper_pidfile(self) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return self.run_dir / "reaper.pid"

    def _note_reaper(self, pidfile: Path) -> None:
        pid = read_reaper(pidfile)
        self._reapers = [p for p in self._reapers if pid_alive(p)]
        if pid is not None and pid not in self._reapers:
            self._reapers.append(pid)

    def wait_reapers(self, timeout_s: float) -> list[int]:
        """Wait for the node's subreapers to leave (each does once nothing it collects runs
        any more); those still there."""
        wait_until(lambda: not any(pid_alive(p) for p in self._reapers), timeout_s, 0.02)
        self._reapers = [p for p in self._reapers if pid_alive(p)]
        return list(self._reapers)

    def enter(self, script: str, timeout_s: float = 60.0) -> None:
        """Create the node's mount and UTS namespaces in its network namespace and run
        ``script`` (``/bin/sh -e``) there; it must start the anchor. What it starts in the
        background or as a daemon is a subreaper's (see ``reaped``)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        pidfile = self._reaper_pidfile()
        with open(self.log_dir / "namespace.out", "wb") as out:
            proc = subprocess.run(
                reaped(["nsenter", f"--net=/run/netns/{self.netns}", "unshare", "--mount",
                        "--uts", "--propagation", "private", "/bin/sh", "-ec", script],
                       pidfile),
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=timeout_s,
                check=False, env=clean_env())
        self._note_reaper(pidfile)
        if proc.returncode != 0:
            raise HarnessError(f"node {self.name}: its set-up script exited with "
                               f"{proc.returncode}: {(self.log_dir / 'namespace.out').read_text()}")
        if self.pid("anchor") is None:
            raise HarnessError(f"node {self.name}: the set-up script started no anchor")

    def daemonize(self, argv: Sequence[str], timeout_s: float = 60.0,
                  check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a daemon that forks into the background (``libvirtd -d``) inside the node,
        under a subreaper, as ``enter`` runs the first one."""
        pidfile = self._reaper_pidfile()
        proc = run(reaped(self.nsenter_argv() + list(argv), pidfile), timeout_s, check)
        self._note_reaper(pidfile)
        return proc

    def spawn(self, daemon: str, argv: Sequence[str], env: Mapping[str, str]) -> int:
        """Start a foreground daemon inside the node in a session of its own, its output in
        ``log_dir/<daemon>.out``; its pid (also in its pidfile)."""
        out = open(self.log_dir / f"{daemon}.out", "ab")  # noqa: SIM115 - the child keeps it
        try:
            proc = subprocess.Popen(self.nsenter_argv() + list(argv), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=out, env=clean_env(env), cwd="/",
                                    start_new_session=True)
        finally:
            out.close()
        self._children.append(proc)
        # nsenter (no --fork) execs the daemon: the pid is the daemon's.
        (self.run_dir / self.pidfiles[daemon]).write_text(f"{proc.pid}\n")
        return proc.pid

    def reap(self) -> None:
        for proc in self._children:
            try:
                proc.wait(timeout=0)
            except subprocess.TimeoutExpired:
                pass
        self._children = [p for p in self._children if p.returncode is None]

    # -- power -------------------------------------------------------------------------------

    def power_cut(self, marks: Sequence[str] = (), timeout_s: float = 10.0) -> list[int]:
        """Every process of the node stopped (SIGSTOP: none can react, fork or restart
        another) and then SIGKILLed, repeated until none is left: a power cut. The pids."""
        killed: list[int] = []
        end = time.monotonic() + timeout_s
        while True:
            pids = self.processes(marks)
            if not pids:
                break
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                for pid in pids:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
            killed.extend(p for p in pids if p not in killed)
            wait_until(lambda pids=pids: not any(pid_alive(p) for p in pids), 5.0, 0.02)
            if time.monotonic() >= end:
                left = self.processes(marks)
                if left:
                    raise HarnessError(f"node {self.name}: processes survive SIGKILL: {left}")
                break
        self.reap()
        # Nothing of the node is left for its subreapers to collect: they leave too.
        self.wait_reapers(2.0)
        return killed
