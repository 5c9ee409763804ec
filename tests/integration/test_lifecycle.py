"""start / monitor / stop of real qemu guests through the agent, as Pacemaker runs it.

Every test checks the exit code and what libvirt says about the domain afterwards."""

from __future__ import annotations

import pytest

from tests.harness import (
    ACPID_MARKER,
    INIT_MARKER,
    POWERBUTTON_MARKER,
    SHUTDOWN_MARKER,
    GuestResource,
)

pytestmark = pytest.mark.integration

START_MS = 30000
STOP_MS = 30000
MONITOR_MS = 20000
RECURRING_MS = 10000
# TCG boot to acpid is ~4-5 s here; allow for a busy shared host.
BOOT_S = 60.0


def start_running(guest: GuestResource, ready_marker: str | None = None) -> None:
    r = guest.run("start", timeout_ms=START_MS)
    assert r.rc == 0, r
    assert guest.state() == "running"
    if ready_marker is not None:
        assert guest.wait_console(ready_marker, BOOT_S), guest.console()


def test_start_is_transient_idempotent_and_monitored(guest: GuestResource) -> None:
    r = guest.run("start", timeout_ms=START_MS)
    assert r.rc == 0, r
    assert r.reason is None
    facts = guest.facts()
    assert facts is not None and facts.state == "running"
    assert facts.persistent is False, "the agent must run the guest transient"
    assert facts.autostart is False

    again = guest.run("start", timeout_ms=START_MS)
    assert again.rc == 0, again
    facts2 = guest.facts()
    assert facts2 is not None and facts2.state == "running"
    assert facts2.id == facts.id, "a second start must not restart the domain"

    recurring = guest.run("monitor", timeout_ms=MONITOR_MS, interval_ms=RECURRING_MS)
    assert recurring.rc == 0, recurring
    probe = guest.run("monitor", timeout_ms=MONITOR_MS, interval_ms=0)
    assert probe.rc == 0, probe
    probe_unset = guest.run("monitor", timeout_ms=MONITOR_MS)
    assert probe_unset.rc == 0, probe_unset
    status = guest.run("status", timeout_ms=MONITOR_MS)
    assert status.rc == 0, status
    assert guest.state() == "running"


def test_graceful_stop(guest: GuestResource) -> None:
    start_running(guest, ACPID_MARKER)
    r = guest.run("stop", timeout_ms=STOP_MS)
    assert r.rc == 0, r
    assert r.elapsed_s < STOP_MS / 1000
    assert guest.state() is None
    assert guest.qemu_pids() == []
    console = guest.console()
    assert POWERBUTTON_MARKER in console, console
    assert SHUTDOWN_MARKER in console, console


def test_stop_right_after_start_resends_the_request(guest: GuestResource) -> None:
    # The first ACPI request arrives before the guest's acpid runs and is lost.
    start_running(guest)
    r = guest.run("stop", timeout_ms=STOP_MS)
    assert r.rc == 0, r
    assert r.elapsed_s < STOP_MS / 1000
    assert guest.state() is None
    assert guest.qemu_pids() == []
    assert SHUTDOWN_MARKER in guest.console(), (
        "the guest was destroyed, not shut down: the request was not re-sent\n"
        + guest.console())


def test_stop_escalates_when_the_guest_ignores_shutdown(ignoring_guest: GuestResource) -> None:
    guest = ignoring_guest
    start_running(guest, INIT_MARKER)
    r = guest.run("stop", timeout_ms=20000)
    assert r.rc == 0, r
    assert r.elapsed_s < 20.0, r
    assert guest.state() is None
    assert guest.qemu_pids() == []
    assert SHUTDOWN_MARKER not in guest.console()


def test_force_stop_destroys_at_once(guest: GuestResource) -> None:
    start_running(guest, ACPID_MARKER)
    r = guest.run("stop", timeout_ms=STOP_MS, params={"force_stop": "true"})
    assert r.rc == 0, r
    assert r.elapsed_s < 5.0, r
    assert guest.state() is None
    assert guest.qemu_pids() == []
    console = guest.console()
    assert SHUTDOWN_MARKER not in console, console
    assert POWERBUTTON_MARKER not in console, console


def test_shutdown_mode_acpi(guest: GuestResource) -> None:
    start_running(guest, ACPID_MARKER)
    r = guest.run("stop", timeout_ms=STOP_MS, params={"shutdown_mode": "acpi"})
    assert r.rc == 0, r
    assert guest.state() is None
    console = guest.console()
    assert POWERBUTTON_MARKER in console, console
    assert SHUTDOWN_MARKER in console, console


def test_shutdown_mode_agent_without_guest_agent_falls_back_to_acpi(
        guest: GuestResource) -> None:
    """Issue 21 #5: with shutdown_mode=agent and no guest agent the guest was destroyed at once;
    VirtualDomain never applied shutdown_mode, so a switched resource was shut down by ACPI.
    Now the agent mode is dropped (with a warning) and the hypervisor's default method (the
    power button) shuts the guest down cleanly."""
    start_running(guest, ACPID_MARKER)
    r = guest.run("stop", timeout_ms=STOP_MS, params={"shutdown_mode": "agent"})
    assert r.rc == 0, r
    assert r.elapsed_s < STOP_MS / 1000, r
    assert guest.state() is None
    assert guest.qemu_pids() == []
    assert "falling back to the hypervisor's default shutdown method" in r.stderr, r
    console = guest.console()
    assert POWERBUTTON_MARKER in console, console
    assert SHUTDOWN_MARKER in console, console
    assert "destroy" not in r.stderr.lower(), r


def test_absent_domain(guest: GuestResource) -> None:
    assert guest.state() is None
    stop = guest.run("stop", timeout_ms=STOP_MS)
    assert stop.rc == 0, stop
    recurring = guest.run("monitor", timeout_ms=MONITOR_MS, interval_ms=RECURRING_MS)
    assert recurring.rc == 7, recurring
    assert recurring.reason, recurring
    probe = guest.run("monitor", timeout_ms=MONITOR_MS, interval_ms=0)
    assert probe.rc == 7, probe
    assert probe.reason, probe
    assert guest.state() is None
