"""Tiny real guests: a PVH-bootable vmlinux and a busybox initramfs, and their domain XML.

The guest's /init prints markers on the serial console (ttyS0, logged to a file by libvirt):

    HARNESS-MODULE-FAILED <name>: <why>   a kernel module did not load (boot helpers raise)
    HARNESS-INIT-MARKER mode=<mode> ...   init runs
    HARNESS-ACPID started                 (graceful) the ACPI power button is now honoured
    HARNESS-POWERBUTTON -> poweroff       (graceful) acpid saw the power button
    HARNESS-SHUTDOWN ...                  busybox init runs its shutdown actions

``harness.mode=graceful`` runs busybox acpid (power button -> poweroff);
``harness.mode=ignore`` runs no acpid, so ACPI shutdown requests are ignored.

Production-like behaviour is opt-in through :class:`GuestOptions` (default: none of it, so
the default guest boots as fast as ever):

    HARNESS-AGENT started pid=<pid> ...   qemu-ga answers on org.qemu.guest_agent.0
    HARNESS-AGENT-STOPPED signal=<sig>    qemu-ga was killed (KILL) or frozen (STOP)
    HARNESS-SBIN-SHUTDOWN args=<argv>     /sbin/shutdown ran (what qemu-ga's guest-shutdown runs)
    HARNESS-SLOW-STOP begin via=<who> ... the guest starts going down (takes shutdown_delay_s)
    HARNESS-SLOW-STOP poweroff via=<who>  ... and powers off now
    HARNESS-WATCHDOG started ...          busybox watchdog feeds /dev/watchdog (i6300esb)
    HARNESS-WATCHDOG-STOPPED ...          it was SIGKILLed: nobody feeds the watchdog any more
    HARNESS-NET eth0 <ip> up              (ip) eth0 is up with its address, before the init marker
    HARNESS-AGENT-FAILED / HARNESS-WATCHDOG-FAILED / HARNESS-NET-FAILED ...
                                          that feature could not start (boot helpers raise)
    HARNESS-FILL started dev=vda          the guest writes /dev/vda until a write fails
    HARNESS-ORACLE started port=<dev>     (oracle) the never-twice writer runs
    HARNESS-ORACLE-FAILED ...             it could not start (boot helpers raise)

With ``GuestOptions(oracle=PATH)`` the guest writes, every ~100 ms, one line
``ORACLE <boot id> <counter> <uptime>`` in one write to the virtio-serial port
``org.pyvd.oracle``, which the domain XML connects to the file PATH (appended by whichever qemu
runs the guest): tests/harness/oracle.py checks that no two copies of the guest ever ran.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import platform
import re
import shutil
import stat
import subprocess
import tempfile
import time
import uuid as uuidlib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from pyvirtualdomain.fileio import atomic_write

from .common import (
    CLEAN_PATH,
    DEFAULT_CACHE_DIR,
    DEFAULT_URI,
    CallTimeout,
    HarnessError,
    wait_until,
)
from .domains import create_transient, remove_domain

BUSYBOX = Path("/bin/busybox")
QEMU_GA = Path("/usr/sbin/qemu-ga")
EMULATOR = "/usr/bin/qemu-system-x86_64"
MODES = ("graceful", "ignore")
INIT_MARKER = "HARNESS-INIT-MARKER"
ACPID_MARKER = "HARNESS-ACPID started"
POWERBUTTON_MARKER = "HARNESS-POWERBUTTON"
SHUTDOWN_MARKER = "HARNESS-SHUTDOWN"
MODULE_FAILED_MARKER = "HARNESS-MODULE-FAILED"
AGENT_MARKER = "HARNESS-AGENT started"
AGENT_FAILED_MARKER = "HARNESS-AGENT-FAILED"
AGENT_STOPPED_MARKER = "HARNESS-AGENT-STOPPED"
SBIN_SHUTDOWN_MARKER = "HARNESS-SBIN-SHUTDOWN"
SLOW_STOP_MARKER = "HARNESS-SLOW-STOP begin"
SLOW_POWEROFF_MARKER = "HARNESS-SLOW-STOP poweroff"
WATCHDOG_MARKER = "HARNESS-WATCHDOG started"
WATCHDOG_STOPPED_MARKER = "HARNESS-WATCHDOG-STOPPED"
WATCHDOG_FAILED_MARKER = "HARNESS-WATCHDOG-FAILED"
NET_MARKER = "HARNESS-NET eth0"
NET_FAILED_MARKER = "HARNESS-NET-FAILED"
FILL_MARKER = "HARNESS-FILL started"
ORACLE_MARKER = "HARNESS-ORACLE started"
ORACLE_FAILED_MARKER = "HARNESS-ORACLE-FAILED"
ORACLE_CHANNEL = "org.pyvd.oracle"
VIRT_TYPE_ENV = "PYVD_TEST_VIRT_TYPE"
AGENT_CHANNEL = "org.qemu.guest_agent.0"
WATCHDOG_ACTIONS = ("reset", "shutdown", "poweroff", "pause", "none", "dump", "inject-nmi")
DEFAULT_SHUTDOWN_DELAY_S = 5.0

# Kernel modules every guest loads (names as in modules.dep): the ACPI power button, and
# virtio-pci + virtio-net for tests that give the guest a network. Load order, dependencies
# first, comes from the kernel's modules.dep.
BASE_MODULES = ("button", "evdev", "virtio_pci", "virtio_net")
# Packed too, loaded only when a guest's options ask for the feature (harness.modules=...).
AGENT_MODULE = "virtio_console"
WATCHDOG_MODULE = "i6300esb"
DISK_MODULE = "virtio_blk"
EXTRA_MODULES = (AGENT_MODULE, WATCHDOG_MODULE, DISK_MODULE)

INIT = """#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mode=graceful; ip=; tick=5; modules=; agent=0; agent_stop_after=; shutdown_delay=5
slow_acpi=0; watchdog=0; watchdog_timeout=2; watchdog_stop_after=; fill=; oracle=0
for a in $(cat /proc/cmdline); do
  case "$a" in
    harness.mode=*) mode=${a#harness.mode=} ;;
    harness.ip=*)   ip=${a#harness.ip=} ;;
    harness.tick=*) tick=${a#harness.tick=} ;;
    harness.modules=*) modules=${a#harness.modules=} ;;
    harness.agent=*) agent=${a#harness.agent=} ;;
    harness.agent_stop_after=*) agent_stop_after=${a#harness.agent_stop_after=} ;;
    harness.shutdown_delay=*) shutdown_delay=${a#harness.shutdown_delay=} ;;
    harness.slow_acpi=*) slow_acpi=${a#harness.slow_acpi=} ;;
    harness.watchdog=*) watchdog=${a#harness.watchdog=} ;;
    harness.watchdog_timeout=*) watchdog_timeout=${a#harness.watchdog_timeout=} ;;
    harness.watchdog_stop_after=*) watchdog_stop_after=${a#harness.watchdog_stop_after=} ;;
    harness.fill=*) fill=${a#harness.fill=} ;;
    harness.oracle=*) oracle=${a#harness.oracle=} ;;
  esac
done
# /modules/<name>.order: the module and what it needs, dependencies first (from modules.dep).
# A module that does not load is announced, never hidden: the harness fails the boot.
loaded=" "; nloaded=0
for top in $(cat /modules/base) $(echo "$modules" | tr , ' '); do
  if [ ! -f "/modules/$top.order" ]; then
    echo "HARNESS-MODULE-FAILED $top: not in the initramfs" > /dev/console; continue
  fi
  for m in $(cat "/modules/$top.order"); do
    case "$loaded" in *" $m "*) continue ;; esac
    loaded="$loaded$m "
    if insmod "/modules/$m.ko" 2>/tmp/insmod.err; then
      nloaded=$((nloaded + 1))
    else
      echo "HARNESS-MODULE-FAILED $m: $(cat /tmp/insmod.err)" > /dev/console
    fi
  done
