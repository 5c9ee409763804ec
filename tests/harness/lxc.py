"""Tiny real libvirt-lxc containers: a busybox root filesystem built once (cached under
build/lxc/), domain XML for it, and the container's processes seen from the host.

The root filesystem is shared by every container and mounted read-only; each container
also gets its own writable directory mounted at /harness, where its init appends one line per
event (``BOOT``, ``STOP signal``, ``IGNORED TERM``, ...) so tests can tell what happened
inside it.

Inits (``<init>`` in the XML), chosen by ``mode``:

``graceful``  /init-graceful, a shell pid 1 that exits cleanly on the container's shutdown
              request: SIGTERM (libvirt-lxc's ``signal`` mode) or a runlevel message on its
              /dev/initctl FIFO (``initctl`` mode).
``ignore``    /init-ignore, a shell pid 1 that ignores both (no initctl FIFO, SIGTERM
              trapped and logged): only destroy stops it.
``busybox``   busybox's own init with an inittab. It handles SIGTERM as *reboot* (libvirt-lxc
              then restarts the container) and SIGUSR2 as power-off, and has no initctl.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from .common import (
    REPO_ROOT,
    HarnessError,
    all_pids,
    descendants,
    kill_all,
    pid_alive,
    read_cmdline,
    read_comm,
    wait_until,
)

LXC_URI = "lxc:///system"
LXC_EMULATOR = "/usr/lib/libvirt/libvirt_lxc"
CONTROLLER_COMM = "libvirt_lxc"
BUSYBOX = Path("/bin/busybox")
DEFAULT_LXC_CACHE_DIR = REPO_ROOT / "build" / "lxc"
MODES = {"graceful": "/init-graceful", "ignore": "/init-ignore", "busybox": "/sbin/init"}
# Lines the inits append to /harness/events.
BOOT_EVENT = "BOOT"

INIT_GRACEFUL = r"""#!/bin/sh
# pid 1 of a test container: shuts down cleanly on SIGTERM or an initctl runlevel message.
echo "BOOT $$ $(cut -d' ' -f1 /proc/uptime)" >> /harness/events
stop() { echo "STOP $1" >> /harness/events; exit 0; }
trap 'stop signal' TERM
trap 'stop initctl' USR1
# /dev is the container's private tmpfs: the FIFO is this container's alone.
rm -f /dev/initctl
mkfifo -m 600 /dev/initctl
( trap - TERM USR1
  while :; do
    head -c 384 /dev/initctl > /dev/null && kill -USR1 1
  done ) &
echo READY >> /harness/events
while :; do sleep 1 & wait $!; done
"""

INIT_IGNORE = r"""#!/bin/sh
# pid 1 of a test container that ignores every shutdown request: only destroy stops it.
echo "BOOT $$ $(cut -d' ' -f1 /proc/uptime)" >> /harness/events
for s in TERM INT HUP USR1 USR2 PWR; do
  trap "echo IGNORED $s >> /harness/events" $s
