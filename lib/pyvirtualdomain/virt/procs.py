"""Finding (and, as the last resort, killing) a domain's processes without libvirt.

Used when libvirtd cannot be asked, or to check what it says. An emulator counts only if it
runs in this host's network namespace, so that guests of another libvirt host sharing the
kernel (test hosts in network namespaces) are never mistaken for ours; a container's own
processes are known by its name and uuid, and are another host's when their libvirt_lxc
controller runs in another network namespace.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

from .domxml import DomainIdentity

LXC_CONTROLLER = "libvirt_lxc"


def available() -> bool:
    """Whether psutil can be imported (the one optional dependency of this module): a
    container's processes are found, and any emulator killed, through it."""
    try:
        import psutil  # noqa: F401
    except ImportError:
        return False
    return True


def lookup_available(ident: DomainIdentity) -> bool:
    """Whether this domain's running processes can be listed here: a qemu domain's from /proc
    alone, a container's needs psutil."""
    return ident.virt_type != "lxc" or available()


def _namespace(kind: str, pid: int | str = "self") -> str | None:
    """The identity of a process's namespace of ``kind`` ("net", "pid"); None if unknown."""
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def _qemu_guest_name(value: str) -> str:
    """The name in qemu's ``-name guest=NAME,debug-threads=on`` (commas doubled in NAME)."""
    if value.startswith("guest="):
        value = value[len("guest="):]
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == ",":
            if i + 1 < len(value) and value[i + 1] == ",":
                out.append(",")
                i += 2
                continue
            break
        out.append(value[i])
        i += 1
    return "".join(out)


def _arg_after(cmdline: list[str], flag: str) -> str | None:
    for i, arg in enumerate(cmdline[:-1]):
        if arg == flag:
            return cmdline[i + 1]
    return None


def matches(ident: DomainIdentity, name: str, cmdline: list[str]) -> bool:
    """Whether a process (its name and argv) is the emulator of this domain."""
    if not cmdline:
        return False
    if ident.virt_type == "lxc":
        if name != LXC_CONTROLLER and os.path.basename(cmdline[0]) != LXC_CONTROLLER:
            return False
        return ident.name in (_arg_after(cmdline, "--name"), _arg_after(cmdline, "-n"))
    exe = os.path.basename(cmdline[0])
    is_qemu = exe.startswith("qemu-system") or exe == "qemu-kvm" or name.startswith("qemu-system") \
        or (ident.emulator is not None and exe == os.path.basename(ident.emulator))
    if not is_qemu:
        return False
    uuid_arg = _arg_after(cmdline, "-uuid")
    if ident.uuid and uuid_arg:
        return uuid_arg.lower() == ident.uuid
    name_arg = _arg_after(cmdline, "-name")
    return name_arg is not None and _qemu_guest_name(name_arg) == ident.name


def container_members(ident: DomainIdentity, controllers_elsewhere: set[int]) -> list[Any]:
    """Every process of a libvirt-lxc container, found without its controller (which may have
    died, OOM or crash, leaving init and its children running, re-parented): the container's
    init carries LIBVIRT_LXC_NAME and LIBVIRT_LXC_UUID in its environment, and libvirt-lxc
    always gives it a pid namespace of its own, which every process of the container shares.
    A container whose init is the child of one of ``controllers_elsewhere`` (this domain's
    controllers on another host sharing the kernel) is that host's."""
    import psutil

    own = _namespace("pid")
    spaces: set[str] = set()
    elsewhere: set[str] = set()
    for proc in psutil.process_iter(["pid", "ppid"]):
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if env.get("LIBVIRT_LXC_NAME") != ident.name:
            continue
        uuid = env.get("LIBVIRT_LXC_UUID", "").lower()
        if ident.uuid and uuid and uuid != ident.uuid:
            continue
        space = _namespace("pid", proc.pid)
        if space is None or space == own:
            continue
        spaces.add(space)
        if proc.info.get("ppid") in controllers_elsewhere:
            elsewhere.add(space)
    # One without a controller (it died) cannot be placed, and its container may have a
    # network namespace of its own: it counts (never 7 for something that may run here).
    spaces -= elsewhere
    if not spaces:
        return []
    return [p for p in psutil.process_iter(["pid"]) if _namespace("pid", p.pid) in spaces]


