"""Paths and small helpers shared by the harness modules (no pytest here)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
AGENTS_DIR = REPO_ROOT / "agents"
# Built guest artefacts and cached decisions (gitignored: /build/).
DEFAULT_CACHE_DIR = REPO_ROOT / "build" / "guest"
# Pidfiles and logs of the daemons the harness starts.
DEFAULT_RUN_DIR = Path(os.environ.get("PYVD_TEST_RUN_DIR", "/run/pyvd-test"))
DEFAULT_URI = "qemu:///system"
# What Pacemaker's executor gives an agent as PATH.
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SUBREAPER = Path(__file__).resolve().with_name("subreaper.py")


class HarnessError(RuntimeError):
    """The test environment could not be set up or torn down as asked."""


class CallTimeout(HarnessError):
    """A bounded call did not return in time (e.g. libvirtd is frozen)."""


def reaped(argv: list[str], pidfile: Path) -> list[str]:
    """``argv`` run under tests/harness/subreaper.py: the daemons it starts, and what they
    daemonize (qemu, libvirt_lxc), are collected the moment they end, as a node's init
    collects them (this machine's PID 1 takes ~1.5 s, which libvirt waits for at every
    destroy). The reaper's pid goes to ``pidfile``."""
    return [sys.executable, str(SUBREAPER), "--pidfile", str(pidfile), "--", *argv]


def read_reaper(pidfile: Path) -> int | None:
    """The pid a subreaper wrote, while that reaper runs."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    argv = read_cmdline(pid)
    return pid if pid_alive(pid) and any(a.endswith("subreaper.py") for a in argv) else None


def bounded(fn: Callable[[], T], timeout_s: float, what: str) -> T:
    """Run ``fn`` in a daemon thread and wait at most ``timeout_s`` for it.

    libvirt-python calls block until libvirtd answers; a frozen daemon never does. An
    abandoned call keeps its thread, which is a daemon thread and so never blocks exit."""
    box: dict[str, object] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"bounded:{what}", daemon=True).start()
    if not done.wait(timeout_s):
        raise CallTimeout(f"{what}: no answer within {timeout_s:.1f}s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` has passed; its last answer."""
    end = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(interval_s)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # state is the field after the parenthesised command name (which may contain spaces)
    state = stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def terminate(pid: int, term_wait_s: float, kill_wait_s: float = 10.0) -> bool:
    """Stop one process of ours by pid: SIGCONT (it may be frozen on purpose), SIGTERM and
    up to ``term_wait_s`` to go, then SIGKILL. Whether it is gone."""
    for sig, wait_s in ((signal.SIGCONT, 0.0), (signal.SIGTERM, term_wait_s),
                        (signal.SIGKILL, kill_wait_s)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        if wait_s and wait_until(lambda: not pid_alive(pid), wait_s, 0.05):
            return True
    return not pid_alive(pid)


def kill_all(pids: list[int], timeout_s: float) -> None:
    """SIGKILL every pid and wait up to ``timeout_s`` until all are gone."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout_s, 0.05)


def read_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def read_comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def children(pid: int) -> list[int]:
    """A process's children (none if it is gone)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...)."""
    out: list[int] = []
    todo = children(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


# Locks this process holds: path -> [descriptor, depth]. flock() on a second descriptor of
# the same file would wait for this very process, so nested users share the first one.
_HELD_LOCKS: dict[str, list[int]] = {}


class HostLock:
    """One harness user (test session, demo, benchmark) at a time on this machine.

    They all drive the one system libvirtd and stop, freeze and restart it: a second user
    would see its daemon vanish. An exclusive flock, released by the kernel if the holder
    dies, makes the second one wait (bounded) instead. Re-entrant within a process (a test
    session's fixtures and a module's own harness may both take it)."""

    def __init__(self, path: Path = Path("/run/pyvd-test.lock"), timeout_s: float = 3600.0):
        self.path = path
        self.timeout_s = timeout_s
        self._held = False

    def acquire(self) -> None:
        import fcntl

        if self._held:
            return
        key = str(self.path)
        shared = _HELD_LOCKS.get(key)
        if shared is not None:
            shared[1] += 1
            self._held = True
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        end = time.monotonic() + self.timeout_s
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= end:
                    os.close(fd)
                    raise HarnessError(f"another harness user holds {self.path} for over "
                                       f"{self.timeout_s:.0f}s") from None
                if not announced:
                    print(f"waiting for {self.path} (another test run, demo or benchmark)",
                          flush=True)
                    announced = True
                time.sleep(0.5)
        _HELD_LOCKS[key] = [fd, 1]
        self._held = True

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        key = str(self.path)
        shared = _HELD_LOCKS[key]
        shared[1] -= 1
        if shared[1] == 0:
            del _HELD_LOCKS[key]
            os.close(shared[0])

    def __enter__(self) -> HostLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def bench_module(name: str) -> Any:
    """bench/<name>.py imported as a module (the CI cases of the benchmarks run their code)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec and spec.loader, path
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod
