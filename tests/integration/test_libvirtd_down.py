"""The agent when libvirtd is stopped or frozen (SIGSTOP): probes must not call an error
what they cannot know, and stop must still make sure the guest is gone. A stopped libvirtd
(no socket, refused) proves that nothing starts the guest behind our back; a frozen one does
not, so stop kills the guest there but cannot say 0."""

from __future__ import annotations

import pytest

from tests.harness import INIT_MARKER, GuestResource, Libvirtd, wait_for_state
from tests.harness.common import pid_alive, wait_until

from .conftest import MakeGuest

pytestmark = pytest.mark.integration

START_MS = 30000
MONITOR_MS = 20000
BOOT_S = 60.0
# How long a probe may take, agent process included, when libvirtd is down.
PROBE_BOUND_S = 1.0


def test_probe_and_monitor_with_libvirtd_stopped(libvirtd: Libvirtd,
                                                 make_guest: MakeGuest) -> None:
    running = make_guest("graceful")
    stopped = make_guest("graceful")
    r = running.run("start", timeout_ms=START_MS)
    assert r.rc == 0, r
    assert running.wait_console(INIT_MARKER, BOOT_S), running.console()
    [qemu_pid] = running.qemu_pids()

    libvirtd.stop(keep_virtlogd=True)
    try:
        assert not libvirtd.is_running
        probe_running = running.run("monitor", timeout_ms=MONITOR_MS, interval_ms=0)
        assert probe_running.rc == 0, probe_running
        assert probe_running.elapsed_s < PROBE_BOUND_S, probe_running

        probe_stopped = stopped.run("monitor", timeout_ms=MONITOR_MS, interval_ms=0)
        assert probe_stopped.rc == 7, probe_stopped
        assert probe_stopped.reason, probe_stopped
        assert probe_stopped.elapsed_s < PROBE_BOUND_S, probe_stopped

        recurring = running.run("monitor", timeout_ms=MONITOR_MS, interval_ms=10000)
        assert recurring.rc == 0, recurring
        assert pid_alive(qemu_pid), "the monitor must not touch the guest"
    finally:
        libvirtd.start()

    # libvirtd reconnects to the qemu it left running.
    assert running.state() == "running"
    assert running.qemu_pids() == [qemu_pid]
    assert stopped.state() is None
    r = running.run("stop", timeout_ms=START_MS, params={"force_stop": "true"})
    assert r.rc == 0, r
    assert running.state() is None
    assert running.qemu_pids() == []


def test_stop_with_libvirtd_frozen(libvirtd: Libvirtd, guest: GuestResource) -> None:
    r = guest.run("start", timeout_ms=START_MS)
    assert r.rc == 0, r
    assert guest.wait_console(INIT_MARKER, BOOT_S), guest.console()
    [qemu_pid] = guest.qemu_pids()

    libvirtd.freeze()
    try:
        # A process of the domain runs but libvirt cannot be asked: running (DESIGN.md).
        probe = guest.run("monitor", timeout_ms=MONITOR_MS, interval_ms=0)
        assert probe.rc == 0, probe
        assert probe.elapsed_s < MONITOR_MS / 1000, probe

        # A frozen libvirtd is no proof (it may finish something it was doing once thawed):
        # stop kills the guest's qemu (less harm while Pacemaker fences) but says 1.
        stop = guest.run("stop", timeout_ms=20000)
        assert stop.rc == 1, stop
        assert stop.reason.startswith(f"cannot confirm that {guest.name} stopped"), stop
        assert stop.elapsed_s < 20.0, stop
        assert not pid_alive(qemu_pid), f"qemu {qemu_pid} still runs after stop"
    finally:
        libvirtd.thaw()

    # Thawed, libvirtd sees its qemu gone and drops the (transient) domain.
    assert wait_until(lambda: guest.state() != "running", 15.0, 0.2), guest.state()
    assert wait_for_state(guest.name, None, 15.0), guest.state()
    print(f"frozen libvirtd: probe {probe.elapsed_s:.2f}s, stop {stop.elapsed_s:.2f}s")


def test_stop_with_libvirtd_stopped(libvirtd: Libvirtd, guest: GuestResource) -> None:
    r = guest.run("start", timeout_ms=START_MS)
    assert r.rc == 0, r
    assert guest.wait_console(INIT_MARKER, BOOT_S), guest.console()
    [qemu_pid] = guest.qemu_pids()

    libvirtd.stop(keep_virtlogd=True)
    try:
        stop = guest.run("stop", timeout_ms=20000)
        assert stop.rc == 0, stop
        assert stop.elapsed_s < 20.0, stop
        assert not pid_alive(qemu_pid), f"qemu {qemu_pid} still runs after stop returned 0"
        probe = guest.run("monitor", timeout_ms=MONITOR_MS, interval_ms=0)
        assert probe.rc == 7, probe
    finally:
        libvirtd.start()
    assert wait_for_state(guest.name, None, 15.0), guest.state()