def find_emulators(ident: DomainIdentity) -> list[Any]:
    """psutil.Process objects of this domain's emulator: qemu, or for a container its
    libvirt_lxc controller and every process of the container."""
    import psutil

    if ident.virt_type != "lxc":
        found_qemu = []
        for pid in qemu_pids(ident):
            try:
                found_qemu.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        return found_qemu
    own = _namespace("net")
    found = []
    elsewhere: set[int] = set()  # this domain's emulators on another host sharing the kernel
    unsettled = []
    candidates = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        info = proc.info
        if not info.get("cmdline") and _unsettled(str(info["pid"])):
            unsettled.append(str(info["pid"]))  # mid-exec: it may become this controller
        else:
            candidates.append((proc, info.get("name") or "", info.get("cmdline") or []))
    for late, raw in _settled(unsettled):
        try:
            candidates.append((psutil.Process(int(late)), _comm(late), _argv(raw)))
        except psutil.Error:
            continue
    for proc, comm, argv in candidates:
        try:
            if not matches(ident, comm, argv):
                continue
        except (TypeError, ValueError):
            continue
        if own is not None and _namespace("net", proc.pid) not in (own, None):
            elsewhere.add(proc.pid)
            continue
        found.append(proc)
    known = {p.pid for p in found}
    found += [p for p in container_members(ident, elsewhere) if p.pid not in known]
    return found


def kill_emulators(ident: DomainIdentity, term_wait_s: float,
                   kill_wait_s: float) -> tuple[list[int], list[int]]:
    """SIGTERM the domain's emulator (for a container, everything below its controller too),
    SIGKILL what is left after ``term_wait_s`` (at once when it is 0); return (pids
    signalled, pids still running after ``kill_wait_s`` more)."""
    import psutil

    targets: list[Any] = []
    for proc in find_emulators(ident):
        if proc.pid in {t.pid for t in targets}:
            continue
        targets.append(proc)
        if ident.virt_type == "lxc":
            try:
                targets.extend(c for c in proc.children(recursive=True)
                               if c.pid not in {t.pid for t in targets})
            except psutil.Error:
                pass
    alive = targets
    steps = [(signal.SIGTERM, term_wait_s)] if term_wait_s > 0 else []
    steps.append((signal.SIGKILL, kill_wait_s))
    for sig, wait_s in steps:
        for proc in alive:
            try:
                proc.send_signal(sig)
            except psutil.Error:
                pass
        alive = _wait_stopped(alive, wait_s)
        if not alive:
            break
    return [p.pid for p in targets], [p.pid for p in alive]


def _wait_stopped(procs: list[Any], wait_s: float) -> list[Any]:
    # A killed child of libvirtd stays a zombie until libvirtd reaps it (never, while the
    # daemon is frozen): a zombie no longer runs anything, so it counts as stopped.
    end = time.monotonic() + max(0.0, wait_s)
    while True:
        alive = [p for p in procs if _is_running(p)]
        if not alive or time.monotonic() >= end:
            return alive
        time.sleep(0.05)


def _is_running(proc: Any) -> bool:
    import psutil

    try:
        # is_running() also tells a reused pid from the process we found.
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def _proc_file(pid: str, name: str) -> bytes | None:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:
        return None


def _comm(pid: str) -> str:
    """The process's name as /proc gives it ("" when gone)."""
    return (_proc_file(pid, "comm") or b"").decode("utf-8", "replace").strip()


def _argv(raw: bytes) -> list[str]:
    """A /proc/<pid>/cmdline as psutil splits it: at NULs, or at spaces when the process
    rewrote its arguments into one string."""
    data = raw.decode("utf-8", "surrogateescape")
    sep = "\0" if data.endswith("\0") else " "
    if data.endswith(sep):
        data = data[:-1]
    argv = data.split(sep)
    if sep == "\0" and len(argv) == 1 and " " in data:
        argv = data.split(" ")
    return argv


