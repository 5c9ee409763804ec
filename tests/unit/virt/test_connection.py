"""Bounded libvirt calls, and how a call that outlives its bound is judged."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyvirtualdomain import errors
from pyvirtualdomain.deadline import Deadline
from pyvirtualdomain.virt.connection import (
    Hypervisor,
    PendingCall,
    bounded,
    import_libvirt,
    open_hypervisor,
)


def test_bounded_times_out_without_waiting_for_the_call():
    libvirt = import_libvirt()
    release = threading.Event()
    t0 = time.monotonic()
    with pytest.raises(errors.CallTimedOut):
        bounded(lambda: release.wait(10), 0.2, "hang", libvirt)
    assert time.monotonic() - t0 < 1.0
    release.set()


def test_a_pending_call_runs_in_the_background_and_its_error_is_kept():
    """What migrate_to relies on: the blocking migration call runs while the caller watches
    the job, and the fact it failed with is kept."""
    libvirt = import_libvirt()
    release = threading.Event()

    def call() -> None:
        release.wait(5)
        raise errors.OperationFailed("migration job: unexpectedly failed")

    run = PendingCall(call, "migrate", libvirt)
    assert not run.wait(0.05)  # still running: the caller can watch it
    assert not run.done()
    release.set()
    assert run.wait(5)
    assert isinstance(run.error, errors.OperationFailed)
    assert isinstance(run.outcome(), errors.OperationFailed)


def test_a_pending_call_that_succeeds_leaves_no_error_and_keeps_its_value():
    run = PendingCall(lambda: 42, "answer", import_libvirt())
    assert run.wait(5) and run.error is None
    assert run.outcome() is None and run.result() == 42


def test_a_zero_bound_does_not_call_a_healthy_daemon_hung():
    libvirt = import_libvirt()
    conn = libvirt.open("test:///default")
    try:
        hv = Hypervisor("test:///default", conn, libvirt)
        assert hv.call(conn.getLibVersion, 0.0, "version") > 0
        assert not hv.hung
    finally:
        conn.close()


def test_a_slow_call_on_a_live_daemon_is_slow_not_hung():
    """Issue 13 #1: judged by a liveness call of the daemon's own, not by the call waited on
    (a shutdown through the guest agent returns only when the guest is off)."""
    libvirt = import_libvirt()
    conn = libvirt.open("test:///default")
    release = threading.Event()
    try:
        hv = Hypervisor("test:///default", conn, libvirt, Deadline(30))
        with pytest.raises(errors.CallTimedOut, match="libvirtd answers"):
            hv.call(lambda: release.wait(10), 0.5, "shutdown")
        assert not hv.hung
        assert hv.call(conn.getLibVersion, 1.0, "version") > 0  # still in use
    finally:
        release.set()
        conn.close()


@pytest.fixture
def silent_daemon(tmp_path: Path) -> Iterator[str]:
    """A socket that accepts connections and never answers: libvirtd frozen (SIGSTOP) looks
    like this to a client (the real one is frozen in tests/integration)."""
    path = tmp_path / "libvirt-sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(16)
    yield f"test+unix:///default?socket={path}"
    server.close()


def test_a_call_on_a_silent_daemon_is_hung(silent_daemon):
    libvirt = import_libvirt()
    release = threading.Event()
    conn = libvirt.open("test:///default")
    try:
        # the call waited on is on a connection that works; the daemon of its URI answers
        # nothing: the judgement comes from the liveness call alone
        hv = Hypervisor(silent_daemon, conn, libvirt, Deadline(30))
        t0 = time.monotonic()
        with pytest.raises(errors.HypervisorTimeout, match="libvirtd is hung"):
            hv.call(lambda: release.wait(10), 0.5, "state")
        assert time.monotonic() - t0 < 0.5 + 2.0 + 1.0
        assert hv.hung
        with pytest.raises(errors.HypervisorTimeout):
            hv.call(conn.getLibVersion, 1.0, "version")  # nothing more on it
    finally:
        release.set()
        conn.close()


def test_connecting_to_a_silent_daemon_is_hung(silent_daemon):
    with pytest.raises(errors.HypervisorTimeout):
        open_hypervisor(silent_daemon, Deadline(1.0), attempt_s=0.5)