done
echo READY >> /harness/events
while :; do sleep 1 & wait $!; done
"""

INITTAB = r"""::sysinit:/bin/sh -c 'echo "BOOT $$ $(cut -d" " -f1 /proc/uptime)" >> /harness/events'
::sysinit:/bin/sh -c 'echo READY >> /harness/events'
::respawn:/bin/sh -c 'while :; do sleep 3600; done'
::shutdown:/bin/sh -c 'echo "STOP busybox-init" >> /harness/events'
"""

DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "run",
        "root", "harness", "var")


def _recipe_key() -> str:
    st = BUSYBOX.stat()
    h = hashlib.sha256()
    for part in (INIT_GRACEFUL, INIT_IGNORE, INITTAB, repr(DIRS), str(st.st_size),
                 str(st.st_mtime_ns)):
        h.update(part.encode())
    return h.hexdigest()[:16]


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def build_rootfs(cache_dir: Path = DEFAULT_LXC_CACHE_DIR) -> Path:
    """The busybox root filesystem directory, built on first use (and again whenever the
    recipe above or busybox changes)."""
    if not BUSYBOX.is_file():
        raise HarnessError(f"{BUSYBOX} is missing: install busybox-static")
    key = _recipe_key()
    root = cache_dir / f"rootfs-{key}"
    if (root / ".complete").is_file():
        return root
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".rootfs-{key}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for d in DIRS:
        (tmp / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, tmp / "bin" / "busybox")
    listing = subprocess.run([str(BUSYBOX), "--list-full"], capture_output=True, text=True,
                             check=True, timeout=30).stdout.split()
    for applet in listing:
        link = tmp / applet
        if link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    _write(tmp / "etc" / "inittab", INITTAB)
    _write(tmp / "etc" / "passwd", "root:x:0:0:root:/root:/bin/sh\n")
    _write(tmp / "etc" / "group", "root:x:0:\n")
    _write(tmp / "init-graceful", INIT_GRACEFUL, 0o755)
    _write(tmp / "init-ignore", INIT_IGNORE, 0o755)
    (tmp / ".complete").write_text(key + "\n")
    # Older builds of the recipe are left alone: a concurrent user may still run them.
    try:
        tmp.rename(root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (root / ".complete").is_file():
            raise
    return root


def unique_name(stem: str) -> str:
    return f"pyvd-lxc-{stem}-{secrets.token_hex(3)}"[:60]


def domain_xml(name: str, rootfs: Path, harness_dir: Path, mode: str = "graceful",
               uuid: str | None = None, virt_type: str = "lxc",
               on_reboot: str = "restart") -> str:
    """A libvirt-lxc domain: ``rootfs`` read-only as /, ``harness_dir`` at /harness."""
    if mode not in MODES:
        raise ValueError(f"unknown container mode {mode!r} (one of {', '.join(MODES)})")
    uuid_el = f"\n  <uuid>{escape(uuid)}</uuid>" if uuid else ""
    return f"""<domain type={quoteattr(virt_type)}>
  <name>{escape(name)}</name>{uuid_el}
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>exe</type>
    <init>{MODES[mode]}</init>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>{escape(on_reboot)}</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{LXC_EMULATOR}</emulator>
    <filesystem type='mount' accessmode='passthrough'>
      <source dir={quoteattr(str(rootfs))}/>
      <target dir='/'/>
      <readonly/>
    </filesystem>
    <filesystem type='mount' accessmode='passthrough'>
      <source dir={quoteattr(str(harness_dir))}/>
      <target dir='/harness'/>
    </filesystem>
    <console type='pty'/>
  </devices>
</domain>
"""


@dataclass(frozen=True)
class Container:
    """One test container's files (nothing is started by creating this)."""

    name: str
    mode: str
    config: Path  # the domain XML file the agent gets as config=
    harness_dir: Path  # mounted at /harness in the container

    def events(self) -> list[str]:
        try:
            return (self.harness_dir / "events").read_text(errors="replace").splitlines()
        except OSError:
            return []

    def boots(self) -> int:
        return sum(1 for e in self.events() if e.startswith(BOOT_EVENT + " "))

    def wait_ready(self, timeout_s: float = 10.0, boots: int = 1) -> bool:
        """Until the init has booted ``boots`` times and the last boot got to READY."""
        def ready() -> bool:
            ev = self.events()
            return self.boots() >= boots and bool(ev) and ev[-1] == "READY"
        return wait_until(ready, timeout_s, 0.05)

    def controller_pids(self) -> list[int]:
        return controller_pids(self.name)


def new_container(directory: Path, name: str, mode: str, rootfs: Path,
                  uuid: str | None = None, virt_type: str = "lxc",
                  on_reboot: str = "restart") -> Container:
    harness_dir = directory / f"{name}.harness"
    harness_dir.mkdir(parents=True, exist_ok=True)
    config = directory / f"{name}.xml"
    config.write_text(domain_xml(name, rootfs, harness_dir, mode, uuid, virt_type, on_reboot),
                      encoding="utf-8")
    return Container(name=name, mode=mode, config=config, harness_dir=harness_dir)


# -- processes -------------------------------------------------------------------------------


def _arg_after(argv: list[str], flag: str) -> str | None:
    for a, b in zip(argv, argv[1:], strict=False):
        if a == flag:
            return b
    return None