done
hostname guest
ip link set lo up
if [ -n "$ip" ]; then
  ip link set eth0 up && ip addr add "$ip" dev eth0
  # The link comes up (operstate) about a second after the carrier: wait, so that the
  # guest is reachable once init announces itself.
  i=0
  while [ "$(cat /sys/class/net/eth0/operstate)" != up ] && [ $i -lt 100 ]; do
    i=$((i + 1)); sleep 0.05
  done
  if [ "$(cat /sys/class/net/eth0/operstate)" = up ]; then
    echo "HARNESS-NET eth0 $ip up uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/console
  else
    echo "HARNESS-NET-FAILED eth0 $ip still $(cat /sys/class/net/eth0/operstate) after 5 s" \\
      > /dev/console
  fi
fi
echo "$mode" > /run/harness.mode
echo "$tick" > /run/harness.tick
cat > /run/harness.env <<EOF
mode=$mode
agent=$agent
agent_stop_after=$agent_stop_after
shutdown_delay=$shutdown_delay
slow_acpi=$slow_acpi
watchdog=$watchdog
watchdog_timeout=$watchdog_timeout
watchdog_stop_after=$watchdog_stop_after
fill=$fill
oracle=$oracle
EOF
echo "HARNESS-INIT-MARKER mode=$mode uptime=$(cut -d' ' -f1 /proc/uptime) modules=$nloaded" \\
  > /dev/console
exec /bin/busybox init
"""

INITTAB = """::sysinit:/etc/rc.sh
::respawn:/etc/tick.sh
::shutdown:/bin/sh -c 'echo "HARNESS-SHUTDOWN uptime=$(cut -d" " -f1 /proc/uptime)" > /dev/console'
"""

RC = """#!/bin/sh
. /run/harness.env
if [ "$mode" = graceful ]; then
  acpid -c /etc/acpi -l /tmp/acpid.log
  echo "HARNESS-ACPID started" > /dev/console
else
  echo "HARNESS-ACPID not started (shutdown requests will be ignored)" > /dev/console
fi
if [ "$agent" = 1 ]; then /etc/harness/agent.sh; fi
if [ "$watchdog" = 1 ]; then /etc/harness/watchdog.sh; fi
if [ -n "$fill" ]; then /etc/harness/fill.sh & fi
if [ "$oracle" = 1 ]; then /etc/harness/oracle.sh; fi
"""

TICK = """#!/bin/sh
t=$(cat /run/harness.tick)
while :; do
  sleep "$t"; echo "HARNESS-TICK uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/console
done
"""

# busybox acpid maps KEY_POWER to the action file PWRF/00000080 below its -c directory.
POWER_BUTTON = """#!/bin/sh
echo "HARNESS-POWERBUTTON -> poweroff" > /dev/console
. /run/harness.env
if [ "$slow_acpi" = 1 ]; then exec /etc/harness/slow-stop.sh acpi poweroff; fi
poweroff
"""

# What qemu-ga 7.2 runs for guest-shutdown: `/sbin/shutdown -h -P +0 "hypervisor initiated
# shutdown"` (-r reboot, -H halt), its stdio on /dev/null, and it waits for the exit status.
# Like systemd's shutdown, this one only schedules the power-off and returns at once; the
# system then takes harness.shutdown_delay seconds to go down, as a real OS does.
SBIN_SHUTDOWN = """#!/bin/sh
echo "HARNESS-SBIN-SHUTDOWN args=$* uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/console
action=poweroff
for a in "$@"; do
  case "$a" in -r) action=reboot ;; -H) action=halt ;; -P) action=poweroff ;; esac
done
setsid /etc/harness/slow-stop.sh shutdown "$action" </dev/null >/dev/null 2>&1 &
exit 0
"""

# $1 who asked (shutdown, acpi), $2 poweroff|reboot|halt. A second request while the guest
# is already going down changes nothing (mkdir is the lock).
SLOW_STOP = """#!/bin/sh
. /run/harness.env
up() { cut -d' ' -f1 /proc/uptime; }
if ! mkdir /run/harness.stopping 2>/dev/null; then
  echo "HARNESS-SLOW-STOP again via=$1 (already going down) uptime=$(up)" > /dev/console
  exit 0
fi
echo "HARNESS-SLOW-STOP begin via=$1 action=$2 delay=$shutdown_delay uptime=$(up)" \\
  > /dev/console
sleep "$shutdown_delay"
echo "HARNESS-SLOW-STOP $2 via=$1 uptime=$(up)" > /dev/console
exec "$2"
"""

# No udev in the guest: the agent's port is found by its name in sysfs.
AGENT = """#!/bin/sh
. /run/harness.env
if [ ! -x /usr/sbin/qemu-ga ]; then
  echo "HARNESS-AGENT-FAILED no /usr/sbin/qemu-ga in this initramfs" > /dev/console; exit 0
fi
dev=; i=0
while [ $i -lt 200 ]; do
  for p in /sys/class/virtio-ports/*; do
    [ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && dev=/dev/${p##*/}
  done
  [ -n "$dev" ] && [ -c "$dev" ] && break
  dev=; i=$((i + 1)); sleep 0.05
done
if [ -z "$dev" ]; then
  echo "HARNESS-AGENT-FAILED no org.qemu.guest_agent.0 port" > /dev/console; exit 0
fi
mkdir -p /dev/virtio-ports /var/run
ln -sf "$dev" /dev/virtio-ports/org.qemu.guest_agent.0
/usr/sbin/qemu-ga -m virtio-serial -p "$dev" -l /tmp/qemu-ga.log -t /run &
echo $! > /run/harness.qemu-ga.pid
echo "HARNESS-AGENT started pid=$! port=$dev uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/console
if [ -n "$agent_stop_after" ]; then
  /etc/harness/stop-agent.sh KILL "$agent_stop_after" </dev/null >/dev/null 2>&1 &
fi
"""

# $1 KILL (the agent crashed: its port closes) or STOP (hung: the port stays open, nothing
# answers); $2 seconds to wait first (lets a guest-exec that runs this get its reply out).
STOP_AGENT = """#!/bin/sh
sleep "${2:-0}"
pid=$(cat /run/harness.qemu-ga.pid)
if kill -"${1:-KILL}" "$pid"; then
  echo "HARNESS-AGENT-STOPPED signal=${1:-KILL} pid=$pid uptime=$(cut -d' ' -f1 /proc/uptime)" \\
    > /dev/console
