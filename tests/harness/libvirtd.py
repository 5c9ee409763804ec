"""Run a real libvirtd (+ virtlogd) without systemd, and stop it again by its own pid.

Only daemons this class started (or adopted from its own pidfiles) are ever signalled.
Stopping libvirtd leaves running guests alone: qemu runs on, and libvirtd reconnects to it
when it starts again.

Command line (for hand use and CI clean-up)::

    .venv/bin/python -m tests.harness libvirtd start|stop|status
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from .common import (
    CLEAN_PATH,
    DEFAULT_RUN_DIR,
    DEFAULT_URI,
    CallTimeout,
    HarnessError,
    all_pids,
    bounded,
    pid_alive,
    read_comm,
    reaped,
    terminate,
    wait_until,
)

QEMU_CONF = Path("/etc/libvirt/qemu.conf")
# qemu runs as root and reads kernels/initramfs/console logs anywhere without relabelling.
QEMU_CONF_SETTINGS = {"user": '"root"', "group": '"root"', "security_driver": '"none"'}
LIBVIRT_DIRS = ("/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt",
                "/var/log/libvirt/qemu", "/etc/libvirt")
UNIFIED_CGROUP = "/sys/fs/cgroup/unified"
# Run libvirtd (and so every qemu/libvirt_lxc it spawns) in a private mount namespace without
# the hybrid layout's empty cgroup2 mount, which breaks libvirt 9.0's lxc driver.
UNSHARE_SCRIPT = f'umount {UNIFIED_CGROUP} && exec "$0" "$@"'


def _import_libvirt() -> Any:
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


def _read_pidfile(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _pids_named(comm: str) -> list[int]:
    return [p for p in all_pids() if read_comm(p) == comm and pid_alive(p)]


def _hybrid_cgroups() -> bool:
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return False
    has_unified = any(m[1] == UNIFIED_CGROUP and m[2] == "cgroup2" for m in mounts if len(m) > 2)
    has_v1 = any(m[2] == "cgroup" for m in mounts if len(m) > 2)
    return has_unified and has_v1


def ensure_qemu_user() -> None:
    """libvirt 9.0's qemu driver resolves its built-in user before reading qemu.conf."""
    try:
        pwd.getpwnam("libvirt-qemu")
        return
    except KeyError:
        pass
    subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/var/lib/libvirt",
                    "--shell", "/usr/sbin/nologin", "--user-group", "libvirt-qemu"],
                   check=True, capture_output=True, timeout=30)


