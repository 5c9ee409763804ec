"""Two libvirt "hosts" on one machine, for live-migration tests and benchmarks.

Each host is a network namespace (the two joined by a veth pair; their addresses exist only
inside them) plus a private mount and UTS namespace in which per-host directories replace
``/run/libvirt``, ``/var/lib/libvirt``, ``/var/cache/libvirt``, ``/var/log/libvirt`` and
``/etc/libvirt`` (a private copy without domain definitions), and a private ``/etc/hosts``
names both hosts. Each host runs its own virtlogd and ``libvirtd --listen`` (plain TCP, no
auth, its own host UUID and hostname), so inside host X ``qemu:///system`` is host X's daemon
and ``qemu+tcp://hostY/system`` the other one, as on two real cluster nodes.

Everything this class starts is stopped by pid, and every process left in its network
namespaces (the guests' qemu) is killed before the namespaces are deleted, also on failure::

    with TwoHosts() as hosts:
        hosts.run_agent("A", "migrate_to", params, migrate_target="hostB", ...)
        hosts.domain_state("B", name)

Command line (hand use, clean-up after a crash)::

    .venv/bin/python -m tests.harness.twohosts start|stop|status
"""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, TypeVar

from .agent import HANG_GRACE_S, AgentResult, agent_environment, run_agent_argv
from .common import (
    AGENTS_DIR,
    CLEAN_PATH,
    DEFAULT_CACHE_DIR,
    DEFAULT_RUN_DIR,
    VENV_PYTHON,
    CallTimeout,
    HarnessError,
    HostLock,
    pid_alive,
    terminate,
    wait_until,
)
from .domains import DomainFacts, domain_facts, import_libvirt, kill_qemu, with_connection
from .guest import Cpio, GuestArtifacts
from .libvirtd import ensure_qemu_user
from .nsnode import NsNode, create_netns, delete_netns, netns_exists
from .nsnode import run as _run

T = TypeVar("T")

DEFAULT_STATE_DIR = DEFAULT_RUN_DIR / "twohosts"
HOST_LOCK_PATH = Path("/run/pyvd-test.lock")
TCP_PORT = 16509
SYSTEM_CACHE = Path("/var/cache/libvirt/qemu")
# Directories replaced per host (mount point -> subdirectory of the host's state dir).
BIND_DIRS = (("/run/libvirt", "run"), ("/var/lib/libvirt", "lib"),
             ("/var/cache/libvirt", "cache"), ("/var/log/libvirt", "log"),
             ("/etc/libvirt", "etc-libvirt"))
# Subdirectories of the private /etc/libvirt emptied so that no domain, network or pool
# defined on the real host is (auto)started in the test hosts.
EMPTIED_CONFIG_DIRS = ("qemu", "lxc", "storage", "secrets")


@dataclass(frozen=True)
class HostSpec:
    key: str  # "A" or "B"
    hostname: str  # node name and UTS hostname, resolvable on both hosts
    address: str  # on the veth link (main network)
    mig_address: str  # second address on the same link: the "migration network"
    uuid: str  # libvirtd host_uuid (migration refuses same-UUID hosts)
    netns: str  # ip netns name

    @property
    def tcp_uri(self) -> str:
        return f"qemu+tcp://{self.address}/system"


HOSTS: tuple[HostSpec, HostSpec] = (
    HostSpec("A", "hostA", "10.77.0.1", "10.77.1.1", "00000000-0000-4000-8000-0000000000a1",
             "pyvd-mig-A"),
    HostSpec("B", "hostB", "10.77.0.2", "10.77.1.2", "00000000-0000-4000-8000-0000000000b2",
             "pyvd-mig-B"),
)
NODE_NAMES = {h.key: h.hostname for h in HOSTS}  # {"A": "hostA", "B": "hostB"}
# Interface names exist only inside the namespaces.
VETH = {"A": "pyvdA", "B": "pyvdB"}
# Extra names for the migration network: "<node>-mig" and an FQDN form of it.
MIG_SUFFIX = "-mig"
DOMAIN_SUFFIX = ".cluster.test"


