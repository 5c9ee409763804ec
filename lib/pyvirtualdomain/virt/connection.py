"""Opening the hypervisor, and running every libvirt call with a bound on its duration.

libvirt-python calls block until libvirtd answers; a frozen daemon never answers. Each call
therefore runs in a worker thread and the caller waits at most the bound it was given. After a
call has been abandoned the connection is treated as dead: nothing else is sent on it.
The workers are bare ``_thread`` threads (a lock and a thread are all this needs, and the
``threading`` module costs every monitor an import); like daemon threads, nothing waits for
them when the agent exits.
"""

from __future__ import annotations

import _thread
import time
from typing import Any, Callable, TypeVar

from ..deadline import Deadline
from ..errors import HypervisorTimeout, HypervisorUnavailable, LibvirtFact, classify_libvirt_error

T = TypeVar("T")


def import_libvirt() -> Any:
    import libvirt

    # libvirt's default handler prints every error to stderr; errors reach us as exceptions.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


MIN_CALL_S = 0.5


def bounded(fn: Callable[[], T], timeout_s: float, what: str, libvirt: Any) -> T:
    """Run ``fn`` for at most ``timeout_s``; map libvirt errors to facts."""
    box: dict[str, Any] = {}
    done = _thread.allocate_lock()
    done.acquire()

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box["error"] = exc
        finally:
            done.release()

    _thread.start_new_thread(run, ())
    if not done.acquire(True, max(0.0, timeout_s)):
        raise HypervisorTimeout(f"{what}: libvirt did not answer within {timeout_s:.1f}s")
    if "error" in box:
        exc = box["error"]
        if isinstance(exc, libvirt.libvirtError):
            raise classify_libvirt_error(exc, libvirt) from None
        raise exc
    return box["value"]  # type: ignore[no-any-return]


class Hypervisor:
    """One open libvirt connection; every call bounded in time.

    ``virconnect`` (the virConnect) and ``call`` are for the virt/ modules only: everything
    above them asks for facts and operations by name (a test checks it)."""

    def __init__(self, uri: str, conn: Any, libvirt: Any) -> None:
        self.uri = uri
        self.virconnect = conn
        self.libvirt = libvirt
        self.hung = False

    def call(self, fn: Callable[[], T], timeout_s: float, what: str) -> T:
        if self.hung:
            raise HypervisorTimeout(f"{what}: libvirt stopped answering earlier in this action")
        try:
            # A bound near zero (a phase of the action about to end) would call a healthy
            # daemon hung and send the action down its last-resort path: every call gets at
            # least MIN_CALL_S, which the action's margin absorbs.
            return bounded(fn, max(MIN_CALL_S, timeout_s), what, self.libvirt)
        except HypervisorTimeout:
            self.hung = True
            raise

    def flags(self, *names: str) -> int:
        """libvirt's flag constants, by name, or'ed together."""
        value = 0
        for name in names:
            value |= int(getattr(self.libvirt, name))
        return value

    def restore_state(self, path: str, timeout_s: float) -> None:
        """Start a domain from a RAM state file written by Domain.save_state."""
        conn = self.virconnect
        self.call(lambda: conn.restore(path), timeout_s, "restore state")

    def pool_is_active(self, name: str, timeout_s: float) -> bool:
        conn = self.virconnect
        return bool(self.call(lambda: conn.storagePoolLookupByName(name).isActive(), timeout_s,
                              f"state of storage pool {name}"))

    def start_pool(self, name: str, timeout_s: float) -> None:
        conn = self.virconnect
        self.call(lambda: conn.storagePoolLookupByName(name).create(0), timeout_s,
                  f"start storage pool {name}")

    def refresh_pool(self, name: str, timeout_s: float) -> None:
        conn = self.virconnect
        self.call(lambda: conn.storagePoolLookupByName(name).refresh(0), timeout_s,
                  f"refresh storage pool {name}")

    def network_is_active(self, name: str, timeout_s: float) -> bool:
        conn = self.virconnect
        return bool(self.call(lambda: conn.networkLookupByName(name).isActive(), timeout_s,
                              f"state of network {name}"))

    def start_network(self, name: str, timeout_s: float) -> None:
        conn = self.virconnect
        self.call(lambda: conn.networkLookupByName(name).create(), timeout_s,
                  f"start network {name}")

    def close(self) -> None:
        # Closing sends a message to the daemon; never on one that stopped answering.
        if not self.hung:
            try:
                bounded(self.virconnect.close, 1.0, "close", self.libvirt)
            except LibvirtFact:
                self.hung = True


def open_hypervisor(uri: str, deadline: Deadline, retry_for_s: float = 0.0,
                    attempt_s: float = 5.0) -> Hypervisor:
    """Connect, retrying while libvirtd is unreachable for up to ``retry_for_s`` seconds
    (it may be restarting). A connection that hangs is not retried."""
    libvirt = import_libvirt()
    retry_end = deadline.now() + retry_for_s
    pause = 0.1
    while True:
        try:
            conn = bounded(lambda: libvirt.open(uri), deadline.bound(attempt_s),
                           f"connect {uri}", libvirt)
            return Hypervisor(uri, conn, libvirt)
        except HypervisorUnavailable:
            if deadline.now() + pause >= min(retry_end, deadline.end):
                raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