fi
"""

# SIGKILL, so busybox watchdog cannot write the magic close character that disarms it.
WATCHDOG = """#!/bin/sh
. /run/harness.env
i=0
while [ ! -c /dev/watchdog ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.05; done
if [ ! -c /dev/watchdog ]; then
  echo "HARNESS-WATCHDOG-FAILED no /dev/watchdog" > /dev/console; exit 0
fi
watchdog -F -T "$watchdog_timeout" -t 500ms /dev/watchdog &
pid=$!
echo "HARNESS-WATCHDOG started timeout=$watchdog_timeout pid=$pid" \\
  "uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/console
if [ -n "$watchdog_stop_after" ]; then
  ( sleep "$watchdog_stop_after"; kill -KILL "$pid" &&
    echo "HARNESS-WATCHDOG-STOPPED uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/console
  ) </dev/null >/dev/null 2>&1 &
fi
"""

FILL = """#!/bin/sh
. /run/harness.env
i=0
while [ ! -b "/dev/$fill" ] && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.05; done
echo "HARNESS-FILL started dev=$fill uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/console
dd if=/dev/zero of="/dev/$fill" bs=1M oflag=direct 2>/tmp/fill.err
rc=$?
echo "HARNESS-FILL ended rc=$rc $(tail -n 1 /tmp/fill.err)" > /dev/console
"""


# The never-twice oracle (tests/harness/oracle.py): the port is found by its name in sysfs;
# each record is one write (echo to the port), so two copies' lines interleave, never tear.
ORACLE = """#!/bin/sh
port=; i=0
while [ $i -lt 200 ]; do
  for p in /sys/class/virtio-ports/*; do
    [ "$(cat "$p/name" 2>/dev/null)" = org.pyvd.oracle ] && port=/dev/${p##*/}
  done
  [ -n "$port" ] && [ -c "$port" ] && break
  port=; i=$((i + 1)); sleep 0.05
done
if [ -z "$port" ]; then
  echo "HARNESS-ORACLE-FAILED no org.pyvd.oracle port" > /dev/console; exit 0
fi
bootid=$(cat /proc/sys/kernel/random/boot_id)
( exec 3> "$port"; n=0
  while :; do
    read up _ < /proc/uptime; echo "ORACLE $bootid $n $up" >&3; n=$((n+1)); usleep 100000
  done ) </dev/null >/dev/null 2>&1 &
