"""Opening the hypervisor, and running every libvirt call with a bound on its duration.

libvirt-python calls block until libvirtd answers; a frozen daemon never answers. Each call
therefore runs in a worker thread and the caller waits at most the bound it was given.

A call that outlives its bound is not proof of a hung daemon: a shutdown through the guest
agent returns only once the guest is off, and any call on a domain waits for the domain's job
lock while a start or a migration holds it. The daemon is judged by a cheap call of its own
(its version) on a connection of its own: if that answers, the call is merely slow
(CallTimedOut) and the connection stays in use; if not, libvirtd is hung (HypervisorTimeout)
and nothing more is sent on this connection.
The workers are bare ``_thread`` threads (a lock and a thread are all this needs, and the
``threading`` module costs every monitor an import); like daemon threads, nothing waits for
them when the agent exits.
"""

from __future__ import annotations

import _thread
import time
from typing import Any, Callable, TypeVar

from ..deadline import Deadline
from ..errors import (
    CallTimedOut,
    HypervisorTimeout,
    HypervisorUnavailable,
    LibvirtFact,
    OperationFailed,
    UnsupportedOperation,
    classify_libvirt_error,
)

T = TypeVar("T")


def import_libvirt() -> Any:
    import libvirt

    # libvirt's default handler prints every error to stderr; errors reach us as exceptions.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


MIN_CALL_S = 0.5
# The liveness call: a healthy daemon answers it in milliseconds, whatever its domains do.
LIVENESS_BOUND_S = 2.0


class PendingCall:
    """A libvirt call running in its own thread. ``bounded`` waits for it; a call that may
    legitimately take long (a shutdown through the guest agent returns once the guest is
    off) is left to run while the caller polls other facts and reads the outcome when it is
    done."""

    def __init__(self, fn: Callable[[], Any], what: str, libvirt: Any) -> None:
        self.what = what
        self._libvirt = libvirt
        self._value: Any = None
        self._error: BaseException | None = None
        self._done = _thread.allocate_lock()
        self._done.acquire()

        def run() -> None:
            try:
                self._value = fn()
            except BaseException as exc:  # noqa: BLE001 - handed over by result()
                self._error = exc
            finally:
                self._done.release()

        _thread.start_new_thread(run, ())

    def done(self) -> bool:
        return self._done.locked() is False

    def wait(self, timeout_s: float) -> bool:
        """Whether the call returned within ``timeout_s``."""
        if self.done():
            return True
        if self._done.acquire(True, max(0.0, timeout_s)):
            self._done.release()
            return True
        return False

    @property
    def error(self) -> BaseException | None:
        """What the call raised (None while it runs, or when it succeeded)."""
        return self._error

    def result(self) -> Any:
        """What the call returned; a libvirt error is raised as a fact."""
        assert self.done(), "result of a call still running"
        exc = self._error
        if exc is None:
            return self._value
        if isinstance(exc, self._libvirt.libvirtError):
            raise classify_libvirt_error(exc, self._libvirt) from None
        raise exc

    def outcome(self) -> LibvirtFact | None:
        """None when the call succeeded, else what it failed with (as a fact)."""
        try:
            self.result()
        except LibvirtFact as fact:
            return fact
        return None


def bounded(fn: Callable[[], T], timeout_s: float, what: str, libvirt: Any) -> T:
    """Run ``fn`` for at most ``timeout_s``; map libvirt errors to facts. CallTimedOut when
    it does not return in time (the call goes on in its thread, unjudged)."""
    call = PendingCall(fn, what, libvirt)
    if not call.wait(timeout_s):
        raise CallTimedOut(f"{what}: libvirt did not answer within {timeout_s:.1f}s")
    return call.result()  # type: ignore[no-any-return]


