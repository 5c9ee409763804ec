"""Reading domains back from libvirt, and removing them whatever state they are in.

Every libvirt call is bounded in time (a frozen libvirtd never answers) and uses a fresh
connection (libvirtd may have been restarted since the last call)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from .common import (
    DEFAULT_URI,
    CallTimeout,
    all_pids,
    bounded,
    kill_all,
    pid_alive,
    read_cmdline,
    wait_until,
)

T = TypeVar("T")

# virsh's words for virDomainState codes.
STATE_NAMES = {0: "no state", 1: "running", 2: "idle", 3: "paused", 4: "in shutdown",
               5: "shut off", 6: "crashed", 7: "pmsuspended"}


def import_libvirt() -> Any:
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


def with_connection(fn: Callable[[Any], T], uri: str = DEFAULT_URI,
                    timeout_s: float = 10.0, what: str = "libvirt call") -> T:
    """``fn(conn)`` on a fresh connection to ``uri``, all within ``timeout_s``."""
    libvirt = import_libvirt()

    def run() -> T:
        conn = libvirt.open(uri)
        try:
            return fn(conn)
        finally:
            conn.close()

    return bounded(run, timeout_s, what)


@dataclass(frozen=True)
class DomainFacts:
    name: str
    state: str  # virsh's word: "running", "shut off", ...
    id: int  # -1 when not running
    uuid: str
    persistent: bool
    autostart: bool


def _lookup(conn: Any, name: str) -> Any | None:
    libvirt = import_libvirt()
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def domain_facts(name: str, uri: str = DEFAULT_URI, timeout_s: float = 10.0) -> DomainFacts | None:
    """What libvirt says about the domain called ``name``, or None when it does not know it."""
    libvirt = import_libvirt()

    def facts(conn: Any) -> DomainFacts | None:
        dom = _lookup(conn, name)
        if dom is None:
            return None
        try:
            code = dom.state(0)[0]
            return DomainFacts(name=name, state=STATE_NAMES.get(code, f"state {code}"),
                               id=int(dom.ID()), uuid=str(dom.UUIDString()),
                               persistent=bool(dom.isPersistent()),
                               autostart=bool(dom.autostart()))
        except libvirt.libvirtError as exc:
            # The domain went away between the lookup and the query.
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    return with_connection(facts, uri, timeout_s, f"facts of domain {name}")


def domain_state(name: str, uri: str = DEFAULT_URI, timeout_s: float = 10.0) -> str | None:
    """"running", "shut off", ... as virsh domstate says, or None when the domain is absent."""
    facts = domain_facts(name, uri, timeout_s)
    return None if facts is None else facts.state


# virDomainPausedReason codes, by the word for them the tests use.
PAUSED_REASONS = {0: "unknown", 1: "user", 2: "migration", 3: "save", 4: "dump", 5: "ioerror",
                  6: "watchdog", 7: "from snapshot", 8: "shutting down", 9: "snapshot",
                  10: "crashed", 11: "starting up", 12: "postcopy", 13: "postcopy failed"}


def domain_state_reason(name: str, uri: str = DEFAULT_URI,
                        timeout_s: float = 10.0) -> tuple[str, int] | None:
    """(state word, libvirt's reason code) as ``virDomainGetState`` says, or None when the
    domain is absent. For a paused domain PAUSED_REASONS names the code."""
    libvirt = import_libvirt()

    def read(conn: Any) -> tuple[str, int] | None:
        dom = _lookup(conn, name)
        if dom is None:
            return None
        try:
            code, reason = dom.state(0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise
        return STATE_NAMES.get(code, f"state {code}"), int(reason)

    return with_connection(read, uri, timeout_s, f"state of domain {name}")


def paused_reason(name: str, uri: str = DEFAULT_URI, timeout_s: float = 10.0) -> str | None:
    """"ioerror", "watchdog", "user", ... for a paused domain; None when it is not paused."""
    facts = domain_state_reason(name, uri, timeout_s)
    if facts is None or facts[0] != "paused":
        return None
    return PAUSED_REASONS.get(facts[1], f"reason {facts[1]}")


def wait_for_state(name: str, wanted: str | None, timeout_s: float,
                   uri: str = DEFAULT_URI) -> bool:
    """Poll until ``domain_state(name)`` is ``wanted`` (None: absent)."""
    return wait_until(lambda: domain_state(name, uri) == wanted, timeout_s, 0.2)


def qemu_pids(name: str) -> list[int]:
    """Live qemu processes whose command line carries ``-name guest=<name>,...``."""
    escaped = name.replace(",", ",,")
    found: list[int] = []
    for pid in all_pids():
        argv = read_cmdline(pid)
        if not argv or "qemu" not in os.path.basename(argv[0]):
            continue
        for flag, value in zip(argv, argv[1:], strict=False):
            if flag == "-name" and (value == f"guest={escaped}"
                                    or value.startswith(f"guest={escaped},")):
                if pid_alive(pid):
                    found.append(pid)
                break
    return found


def kill_qemu(name: str, timeout_s: float = 10.0) -> list[int]:
    """SIGKILL every qemu of the domain ``name``; the pids that were killed."""
    pids = qemu_pids(name)
    kill_all(pids, timeout_s)
    return pids


def create_transient(xml: str, uri: str = DEFAULT_URI, timeout_s: float = 30.0) -> str:
    """Start a transient domain from ``xml``; its name."""
    return with_connection(lambda conn: str(conn.createXML(xml, 0).name()), uri, timeout_s,
                           "create domain")


def define_persistent(xml: str, autostart: bool = False, uri: str = DEFAULT_URI,
                      timeout_s: float = 15.0) -> str:
    """Define (not start) a persistent domain, as ``virsh define`` does; its name."""

    def define(conn: Any) -> str:
        dom = conn.defineXML(xml)
        if autostart:
            dom.setAutostart(1)
        return str(dom.name())

    return with_connection(define, uri, timeout_s, "define domain")


def remove_domain(name: str, uri: str = DEFAULT_URI, timeout_s: float = 20.0) -> list[str]:
    """Destroy the domain ``name`` if it runs and undefine it if it is persistent; as the
    last resort (libvirt unreachable or failing) SIGKILL its qemu. Never raises for a
    domain that is already gone. Returns what was done, for the test log."""
    libvirt = import_libvirt()
    done: list[str] = []

    def remove(conn: Any) -> None:
        dom = _lookup(conn, name)
        if dom is None:
            return
        try:
            if dom.isActive():
                dom.destroy()
                done.append("destroyed")
            if dom.isPersistent():
                flags = getattr(libvirt, "VIR_DOMAIN_UNDEFINE_NVRAM", 0)
                try:
                    dom.undefineFlags(flags)
                except libvirt.libvirtError:
                    dom.undefine()
                done.append("undefined")
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN,
                                            libvirt.VIR_ERR_OPERATION_INVALID):
                raise

    try:
        with_connection(remove, uri, timeout_s, f"remove domain {name}")
    except (CallTimeout, libvirt.libvirtError) as exc:
        done.append(f"libvirt failed: {exc}")
    killed = kill_qemu(name)
    if killed:
        done.append(f"killed qemu pid {', '.join(map(str, killed))}")
    return done