def _stat(pid: str) -> bytes | None:
    """The fields of /proc/<pid>/stat after the command name (state first); b"" when the
    process is gone, None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return b""
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2:]


def _zombie(pid: str) -> bool:
    """Whether the process has exited (a zombie or gone); one that cannot be read counts as
    running."""
    stat = _stat(pid)
    return stat is not None and stat[:1] in (b"", b"Z")


_PF_KTHREAD = 0x00200000
# How long a scan waits for a process whose command line is empty but which is neither a
# kernel thread nor a zombie: between exec's switch to the new program and the new argv being
# in place (microseconds), or between an exit's release of its memory and its zombie state.
_UNSETTLED_WAIT_S = 0.25


def _unsettled(pid: str) -> bool:
    """Whether a process with an empty command line is in the middle of an exec or an exit
    (it will show a command line, or be gone, within moments), rather than a kernel thread or
    a zombie, whose command line stays empty."""
    stat = _stat(pid)
    if stat is None:
        return True
    fields = stat.split()
    if not fields or fields[0] == b"Z":
        return False
    try:
        return not int(fields[6]) & _PF_KTHREAD
    except (IndexError, ValueError):
        return True


def qemu_pids(ident: DomainIdentity) -> list[int]:
    """The running qemu processes of this (non-container) domain in this host's network
    namespace, read from /proc without psutil, whose import alone costs a stop or a probe
    more than the whole scan (``find_emulators`` hands these to the kill). A process
    qualifies only when its command line holds the domain's uuid or its name (as qemu's
    -name writes it), so only those few are examined further."""
    name = ident.name.replace(",", ",,").encode("utf-8", "surrogateescape") \
        if ident.name else None
    uuid = ident.uuid.lower().encode() if ident.uuid else None
    own = _namespace("net")
    found = []
    unsettled = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        raw = _proc_file(pid, "cmdline")
        if raw == b"" and _unsettled(pid):
            unsettled.append(pid)  # mid-exec: it may become this domain's qemu
        elif raw and _is_qemu_of(ident, pid, raw, name, uuid, own):
            found.append(int(pid))
    for pid, raw in _settled(unsettled):
        if _is_qemu_of(ident, pid, raw, name, uuid, own):
            found.append(int(pid))
    return sorted(found)


def _settled(unsettled: list[str]) -> Iterator[tuple[str, bytes]]:
    """(pid, command line) of each of ``unsettled`` (processes seen with an empty command
    line, neither kernel thread nor zombie) once its command line is in place. A scan must
    not miss an emulator being exec'd (libvirt just started it): such a process shows an empty
    command line for a moment. Waits for that briefly; one gone or exited meanwhile is left
    out."""
    end = time.monotonic() + _UNSETTLED_WAIT_S
    while unsettled:
        time.sleep(0.002)
        waiting = []
        for pid in unsettled:
            raw = _proc_file(pid, "cmdline")
            if raw:
                yield pid, raw
            elif raw == b"" and _unsettled(pid):
                waiting.append(pid)
        unsettled = waiting if time.monotonic() < end else []


def _is_qemu_of(ident: DomainIdentity, pid: str, raw: bytes, name: bytes | None,
                uuid: bytes | None, own: str | None) -> bool:
    """Whether process ``pid``, whose command line is ``raw``, is a running qemu of this
    domain in this host's network namespace (``own``)."""
    if (name or uuid) and not ((name and name in raw) or (uuid and uuid in raw.lower())):
        return False
    try:
        if not matches(ident, _comm(pid), _argv(raw)):
            return False
    except (TypeError, ValueError):
        return False
    if own is not None and _namespace("net", pid) not in (own, None):
        return False  # the same domain of another host sharing this kernel
    return not _zombie(pid)


def running_emulator_pids(ident: DomainIdentity) -> list[int]:
    if ident.virt_type != "lxc":
        return qemu_pids(ident)
    return [p.pid for p in find_emulators(ident) if _is_running(p)]


def wait_gone(ident: DomainIdentity, wait_s: float) -> list[int]:
    end = time.monotonic() + wait_s
    while True:
        pids = running_emulator_pids(ident)
        if not pids or time.monotonic() >= end:
            return pids
        time.sleep(0.1)