class Hypervisor:
    """One open libvirt connection; every call bounded in time.

    ``virconnect`` (the virConnect) and ``call`` are for the virt/ modules only: everything
    above them asks for facts and operations by name (a test checks it)."""

    def __init__(self, uri: str, conn: Any, libvirt: Any,
                 deadline: Deadline | None = None) -> None:
        self.uri = uri
        self.virconnect = conn
        self.libvirt = libvirt
        self.deadline = deadline
        self.hung = False

    def call(self, fn: Callable[[], T], timeout_s: float, what: str) -> T:
        """``fn`` (a libvirt call on this connection) bounded by ``timeout_s``. When it does
        not return in time: CallTimedOut if libvirtd answers a liveness call, else
        HypervisorTimeout (and the connection is not used again)."""
        if self.hung:
            raise HypervisorTimeout(f"{what}: libvirt stopped answering earlier in this action")
        try:
            # A bound near zero (a phase of the action about to end) would judge a healthy
            # daemon by nothing: every call gets at least MIN_CALL_S, which the action's
            # margin absorbs.
            return bounded(fn, max(MIN_CALL_S, timeout_s), what, self.libvirt)
        except CallTimedOut as slow:
            if self.alive():
                raise CallTimedOut(f"{slow.message}, but libvirtd answers: the call is "
                                   "slow, not the daemon") from None
            self.hung = True
            raise HypervisorTimeout(f"{slow.message}, nor a liveness call on a connection "
                                    "of its own: libvirtd is hung") from None

    def alive(self) -> bool:
        """Whether libvirtd answers a cheap call of its own (its version) on a new connection,
        within LIVENESS_BOUND_S (and the action's deadline)."""
        bound = LIVENESS_BOUND_S if self.deadline is None else \
            max(MIN_CALL_S, self.deadline.bound(LIVENESS_BOUND_S))
        libvirt, uri = self.libvirt, self.uri

        def ask() -> None:
            conn = libvirt.open(uri)
            try:
                conn.getLibVersion()
            finally:
                conn.close()

        try:
            bounded(ask, bound, f"liveness of {uri}", libvirt)
        except LibvirtFact:
            return False
        return True

    def start_call(self, fn: Callable[[], Any], what: str) -> PendingCall:
        """Run ``fn`` (a libvirt call on this connection) in the background."""
        if self.hung:
            raise HypervisorTimeout(f"{what}: libvirt stopped answering earlier in this action")
        return PendingCall(fn, what, self.libvirt)

    def flags(self, *names: str) -> int:
        """libvirt's flag constants, by name, or'ed together."""
        value = 0
        for name in names:
            value |= int(getattr(self.libvirt, name))
        return value

    def hypervisor_version(self, timeout_s: float) -> int | None:
        """The hypervisor's version (qemu's for the qemu driver) as libvirt numbers it:
        major * 1,000,000 + minor * 1,000 + micro; None when the driver does not say."""
        conn = self.virconnect
        try:
            return int(self.call(conn.getVersion, timeout_s, "hypervisor version")) or None
        except (UnsupportedOperation, OperationFailed):
            return None

    def restore_state(self, path: str, timeout_s: float) -> None:
        """Start a domain from a RAM state file written by Domain.save_state."""
        conn = self.virconnect
        self.call(lambda: conn.restore(path), timeout_s, "restore state")

    def save_image_xml(self, path: str, timeout_s: float) -> str:
        """The domain XML inside a RAM state file written by Domain.save_state."""
        conn = self.virconnect
        return str(self.call(lambda: conn.saveImageGetXMLDesc(path, 0), timeout_s,
                             "read saved state"))

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
            conn = bounded(lambda: libvirt.open(uri), max(MIN_CALL_S, deadline.bound(attempt_s)),
                           f"connect {uri}", libvirt)
            return Hypervisor(uri, conn, libvirt, deadline)
        except CallTimedOut as slow:
            # A daemon that does not even accept a connection is hung.
            raise HypervisorTimeout(f"{slow.message}: libvirtd is hung") from None
        except HypervisorUnavailable:
            if deadline.now() + pause >= min(retry_end, deadline.end):
                raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