echo "HARNESS-ORACLE started port=$port uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/console
"""


@dataclass(frozen=True)
class GuestArtifacts:
    kernel: Path  # ELF vmlinux, booted through its PVH entry point
    initramfs: Path  # gzip'd newc cpio
    kernel_version: str
    key: str  # kernel version + hash of the builder: names the cache entry
    # initramfs plus an appended archive with qemu-ga and its libraries (None: qemu-ga is
    # not installed on this host)
    agent_initramfs: Path | None = None


@dataclass(frozen=True)
class GuestOptions:
    """What a test guest does beyond booting. The defaults add nothing: the guest and its
    kernel command line stay exactly what tests had before these options existed."""

    # qemu-ga on a virtio-serial channel org.qemu.guest_agent.0 (libvirt's agent channel).
    agent: bool = False
    # qemu-ga is SIGKILLed this many seconds after it started (None: never).
    agent_stop_after_s: float | None = None
    # How long the guest takes to go down once /sbin/shutdown (qemu-ga's guest-shutdown) ran.
    shutdown_delay_s: float = DEFAULT_SHUTDOWN_DELAY_S
    # The ACPI power button (graceful mode) goes down just as slowly, instead of at once.
    slow_acpi: bool = False
    # An i6300esb watchdog with this action (pause, reset, none, ...), fed by busybox
    # watchdog every 0.5 s with a timeout of watchdog_timeout_s.
    watchdog_action: str | None = None
    watchdog_timeout_s: int = 2
    # The feeding process is SIGKILLed this many seconds after it started (None: never).
    watchdog_stop_after_s: float | None = None
    # A raw file as virtio-blk disk vda (error_policy, e.g. 'stop': qemu pauses the guest on a
    # write error); fill_disk: the guest writes /dev/vda until a write fails.
    disk: Path | None = None
    disk_error_policy: str = "stop"
    fill_disk: bool = False
    # A tap device created beforehand (libvirt <interface type='ethernet'> managed='no'),
    # virtio-net, and the guest's address on it (e.g. "10.123.0.2/24").
    tap: str | None = None
    ip: str | None = None
    # More modules to load (must be in the initramfs: BASE_MODULES + EXTRA_MODULES).
    modules: tuple[str, ...] = ()
    # The never-twice oracle's file (a virtio-serial channel appending to it; see ORACLE).
    oracle: Path | None = None


# -- kernel ----------------------------------------------------------------------------------


def _version_key(version: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", version)]


def newest_kernel_version(boot: Path = Path("/boot")) -> str:
    versions = [p.name[len("vmlinuz-"):] for p in boot.glob("vmlinuz-*")]
    if not versions:
        raise HarnessError(f"no {boot}/vmlinuz-* (install linux-image-amd64)")
    return max(versions, key=_version_key)


def zstd_decompress(data: bytes, what: str) -> bytes:
    """The first zstd frame of ``data`` decompressed (bytes after the frame are ignored, as
    in a kernel image). Debian 13 compresses its kernel (the test guests') with zstd; Python
    3.13 has no zstd module of its own, Debian's python3-zstandard is the one used. A
    malformed frame raises ValueError."""
    try:
        import zstandard  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise HarnessError(f"{what} is zstd-compressed and Python's zstandard module is missing "
                           "(Debian package python3-zstandard: make deps-system)") from None
    try:
        return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(data))
    except zstandard.ZstdError as exc:
        raise ValueError(f"{what}: {exc}") from None


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The ELF vmlinux inside a compressed kernel image (xz, gzip, zstd or lzma payload)."""
    magics = ((b"\xfd7zXZ\x00", "xz"), (b"\x1f\x8b\x08", "gz"), (b"\x28\xb5\x2f\xfd", "zstd"),
              (b"]\x00\x00\x00", "lzma"))
    for magic, kind in magics:
        pos = bzimage.find(magic)
        while pos != -1:
            blob = bzimage[pos:]
            out = b""
            try:
                if kind == "xz":
                    out = lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(blob)
                elif kind == "lzma":
                    out = lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(blob)
                elif kind == "gz":
                    out = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(blob)
                else:
                    # A missing zstandard module is an error, not "no payload here": the
                    # image would otherwise be reported as holding no kernel at all.
                    out = zstd_decompress(blob, "the kernel image")
            except (lzma.LZMAError, zlib.error, ValueError, EOFError):
                out = b""
            if out[:4] == b"\x7fELF":
                return out
            pos = bzimage.find(magic, pos + 1)
    raise HarnessError("no compressed ELF payload found in the kernel image")


# -- initramfs -------------------------------------------------------------------------------


class Cpio:
    """A minimal writer of the newc cpio format (what the kernel unpacks as initramfs)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0),
               nlink: int = 1) -> None:
        encoded = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(encoded), 0)
        self.ino += 1
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.buf.write(header + encoded)
        self.buf.write(b"\0" * (-(len(header) + len(encoded)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755, nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def chardev(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0, nlink=1)
        self.buf.write(b"\0" * (-self.buf.tell() % 512))
        return self.buf.getvalue()


_KO_SUFFIXES = (".ko", ".ko.xz", ".ko.gz", ".ko.zst")


def _module_name(path: str) -> str:
    """modules.dep's path -> the module's name (as insmod and /sys/module know it)."""
    base = os.path.basename(path)
    for suffix in _KO_SUFFIXES:
        if base.endswith(suffix):
            base = base[:-len(suffix)]
            break
    return base.replace("-", "_")


@dataclass(frozen=True)
class ModuleIndex:
    """A kernel's modules.dep and modules.builtin: where each module is, what it needs."""

    moddir: Path
    paths: dict[str, str]  # name -> path relative to moddir
    deps: dict[str, tuple[str, ...]]  # name -> names of every module it needs
    builtin: frozenset[str]

    @classmethod
    def read(cls, moddir: Path) -> ModuleIndex:
        try:
            dep_text = (moddir / "modules.dep").read_text()
        except OSError as exc:
            raise HarnessError(f"{moddir}/modules.dep unreadable ({exc}): is the kernel's "
                               "module tree installed?") from None
        paths: dict[str, str] = {}
        deps: dict[str, tuple[str, ...]] = {}
        for line in dep_text.splitlines():
            target, sep, needs = line.partition(":")
            if not sep:
                continue
            name = _module_name(target)
            paths[name] = target.strip()
            deps[name] = tuple(_module_name(d) for d in needs.split())
        try:
            builtin_text = (moddir / "modules.builtin").read_text()
        except OSError:
            builtin_text = ""
        builtin = frozenset(_module_name(p) for p in builtin_text.split())
        return cls(moddir=moddir, paths=paths, deps=deps, builtin=builtin)

    def load_order(self, name: str) -> list[str]:
        """``name`` and every module it needs, each after what it needs (built-in ones left
        out: they are always there)."""
        order: list[str] = []
        visiting: set[str] = set()

        def visit(mod: str, chain: tuple[str, ...]) -> None:
            if mod in order or mod in self.builtin:
                return
            if mod not in self.deps:
                via = " <- ".join(chain)
                raise HarnessError(f"kernel module {mod} is neither in "
                                   f"{self.moddir}/modules.dep nor built in"
                                   + (f" (needed by {via})" if via else ""))
            if mod in visiting:
                raise HarnessError(f"dependency loop in modules.dep at {mod}")
            visiting.add(mod)
            for dep in self.deps[mod]:
                visit(dep, (mod, *chain))
            visiting.discard(mod)
            order.append(mod)

        visit(name, ())
        return order

    def module_bytes(self, name: str) -> bytes:
        path = self.moddir / self.paths[name]
        data = path.read_bytes()
        if path.name.endswith(".ko.xz"):
            return lzma.decompress(data)
        if path.name.endswith(".ko.gz"):
            return gzip.decompress(data)
        if path.name.endswith(".ko.zst"):
            return zstd_decompress(data, str(path))
        return data


def build_initramfs(kernel_version: str) -> bytes:
    if not BUSYBOX.is_file():
        raise HarnessError(f"{BUSYBOX} missing (install busybox-static)")
    index = ModuleIndex.read(Path("/lib/modules") / kernel_version)
    archive = Cpio()
    for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run",
              "etc", "etc/acpi", "etc/acpi/PWRF", "etc/harness", "modules", "root", "var"):
        archive.directory(d)
    archive.chardev("dev/console", 5, 1)
    archive.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    packed: set[str] = set()
    for top in BASE_MODULES + EXTRA_MODULES:
        order = index.load_order(top)
        archive.file(f"modules/{top}.order", "".join(f"{m}\n" for m in order).encode())
        for mod in order:
            if mod not in packed:
                archive.file(f"modules/{mod}.ko", index.module_bytes(mod))
                packed.add(mod)
    archive.file("modules/base", "".join(f"{m}\n" for m in BASE_MODULES).encode())
    archive.file("init", INIT.encode(), 0o755)
    archive.file("etc/inittab", INITTAB.encode())
    archive.file("etc/rc.sh", RC.encode(), 0o755)
    archive.file("etc/tick.sh", TICK.encode(), 0o755)
    archive.file("etc/acpi/PWRF/00000080", POWER_BUTTON.encode(), 0o755)
    archive.file("sbin/shutdown", SBIN_SHUTDOWN.encode(), 0o755)
    for script, text in (("slow-stop.sh", SLOW_STOP), ("agent.sh", AGENT),
                         ("stop-agent.sh", STOP_AGENT), ("watchdog.sh", WATCHDOG),
                         ("fill.sh", FILL), ("oracle.sh", ORACLE)):
        archive.file(f"etc/harness/{script}", text.encode(), 0o755)
    archive.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    archive.file("etc/group", b"root:x:0:\n")
    return gzip.compress(archive.finish(), compresslevel=6, mtime=0)