def controller_pids(name: str) -> list[int]:
    """Live ``libvirt_lxc --name NAME`` controller processes (zombies excluded)."""
    found = []
    for pid in all_pids():
        if read_comm(pid) != CONTROLLER_COMM:
            continue
        argv = read_cmdline(pid)
        if name in (_arg_after(argv, "--name"), _arg_after(argv, "-n")) and pid_alive(pid):
            found.append(pid)
    return found


def kill_container_processes(name: str, timeout_s: float = 10.0) -> list[int]:
    """SIGKILL the controllers of ``name`` and everything below them; the pids killed."""
    pids: list[int] = []
    for ctl in controller_pids(name):
        pids.extend(descendants(ctl))
        pids.append(ctl)
    kill_all(pids, timeout_s)
    return pids


FREEZER = Path("/sys/fs/cgroup/freezer")
STUCK_CGROUP = "pyvd-stuck"


def freezer_cgroup_dirs(name: str) -> list[Path]:
    """The container's cgroup v1 freezer directories (libvirt 9.0 names them
    ``machine/lxc-<controller pid>-<name>.libvirt-lxc``; one per start)."""
    machine = FREEZER / "machine"
    if not machine.is_dir():
        return []
    return sorted(p for p in machine.iterdir()
                  if p.is_dir() and p.name.endswith(f"-{name}.libvirt-lxc"))


def _set_freezer(directory: Path, state: str) -> None:
    (directory / "freezer.state").write_text(state)


def freeze(name: str, pids: list[int] | None = None) -> Path:
    """Freeze processes of the running container behind libvirt's back, the way processes
    stuck in the kernel (state D) look to a killer: signals stay pending. ``pids`` None
    freezes the whole container, its libvirt_lxc controller included; else only ``pids``
    (moved into a child cgroup). Returns the frozen cgroup directory."""
    dirs = freezer_cgroup_dirs(name)
    if not dirs:
        raise HarnessError(f"no freezer cgroup for container {name} under {FREEZER} (this "
                           "needs cgroup v1's freezer controller)")
    target = dirs[-1]
    if pids is not None:
        target = target / STUCK_CGROUP
        target.mkdir(exist_ok=True)
        for pid in pids:
            (target / "cgroup.procs").write_text(str(pid))
    _set_freezer(target, "FROZEN")
    if not wait_until(lambda: (target / "freezer.state").read_text().strip() == "FROZEN",
                      5.0, 0.05):
        raise HarnessError(f"{target} did not freeze")
    return target


def thaw_frozen(name: str, timeout_s: float = 5.0) -> None:
    """Thaw everything ``freeze`` froze for ``name`` and remove the cgroups libvirt left
    behind once their processes are gone."""
    for d in freezer_cgroup_dirs(name):
        subs = [d / STUCK_CGROUP] if (d / STUCK_CGROUP).is_dir() else []
        for cg in [*subs, d]:
            try:
                _set_freezer(cg, "THAWED")
            except OSError:
                pass
        for cg in [*subs, d]:
            def empty(cg: Path = cg) -> bool:
                try:
                    return not (cg / "cgroup.procs").read_text().split()
                except OSError:
                    return True
            wait_until(empty, timeout_s, 0.05)
        for cg in [*subs, d]:
            try:
                if not controller_pids(name):
                    cg.rmdir()
            except OSError:
                pass


CGROUP_ROOT = Path("/sys/fs/cgroup")


def remove_cgroups(name: str, driver: str = "lxc") -> list[Path]:
    """Remove the empty cgroup v1 directories of domain ``name`` that libvirt left behind
    (it does when its destroy failed, or when the container died while libvirtd was down;
    libvirt 11 also for a qemu guest killed while libvirtd was down: driver "qemu");
    the directories that remain (processes still in them)."""
    left: list[Path] = []
    if not CGROUP_ROOT.is_dir():
        return left
    for machine in CGROUP_ROOT.glob("*/machine"):
        for d in machine.glob(f"*-{name}.libvirt-{driver}"):
            for cg in sorted((p for p in d.rglob("*") if p.is_dir()), reverse=True) + [d]:
                try:
                    cg.rmdir()
                except OSError:
                    left.append(cg)
    return left