def ensure_qemu_conf(path: Path = QEMU_CONF) -> None:
    """Add user/group root and security_driver none to qemu.conf unless already set so."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    present: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.lstrip().startswith("#"):
            present[key.strip()] = value.strip()
    missing: list[str] = []
    for key, value in QEMU_CONF_SETTINGS.items():
        if key not in present:
            missing.append(f"{key} = {value}")
        elif present[key].replace("'", '"') != value:
            raise HarnessError(f"{path} sets {key} = {present[key]}; the test harness needs "
                               f"{key} = {value}")
    if missing:
        path.parent.mkdir(parents=True, exist_ok=True)
        sep = "" if not text or text.endswith("\n") else "\n"
        with open(path, "a", encoding="utf-8") as f:
            f.write(sep + "# added by the PyVirtualDomain test harness\n"
                    + "\n".join(missing) + "\n")


class Libvirtd:
    """libvirtd + virtlogd started by this object, stopped by their own pids."""

    def __init__(self, run_dir: Path = DEFAULT_RUN_DIR, uri: str = DEFAULT_URI,
                 start_timeout_s: float = 120.0, stop_timeout_s: float = 20.0) -> None:
        self.run_dir = Path(run_dir)
        self.uri = uri
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.libvirtd_pidfile = self.run_dir / "libvirtd.pid"
        self.virtlogd_pidfile = self.run_dir / "virtlogd.pid"
        self.libvirtd_log = self.run_dir / "libvirtd.log"
        self.virtlogd_log = self.run_dir / "virtlogd.log"
        self._pid: int | None = None
        self._virtlogd_pid: int | None = None
        self._frozen = False

    # -- facts ---------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Our libvirtd's pid while it runs, else None."""
        if self._pid is not None and pid_alive(self._pid):
            return self._pid
        return None

    @property
    def virtlogd_pid(self) -> int | None:
        if self._virtlogd_pid is not None and pid_alive(self._virtlogd_pid):
            return self._virtlogd_pid
        return None

    @property
    def is_running(self) -> bool:
        return self.pid is not None

    @property
    def is_frozen(self) -> bool:
        return self._frozen and self.is_running

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.libvirtd_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no libvirtd log)"

    # -- control -------------------------------------------------------------------------

    def adopt(self) -> bool:
        """Take over daemons an earlier harness run started (found by our pidfiles)."""
        for attr, pidfile, comm in (("_pid", self.libvirtd_pidfile, "libvirtd"),
                                    ("_virtlogd_pid", self.virtlogd_pidfile, "virtlogd")):
            pid = _read_pidfile(pidfile)
            if pid is not None and pid_alive(pid) and read_comm(pid) == comm:
                setattr(self, attr, pid)
        return self._pid is not None or self._virtlogd_pid is not None

    def _check_no_foreign(self) -> None:
        for comm, pidfile in (("libvirtd", self.libvirtd_pidfile),
                              ("virtlogd", self.virtlogd_pidfile)):
            ours = {self._pid, self._virtlogd_pid}
            others = [p for p in _pids_named(comm) if p not in ours]
            if not others:
                continue
            recorded = _read_pidfile(pidfile)
            if recorded in others:
                hint = (f"it was started by an earlier test run (pidfile {pidfile}); stop it "
                        f"with: {sys.executable} -m tests.harness libvirtd stop")
            else:
                hint = "this harness did not start it; stop it (or the service running it) first"
            raise HarnessError(f"a {comm} is already running (pid "
                               f"{', '.join(map(str, others))}): {hint}")

    def _spawn_daemon(self, argv: list[str], log: Path, pidfile: Path, comm: str) -> int:
        try:
            pidfile.unlink()
        except FileNotFoundError:
            pass
        env = {"PATH": CLEAN_PATH, "LANG": "C", "LIBVIRT_LOG_OUTPUTS": f"3:file:{log}"}
        # Under a subreaper: the guests this daemon starts are collected when they end, as
        # on a node (see reaped).
        with open(log.with_suffix(".stdio"), "ab") as out:
            proc = subprocess.run(reaped(argv, self.run_dir / f"{comm}-reaper.pid"),
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                  env=env, timeout=60, check=False)
        if proc.returncode != 0:
            raise HarnessError(f"{' '.join(argv)} exited with {proc.returncode}; see "
                               f"{log.with_suffix('.stdio')} and {log}")
        found: list[int] = []

        def has_pid() -> bool:
            pid = _read_pidfile(pidfile)
            if pid is not None and pid_alive(pid) and read_comm(pid) == comm:
                found.append(pid)
                return True
            return False

        if not wait_until(has_pid, 15.0, 0.05):
            raise HarnessError(f"{comm} did not write a live pid to {pidfile}; see {log}")
        return found[0]

    def _can_connect(self) -> bool:
        libvirt = _import_libvirt()

        def probe() -> None:
            conn = libvirt.open(self.uri)
            try:
                conn.getLibVersion()
            finally:
                conn.close()

        try:
            bounded(probe, 10.0, f"connect {self.uri}")
            return True
        except CallTimeout:
            return False
        except libvirt.libvirtError:
            return False

    def start(self) -> None:
        """Start virtlogd and libvirtd, and wait until the URI answers."""
        if self.is_running:
            self.thaw()
            return
        self._check_no_foreign()
        ensure_qemu_user()
        ensure_qemu_conf()
        for d in LIBVIRT_DIRS:
            os.makedirs(d, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.virtlogd_pid is None:
                self._virtlogd_pid = self._spawn_daemon(
                    ["virtlogd", "-d", "-p", str(self.virtlogd_pidfile)], self.virtlogd_log,
                    self.virtlogd_pidfile, "virtlogd")
            argv = ["libvirtd", "-d", "-p", str(self.libvirtd_pidfile)]
            if _hybrid_cgroups():
                argv = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                        UNSHARE_SCRIPT] + argv
            self._pid = self._spawn_daemon(argv, self.libvirtd_log, self.libvirtd_pidfile,
                                           "libvirtd")
            self._frozen = False
            end = time.monotonic() + self.start_timeout_s
            while not self._can_connect():
                if not self.is_running:
                    raise HarnessError(f"libvirtd exited during start-up:\n{self.log_tail()}")
                if time.monotonic() >= end:
                    raise HarnessError(f"{self.uri} did not answer within "
                                       f"{self.start_timeout_s:.0f}s:\n{self.log_tail()}")
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise

    def _signal(self, pid: int | None, sig: signal.Signals) -> None:
        if pid is None:
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def _terminate(self, pid: int | None) -> None:
        if pid is None or not pid_alive(pid):
            return
        if not terminate(pid, self.stop_timeout_s):
            raise HarnessError(f"pid {pid} survived SIGKILL")

    def stop(self, keep_virtlogd: bool = False) -> None:
        """SIGTERM (then SIGKILL) libvirtd, then virtlogd; guests keep running.

        ``keep_virtlogd``: leave virtlogd up, as running guests write their console logs
        through it (start() then starts only libvirtd again)."""
        self.thaw()
        self._terminate(self.pid)
        self._pid = None
        self._frozen = False
        if not keep_virtlogd:
            self._terminate(self.virtlogd_pid)
            self._virtlogd_pid = None

    def freeze(self) -> None:
        """SIGSTOP libvirtd: it keeps its sockets but answers nothing."""
        pid = self.pid
        if pid is None:
            raise HarnessError("libvirtd is not running")
        self._signal(pid, signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        if self._frozen:
            self._signal(self.pid, signal.SIGCONT)
            self._frozen = False

    def ensure_running(self) -> None:
        """Thaw a frozen libvirtd, start a stopped one."""
        self.thaw()
        if not self.is_running:
            self.start()

    def __enter__(self) -> Libvirtd:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