def shared_libraries(binary: Path) -> list[Path]:
    """The shared objects ``binary`` loads (ldd's absolute paths, the ELF interpreter too)."""
    proc = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=60,
                          check=False, env={"PATH": CLEAN_PATH, "LANG": "C"})
    if proc.returncode != 0:
        raise HarnessError(f"ldd {binary}: {proc.stderr.strip() or proc.stdout.strip()}")
    libs: list[Path] = []
    for line in proc.stdout.splitlines():
        if "not found" in line:
            raise HarnessError(f"{binary} needs a library the host lacks: {line.strip()}")
        for word in line.split():
            if word.startswith("/") and Path(word) not in libs:
                libs.append(Path(word))
    return libs


def build_agent_archive(qemu_ga: Path = QEMU_GA) -> bytes:
    """A gzip'd cpio with Debian's qemu-ga and the libraries it links, at their host paths;
    appended to the test initramfs (the kernel unpacks concatenated archives)."""
    archive = Cpio()
    dirs: set[str] = {"usr", "usr/sbin"}
    files: list[tuple[str, Path]] = [("usr/sbin/qemu-ga", qemu_ga)]
    for lib in shared_libraries(qemu_ga):
        rel = str(lib).lstrip("/")
        files.append((rel, lib))
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    for d in sorted(dirs, key=lambda d: (d.count("/"), d)):
        archive.directory(d)
    for rel, src in files:
        archive.file(rel, src.read_bytes(), 0o755)
    return gzip.compress(archive.finish(), compresslevel=6, mtime=0)


def _builder_hash(kernel_image: Path) -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    for path in (BUSYBOX, kernel_image, QEMU_GA):
        try:
            st = path.stat()
            h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode())
        except FileNotFoundError:
            h.update(f"{path}:absent".encode())
    return h.hexdigest()[:12]


def _write_atomic(path: Path, data: bytes) -> None:
    atomic_write(str(path), data, mode=0o644)


def build_artifacts(cache_dir: Path = DEFAULT_CACHE_DIR) -> GuestArtifacts:
    """Kernel and initramfs for test guests, built once and cached in ``cache_dir``."""
    version = newest_kernel_version()
    image = Path("/boot") / f"vmlinuz-{version}"
    key = f"{version}-{_builder_hash(image)}"
    entry = Path(cache_dir) / key
    entry.mkdir(parents=True, exist_ok=True)
    kernel = entry / "vmlinux"
    initramfs = entry / "initramfs.cpio.gz"
    agent_initramfs: Path | None = entry / "initramfs-agent.cpio.gz"
    if not kernel.is_file():
        _write_atomic(kernel, extract_vmlinux(image.read_bytes()))
    if not initramfs.is_file():
        _write_atomic(initramfs, build_initramfs(version))
    if not QEMU_GA.is_file():
        agent_initramfs = None
    elif agent_initramfs is not None and not agent_initramfs.is_file():
        _write_atomic(agent_initramfs, initramfs.read_bytes() + build_agent_archive())
    return GuestArtifacts(kernel=kernel, initramfs=initramfs, kernel_version=version, key=key,
                          agent_initramfs=agent_initramfs)