def link_cap_argv(netns: str, dev: str, mib_s: float | None) -> list[str]:
    """tc command capping what leaves ``dev`` in ``netns`` at ``mib_s`` MiB/s (a token bucket:
    the link a migration crosses, which unlike qemu's own rate limit also holds at the
    switch-over); None removes the cap."""
    if mib_s is None:
        return ["tc", "-n", netns, "qdisc", "del", "dev", dev, "root"]
    rate = int(mib_s * 1024 * 1024)
    burst = max(64 * 1024, rate // 100)  # at least what one 10 ms timer tick lets through
    return ["tc", "-n", netns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate",
            f"{rate}bps", "burst", str(burst), "latency", "50ms"]


def hosts_file() -> str:
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    for h in HOSTS:
        lines.append(f"{h.address} {h.hostname}")
        lines.append(f"{h.mig_address} {h.hostname}{MIG_SUFFIX} "
                     f"{h.hostname}{MIG_SUFFIX}{DOMAIN_SUFFIX}")
    return "\n".join(lines) + "\n"


def libvirtd_conf(spec: HostSpec) -> str:
    return (f'listen_tls = 0\nlisten_tcp = 1\nlisten_addr = "0.0.0.0"\n'
            f'tcp_port = "{TCP_PORT}"\nauth_tcp = "none"\nauth_unix_rw = "none"\n'
            f'host_uuid = "{spec.uuid}"\n'
            f'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n')


def qemu_conf(spec: HostSpec) -> str:
    # cgroup_controllers: both daemons share one cgroup tree and would both create
    # machine/qemu-1-NAME; migration_host: where the destination tells the source to send.
    return (f'user = "root"\ngroup = "root"\nsecurity_driver = "none"\n'
            f'cgroup_controllers = [ ]\nmigration_host = "{spec.address}"\n')


class SharedHostLock(HostLock):
    """The machine-wide harness lock (re-entrant: a no-op when this process holds it)."""

    def __init__(self, timeout_s: float = 3600.0) -> None:
        super().__init__(HOST_LOCK_PATH, timeout_s)


class TwoHosts:
    """Hosts "A" and "B" (node names hostA/hostB at 10.77.0.1/10.77.0.2)."""

    def __init__(self, state_dir: Path = DEFAULT_STATE_DIR, start_timeout_s: float = 60.0,
                 stop_timeout_s: float = 15.0) -> None:
        self.state_dir = Path(state_dir)
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.specs = {h.key: h for h in HOSTS}
        # Each host is a node in namespaces (nsnode.py): its /run/libvirt is host_dir/run.
        self.nodes = {h.key: NsNode(h.hostname, h.netns, self.state_dir / h.key,
                                    {"libvirtd": "libvirtd.pid", "virtlogd": "virtlogd.pid"})
                      for h in HOSTS}
        self._frozen: set[str] = set()

    # -- facts -----------------------------------------------------------------------------

    def spec(self, host: str) -> HostSpec:
        try:
            return self.specs[host]
        except KeyError:
            raise HarnessError(f"unknown host {host!r}: use A or B") from None

    def host_dir(self, host: str) -> Path:
        return self.state_dir / self.spec(host).key

    def node(self, host: str) -> NsNode:
        return self.nodes[self.spec(host).key]

    def daemon_pid(self, host: str, daemon: str = "libvirtd") -> int | None:
        """Pid of host X's libvirtd/virtlogd while it runs (checked by name and netns)."""
        return self.node(host).pid(daemon)

    def socket_uri(self, host: str) -> str:
        """A URI reaching host X's daemon from the root namespace (its unix socket)."""
        sock = self.host_dir(host) / "run" / "libvirt-sock"
        return f"qemu+unix:///system?socket={sock}"

    def tcp_uri(self, host: str) -> str:
        """qemu+tcp://10.77.0.x/system: valid only inside either host's namespaces."""
        return self.spec(host).tcp_uri

    def log_tail(self, host: str, lines: int = 30) -> str:
        path = self.host_dir(host) / "log" / "libvirtd.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"(no {path})"

    # -- running things inside a host ------------------------------------------------------

    def nsenter_argv(self, host: str) -> list[str]:
        # through the host's anchor process: libvirtd may be stopped on purpose
        return self.node(host).nsenter_argv()

    def exec(self, host: str, argv: Sequence[str], timeout_s: float = 60.0, check: bool = False,
             env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside host X's network, mount and UTS namespaces."""
        return self.node(host).exec(argv, timeout_s, check, env)

    def virsh(self, host: str, *args: str, uri: str = "qemu:///system", timeout_s: float = 60.0,
              check: bool = False) -> subprocess.CompletedProcess[str]:
        """``virsh -c URI ARGS`` inside host X (qemu:///system there is host X's daemon)."""
        return self.exec(host, ["virsh", "-c", uri, *args], timeout_s, check)

    def agent_argv(self, host: str, action: str, agent: str = "PyVirtualDomain",
                   python: Path | str = VENV_PYTHON) -> list[str]:
        return self.nsenter_argv(host) + [str(python), str(AGENTS_DIR / agent), action]

    def agent_env(self, action: str, params: Mapping[str, str], *, timeout_ms: int | None,
                  instance: str, state_dir: Path | str, migrate_source: str | None = None,
                  migrate_target: str | None = None, interval_ms: int | None = None,
                  env_extra: Mapping[str, str] | None = None,
                  agent: str = "PyVirtualDomain") -> dict[str, str]:
        extra: dict[str, str] = {}
        if migrate_source is not None:
            extra["OCF_RESKEY_CRM_meta_migrate_source"] = migrate_source
        if migrate_target is not None:
            extra["OCF_RESKEY_CRM_meta_migrate_target"] = migrate_target
        extra.update(env_extra or {})
        return agent_environment(action, params, timeout_ms=timeout_ms,
                                 interval_ms=interval_ms, instance=instance,
                                 state_dir=state_dir, agent=agent, env_extra=extra)

    def run_agent(self, host: str, action: str, params: Mapping[str, str], *,
                  timeout_ms: int | None, instance: str, state_dir: Path | str,
                  migrate_source: str | None = None, migrate_target: str | None = None,
                  interval_ms: int | None = None, env_extra: Mapping[str, str] | None = None,
                  agent: str = "PyVirtualDomain") -> AgentResult:
        """Run ``agent ACTION`` on host X as Pacemaker's executor would on that node.

        Like harness.agent.run_agent (clean OCF environment, AgentHung past the op timeout
        plus a grace period), with the migration meta attributes when given."""
        env = self.agent_env(action, params, timeout_ms=timeout_ms, instance=instance,
                             state_dir=state_dir, migrate_source=migrate_source,
                             migrate_target=migrate_target, interval_ms=interval_ms,
                             env_extra=env_extra, agent=agent)
        Path(state_dir).mkdir(parents=True, exist_ok=True)
        limit_s = (timeout_ms or 90000) / 1000.0 + HANG_GRACE_S
        # nsenter without --fork execs the agent: the process group is the agent's.
        return run_agent_argv(self.agent_argv(host, action, agent), env, action=action,
                              agent=agent, limit_s=limit_s, where=f" on host{host}")

    # -- libvirt -----------------------------------------------------------------------------

    def with_connection(self, host: str, fn: Callable[[Any], T], timeout_s: float = 10.0,
                        what: str = "libvirt call") -> T:
        """``fn(conn)`` on a fresh libvirt-python connection to host X's daemon (bounded:
        a frozen daemon raises CallTimeout)."""
        return with_connection(fn, self.socket_uri(host), timeout_s, f"host{host}: {what}")

    def open(self, host: str, timeout_s: float = 10.0) -> Any:
        """A libvirt-python connection to host X's daemon; the caller closes it."""
        libvirt = import_libvirt()
        uri = self.socket_uri(host)
        return bounded_open(libvirt, uri, timeout_s)

    def domain_facts(self, host: str, name: str, timeout_s: float = 10.0) -> DomainFacts | None:
        return domain_facts(name, self.socket_uri(host), timeout_s)

    def domain_state(self, host: str, name: str, timeout_s: float = 10.0) -> str | None:
        """virsh's word for the domain's state on host X ("running", "paused", ...), or None
        when host X's daemon does not know the domain."""
        facts = self.domain_facts(host, name, timeout_s)
        return None if facts is None else facts.state

    def states(self, name: str) -> dict[str, str | None]:
        """The domain's state read back from both daemons: {"A": ..., "B": ...}."""
        return {h.key: self.domain_state(h.key, name) for h in HOSTS}

    def list_domains(self, host: str) -> list[str]:
        return self.with_connection(
            host, lambda c: sorted(str(d.name()) for d in c.listAllDomains(0)),
            what="list domains")

    def wait_for_state(self, host: str, name: str, wanted: str | None,
                       timeout_s: float) -> bool:
        return wait_until(lambda: self.domain_state(host, name) == wanted, timeout_s, 0.2)

    def remove_domain(self, name: str) -> list[str]:
        """Destroy and undefine ``name`` on both hosts, then SIGKILL any qemu of it."""
        libvirt = import_libvirt()
        done: list[str] = []
        for h in HOSTS:
            if self.daemon_pid(h.key) is None or h.key in self._frozen:
                continue

            def remove(conn: Any) -> list[str]:
                out: list[str] = []
                try:
                    dom = conn.lookupByName(name)
                except libvirt.libvirtError:
                    return out
                try:
                    persistent = bool(dom.isPersistent())
                    if dom.isActive():
                        dom.destroy()  # a transient domain is gone after this
                        out.append("destroyed")
                    if persistent:
                        dom.undefine()
                        out.append("undefined")
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                        out.append(f"failed: {exc}")
                return out

            try:
                for what in self.with_connection(h.key, remove, 20.0, f"remove {name}"):
                    done.append(f"host{h.key}: {what}")
            except (CallTimeout, libvirt.libvirtError) as exc:
                done.append(f"host{h.key}: libvirt failed: {exc}")
        killed = kill_qemu(name)
        if killed:
            done.append(f"killed qemu pid {', '.join(map(str, killed))}")
        return done

    # -- daemon control (for failure tests) --------------------------------------------------

    def freeze(self, host: str) -> None:
        """SIGSTOP host X's libvirtd: it keeps its sockets but answers nothing."""
        pid = self.daemon_pid(host)
        if pid is None:
            raise HarnessError(f"host{host}: libvirtd is not running")
        os.kill(pid, signal.SIGSTOP)
        self._frozen.add(host)

    def thaw(self, host: str) -> None:
        pid = self.daemon_pid(host)
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        self._frozen.discard(host)

    def cap_link(self, mib_s: float | None) -> None:
        """Cap the link between the hosts at ``mib_s`` MiB/s each way (None: uncapped). The
        cap goes with the namespaces when the hosts stop."""
        for h in HOSTS:
            # removing a cap that is not there is no failure
            _run(link_cap_argv(h.netns, VETH[h.key], mib_s), check=mib_s is not None)

    def kill_libvirtd(self, host: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal host X's libvirtd (default SIGKILL) and wait until it is gone."""
        pid = self.daemon_pid(host)
        if pid is None:
            return
        os.kill(pid, sig)
        if sig != signal.SIGKILL:
            os.kill(pid, signal.SIGCONT)
        if not wait_until(lambda: not pid_alive(pid), self.stop_timeout_s, 0.05):
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid), 10.0, 0.05)
        self._frozen.discard(host)

    def restart_libvirtd(self, host: str) -> None:
        """Start host X's libvirtd again in its existing namespaces (after kill_libvirtd)."""
        if self.daemon_pid(host) is not None:
            self.thaw(host)
            return
        (self.node(host).run_dir / "libvirtd.pid").unlink(missing_ok=True)
        self.node(host).daemonize(["libvirtd", "-d", "--listen", "-f",
                                   "/etc/libvirt/libvirtd.conf", "-p", "/run/libvirt/libvirtd.pid"],
                                  timeout_s=30)
        self._wait_ready(host)

    def ensure_running(self) -> None:
        """Thaw frozen daemons and restart killed ones."""
        for h in HOSTS:
            self.thaw(h.key)
            if self.daemon_pid(h.key) is None:
                self.restart_libvirtd(h.key)

    # -- start / stop ----------------------------------------------------------------------

    def _prepare_dirs(self, spec: HostSpec) -> Path:
        d = self.state_dir / spec.key
        for sub in ("run", "lib"):  # state of an earlier run is never reused
            shutil.rmtree(d / sub, ignore_errors=True)
        for target, sub in BIND_DIRS:
            (d / sub).mkdir(parents=True, exist_ok=True)
            # The mount point itself (no libvirt package creates all of them).
            Path(target).mkdir(parents=True, exist_ok=True)
        (d / "log" / "qemu").mkdir(parents=True, exist_ok=True)
        for log in (d / "log").glob("*.log"):
            log.unlink()
        if SYSTEM_CACHE.is_dir() and not (d / "cache" / "qemu").is_dir():
            # libvirt keeps the probed QEMU capabilities here: seeding them makes the
            # daemon start in ~0.4 s instead of ~16 s (it re-probes when they are stale).
            shutil.copytree(SYSTEM_CACHE, d / "cache" / "qemu", symlinks=True)
        etc = d / "etc-libvirt"
        shutil.rmtree(etc, ignore_errors=True)
        shutil.copytree("/etc/libvirt", etc, symlinks=True)
        for sub in EMPTIED_CONFIG_DIRS:
            shutil.rmtree(etc / sub, ignore_errors=True)
        (etc / "qemu").mkdir()
        (etc / "libvirtd.conf").write_text(libvirtd_conf(spec))
        (etc / "qemu.conf").write_text(qemu_conf(spec))
        (d / "hosts").write_text(hosts_file())
        return d

    def _start_host(self, spec: HostSpec) -> None:
        d = self._prepare_dirs(spec)
        mounts = "\n".join(f"mount --bind {d / sub} {target}" for target, sub in BIND_DIRS)
        script = (f"hostname {spec.hostname}\n{mounts}\nmount --bind {d / 'hosts'} /etc/hosts\n"
                  # the node's anchor: it carries the namespaces while libvirtd is stopped
                  "setsid sleep 2147483647 </dev/null >/dev/null 2>&1 &\n"
                  "echo $! > /run/libvirt/anchor.pid\n"
                  "virtlogd -d -p /run/libvirt/virtlogd.pid\n"
                  "libvirtd -d --listen -f /etc/libvirt/libvirtd.conf "
                  "-p /run/libvirt/libvirtd.pid\n")
        self.node(spec.key).enter(script)
        self._wait_ready(spec.key)

    def _wait_ready(self, host: str) -> None:
        libvirt = import_libvirt()
        end = time.monotonic() + self.start_timeout_s

        def ready() -> bool:
            if self.daemon_pid(host) is None:
                return False
            try:
                return bool(self.with_connection(host, lambda c: c.getHostname(), 5.0,
                                                 "hostname"))
            except (CallTimeout, libvirt.libvirtError):
                return False

        while not ready():
            if time.monotonic() >= end:
                raise HarnessError(f"host{host}: libvirtd did not answer within "
                                   f"{self.start_timeout_s:.0f}s:\n{self.log_tail(host)}")
            time.sleep(0.1)

    def _create_network(self) -> None:
        a, b = HOSTS
        for h in HOSTS:
            create_netns(h.netns)
        _run(["ip", "link", "add", VETH["A"], "netns", a.netns, "type", "veth", "peer", "name",
              VETH["B"], "netns", b.netns])
        for h in HOSTS:
            dev = VETH[h.key]
            _run(["ip", "-n", h.netns, "addr", "add", f"{h.address}/24", "dev", dev])
            _run(["ip", "-n", h.netns, "addr", "add", f"{h.mig_address}/24", "dev", dev])
            _run(["ip", "-n", h.netns, "link", "set", dev, "up"])

    def start(self) -> TwoHosts:
        """Create the namespaces and start both daemons; checks each reaches the other over
        TCP by node name. Cleans up what an earlier crashed run left; on failure, stops
        everything it started."""
        for tool in ("libvirtd", "virtlogd", "ip", "nsenter", "unshare", "virsh"):
            if shutil.which(tool, path=CLEAN_PATH) is None:
                raise HarnessError(f"{tool} is not installed")
        self.stop()
        try:
            # libvirt 9.0's qemu driver fails to start without its built-in user (on a fresh
            # machine nothing created it before these tests, which may run first).
            ensure_qemu_user()
            self._create_network()
            for h in HOSTS:
                self._start_host(h)
            for src, dst in ((HOSTS[0], HOSTS[1]), (HOSTS[1], HOSTS[0])):
                proc = self.virsh(src.key, "hostname", uri=f"qemu+tcp://{dst.hostname}/system",
                                  timeout_s=20)
                if proc.returncode != 0 or proc.stdout.strip() != dst.hostname:
                    raise HarnessError(f"host{src.key} cannot reach {dst.hostname} over TCP: "
                                       f"rc {proc.returncode} {proc.stdout!r} {proc.stderr!r}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> list[str]:
        """Destroy every domain, stop both daemons by pid, kill whatever else still runs in
        the namespaces (qemu), delete the namespaces (and so the veth pair). Idempotent; what
        it did, for the log. Raises HarnessError only if something survives."""
        done: list[str] = []
        libvirt = import_libvirt()
        for h in HOSTS:
            self.thaw(h.key)
            if self.daemon_pid(h.key) is None:
                continue

            def destroy_all(conn: Any) -> list[str]:
                names: list[str] = []
                for dom in conn.listAllDomains(0):
                    try:
                        persistent = bool(dom.isPersistent())
                        if dom.isActive():
                            dom.destroy()
                        if persistent:
                            dom.undefine()
                        names.append(str(dom.name()))
                    except libvirt.libvirtError:
                        pass
                return names

            try:
                for name in self.with_connection(h.key, destroy_all, 20.0, "destroy all"):
                    done.append(f"host{h.key}: removed domain {name}")
            except (CallTimeout, libvirt.libvirtError) as exc:
                done.append(f"host{h.key}: could not list domains: {exc}")
        for h in HOSTS:
            node = self.node(h.key)
            for daemon in ("libvirtd", "virtlogd"):
                pid = node.pid(daemon)
                if pid is not None:
                    terminate(pid, self.stop_timeout_s)
                    done.append(f"host{h.key}: stopped {daemon} ({pid})")
                (node.run_dir / node.pidfiles[daemon]).unlink(missing_ok=True)
        self._frozen.clear()
        survivors: list[str] = []
        for h in HOSTS:
            # Only processes of the host's own namespaces: the anchor, qemu of our domains.
            try:
                for pid in self.node(h.key).power_cut():
                    done.append(f"host{h.key}: killed {pid}")
            except HarnessError as exc:
                survivors.append(str(exc))
            existed = netns_exists(h.netns)
            problem = delete_netns(h.netns)
            if problem:
                survivors.append(problem)
            elif existed:
                done.append(f"deleted netns {h.netns}")
        if survivors:
            raise HarnessError("two-host teardown left: " + "; ".join(survivors))
        return done

    def status(self) -> dict[str, dict[str, int | None | bool]]:
        return {h.key: {"netns": netns_exists(h.netns),
                        "libvirtd": self.daemon_pid(h.key),
                        "virtlogd": self.daemon_pid(h.key, "virtlogd")} for h in HOSTS}

    def __enter__(self) -> TwoHosts:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def bounded_open(libvirt: Any, uri: str, timeout_s: float) -> Any:
    from .common import bounded

    return bounded(lambda: libvirt.open(uri), timeout_s, f"connect {uri}")


# -- a guest that keeps dirtying its memory ------------------------------------------------

DIRTY_MARKER = "HARNESS-DIRTY started"
DIRTY_SCRIPT = """#!/bin/sh
mib=$(sed -n 's/.*harness.dirty=\\([0-9]*\\).*/\\1/p' /proc/cmdline)
[ -n "$mib" ] || exec sleep 100000
echo "HARNESS-DIRTY started mib=$mib" > /dev/console
while :; do dd if=/dev/zero of=/tmp/dirty bs=1M count="$mib" conv=notrunc 2>/dev/null; done
"""
DIRTY_INITTAB = """::sysinit:/etc/rc.sh
::respawn:/etc/tick.sh
::respawn:/etc/dirty.sh
::shutdown:/bin/sh -c 'echo "HARNESS-SHUTDOWN uptime=$(cut -d" " -f1 /proc/uptime)" > /dev/console'
"""


def dirty_initramfs(artifacts: GuestArtifacts, cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """The test initramfs plus an appended archive (the kernel unpacks concatenated
    archives, later files replacing earlier ones) whose init also rewrites
    ``harness.dirty=<MiB>`` of memory in a loop: precopy then never converges at a low
    bandwidth. Without ``harness.dirty`` on the command line the guest behaves as usual."""
    out = Path(cache_dir) / artifacts.key / "initramfs-dirty.cpio.gz"
    if out.is_file():
        return out
    extra = Cpio()
    extra.file("etc/inittab", DIRTY_INITTAB.encode())
    extra.file("etc/dirty.sh", DIRTY_SCRIPT.encode(), 0o755)
    data = artifacts.initramfs.read_bytes() + gzip.compress(extra.finish(), mtime=0)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return out


def main(argv: list[str]) -> int:
    usage = "usage: python -m tests.harness.twohosts start|stop|status"
    if len(argv) != 1 or argv[0] not in ("start", "stop", "status"):
        print(usage, file=sys.stderr)
        return 2
    hosts = TwoHosts()
    if argv[0] == "start":
        hosts.start()
    elif argv[0] == "stop":
        for line in hosts.stop():
            print(line)
    for key, facts in hosts.status().items():
        print(f"host{key}: {facts}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