# -- domains ---------------------------------------------------------------------------------


def _seconds(value: float) -> str:
    if value < 0:
        raise ValueError(f"negative duration {value}")
    return f"{value:g}"


def _check_name(what: str, value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:/-]+", value):
        raise ValueError(f"{what} {value!r}: letters, digits and _.:/- only")
    return value


def options_cmdline(options: GuestOptions) -> list[str]:
    """The ``harness.*`` kernel arguments for ``options`` (none for the defaults)."""
    args: list[str] = []
    modules = list(options.modules)
    if options.agent:
        args.append("harness.agent=1")
        modules.append(AGENT_MODULE)
    if options.agent_stop_after_s is not None:
        if not options.agent:
            raise ValueError("agent_stop_after_s needs agent=True")
        args.append(f"harness.agent_stop_after={_seconds(options.agent_stop_after_s)}")
    if options.shutdown_delay_s != DEFAULT_SHUTDOWN_DELAY_S:
        args.append(f"harness.shutdown_delay={_seconds(options.shutdown_delay_s)}")
    if options.slow_acpi:
        args.append("harness.slow_acpi=1")
    if options.watchdog_action is not None:
        if options.watchdog_timeout_s < 1:
            raise ValueError("watchdog_timeout_s must be at least 1")
        args += ["harness.watchdog=1", f"harness.watchdog_timeout={options.watchdog_timeout_s}"]
        modules.append(WATCHDOG_MODULE)
        if options.watchdog_stop_after_s is not None:
            args.append(f"harness.watchdog_stop_after={_seconds(options.watchdog_stop_after_s)}")
    elif options.watchdog_stop_after_s is not None:
        raise ValueError("watchdog_stop_after_s needs watchdog_action")
    if options.disk is not None:
        modules.append(DISK_MODULE)
        if options.fill_disk:
            args.append("harness.fill=vda")
    elif options.fill_disk:
        raise ValueError("fill_disk needs a disk")
    if options.ip is not None:
        args.append(f"harness.ip={_check_name('ip', options.ip)}")
    if options.oracle is not None:
        args.append("harness.oracle=1")
        modules.append(AGENT_MODULE)
    if modules:
        unique = list(dict.fromkeys(_check_name("module", m) for m in modules))
        args.append(f"harness.modules={','.join(unique)}")
    return args


def _options_devices(options: GuestOptions) -> str:
    devices: list[str] = []
    if options.disk is not None:
        devices.append(f"""    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' error_policy={quoteattr(options.disk_error_policy)}/>
      <source file={quoteattr(str(options.disk))}/>
      <target dev='vda' bus='virtio'/>
    </disk>""")
    if options.tap is not None:
        devices.append(f"""    <interface type='ethernet'>
      <target dev={quoteattr(options.tap)} managed='no'/>
      <model type='virtio'/>
    </interface>""")
    if options.agent:
        devices.append(f"""    <channel type='unix'>
      <target type='virtio' name='{AGENT_CHANNEL}'/>
    </channel>""")
    if options.oracle is not None:
        devices.append(f"""    <channel type='file'>
      <source path={quoteattr(str(options.oracle))} append='on'/>
      <target type='virtio' name='{ORACLE_CHANNEL}'/>
    </channel>""")
    if options.watchdog_action is not None:
        if options.watchdog_action not in WATCHDOG_ACTIONS:
            raise ValueError(f"watchdog action {options.watchdog_action!r} is not one of "
                             f"{WATCHDOG_ACTIONS}")
        devices.append(f"    <watchdog model='i6300esb' "
                       f"action={quoteattr(options.watchdog_action)}/>")
    return "".join(d + "\n" for d in devices)


def domain_xml(name: str, mode: str, artifacts: GuestArtifacts, virt_type: str,
               console_log: Path | str, uuid: str | None = None, memory_mib: int = 128,
               extra_cmdline: str = "", options: GuestOptions | None = None) -> str:
    """A diskless one-vCPU domain booting the test kernel, its console logged to a file;
    ``options`` adds what production guests have (agent, watchdog, a disk, a NIC)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {MODES}")
    if virt_type not in ("qemu", "kvm"):
        raise ValueError(f"virt_type {virt_type!r} is not qemu or kvm")
    options = options or GuestOptions()
    initramfs = artifacts.initramfs
    if options.agent:
        if artifacts.agent_initramfs is None:
            raise HarnessError(f"{QEMU_GA} is not installed: the agent guest needs Debian's "
                               "qemu-guest-agent (make deps-system)")
        initramfs = artifacts.agent_initramfs
    uuid_line = f"\n  <uuid>{escape(str(uuidlib.UUID(uuid)))}</uuid>" if uuid else ""
    cmdline = " ".join(["console=ttyS0 quiet", f"harness.mode={mode}",
                        *options_cmdline(options), extra_cmdline]).strip()
    return f"""<domain type={quoteattr(virt_type)}>
  <name>{escape(name)}</name>{uuid_line}
  <memory unit='MiB'>{int(memory_mib)}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(str(artifacts.kernel))}</kernel>
    <initrd>{escape(str(initramfs))}</initrd>
    <cmdline>{escape(cmdline)}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{EMULATOR}</emulator>
    <controller type='usb' model='none'/>
{_options_devices(options)}    <serial type='pty'>
      <log file={quoteattr(str(console_log))} append='off'/>
      <target port='0'/>
    </serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def console_text(path: Path | str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def boot_failures(text: str) -> list[str]:
    """The console lines saying the guest's set-up failed (module, agent, watchdog, NIC)."""
    return [line.strip() for line in text.splitlines()
            if any(m in line for m in (MODULE_FAILED_MARKER, AGENT_FAILED_MARKER,
                                       WATCHDOG_FAILED_MARKER, NET_FAILED_MARKER,
                                       ORACLE_FAILED_MARKER))]


def wait_for_console(path: Path | str, marker: str, timeout_s: float) -> bool:
    """Whether ``marker`` appears in the console log within ``timeout_s``.

    Raises HarnessError as soon as the console says the guest's own set-up failed (a kernel
    module that did not load, an agent that could not start): such a guest is not the guest
    the test asked for."""
    failures: list[str] = []

    def seen() -> bool:
        text = console_text(path)
        failures.extend(boot_failures(text))
        return bool(failures) or marker in text

    found = wait_until(seen, timeout_s, 0.05)
    if failures:
        raise HarnessError(f"the guest's set-up failed ({path}): {'; '.join(failures)}")
    return found


def _boots(artifacts: GuestArtifacts, virt_type: str, workdir: Path, uri: str,
           timeout_s: float) -> bool:
    name = f"pyvd-virt-probe-{virt_type}-{os.getpid()}"
    log = workdir / f"{name}.console.log"
    xml = domain_xml(name, "ignore", artifacts, virt_type, log)
    try:
        try:
            create_transient(xml, uri)
        except CallTimeout:
            return False
        except Exception as exc:  # noqa: BLE001 - libvirt refusing this virt type = no
            import libvirt

            if isinstance(exc, libvirt.libvirtError):
                return False
            raise
        return wait_for_console(log, INIT_MARKER, timeout_s)
    finally:
        remove_domain(name, uri)


def detect_virt_type(artifacts: GuestArtifacts, cache_dir: Path = DEFAULT_CACHE_DIR,
                     uri: str = DEFAULT_URI, boot_timeout_s: float = 20.0) -> str:
    """"kvm" when a guest really boots under KVM here, else "qemu" (TCG).

    Decided by a bounded boot of a throwaway transient domain (the presence of /dev/kvm
    proves nothing: nested kvm_pvm accepts guests that never print a line), cached in
    ``cache_dir``; environment variable PYVD_TEST_VIRT_TYPE=qemu|kvm forces the answer."""
    forced = os.environ.get(VIRT_TYPE_ENV, "").strip()
    if forced:
        if forced not in ("qemu", "kvm"):
            raise HarnessError(f"{VIRT_TYPE_ENV}={forced!r}: use qemu or kvm")
        return forced
    has_kvm = os.path.exists("/dev/kvm")
    key = f"{artifacts.key}|{platform.release()}|kvm={has_kvm}"
    cache = Path(cache_dir) / "virt-type.json"
    try:
        cached = json.loads(cache.read_text())
        if cached.get("key") == key and cached.get("virt_type") in ("qemu", "kvm"):
            return str(cached["virt_type"])
    except (OSError, ValueError, AttributeError):
        pass
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="virt-probe-", dir=cache_dir))
    started = time.monotonic()
    if has_kvm and _boots(artifacts, "kvm", workdir, uri, boot_timeout_s):
        answer = "kvm"
    elif _boots(artifacts, "qemu", workdir, uri, max(boot_timeout_s, 60.0)):
        answer = "qemu"
    else:
        # The console logs stay for a post-mortem.
        raise HarnessError(f"the test guest boots neither under KVM nor TCG (console logs "
                           f"in {workdir})")
    took = time.monotonic() - started
    shutil.rmtree(workdir, ignore_errors=True)
    _write_atomic(cache, json.dumps({"key": key, "virt_type": answer,
                                     "decided_in_s": round(took, 1)}).encode())
    return answer
