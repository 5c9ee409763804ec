"""What the agent answers for broken or missing configuration, and for a config that
vanishes or conflicts with the host's own libvirt definitions."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import ACPID_MARKER, GuestResource, define_persistent

pytestmark = pytest.mark.integration

START_MS = 30000
STOP_MS = 30000
MONITOR_MS = 20000
BOOT_S = 60.0


def with_config(guest: GuestResource, path: Path) -> GuestResource:
    """The same resource, pointed at another config file."""
    guest.params["config"] = str(path)
    return guest


def test_missing_config(guest: GuestResource, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "absent.xml"
    res = with_config(guest, missing)
    validate = res.run("validate-all", timeout_ms=5000)
    assert validate.rc == 5, validate
    assert validate.reason and str(missing) in validate.reason, validate
    start = res.run("start", timeout_ms=START_MS)
    assert start.rc == 5, start
    assert start.reason, start
    probe = res.run("monitor", timeout_ms=MONITOR_MS, interval_ms=0)
    assert probe.rc == 7, probe
    assert probe.reason, probe
    stop = res.run("stop", timeout_ms=STOP_MS)
    assert stop.rc == 0, stop
    assert guest.state() is None


def test_malformed_xml(guest: GuestResource) -> None:
    text = guest.config.read_text()
    guest.config.write_text(text[: len(text) // 2])
    validate = guest.run("validate-all", timeout_ms=5000)
    assert validate.rc == 6, validate
    assert validate.reason and str(guest.config) in validate.reason, validate
    start = guest.run("start", timeout_ms=START_MS)
    assert start.rc == 6, start
    assert start.reason and str(guest.config) in start.reason, start
    assert guest.state() is None


def test_xml_without_name(guest: GuestResource) -> None:
    text = guest.config.read_text()
    guest.config.write_text(text.replace(f"<name>{guest.name}</name>", ""))
    validate = guest.run("validate-all", timeout_ms=5000)
    assert validate.rc == 6, validate
    assert validate.reason, validate
    start = guest.run("start", timeout_ms=START_MS)
    assert start.rc == 6, start
    assert start.reason, start
    assert guest.state() is None


def test_bad_boolean_parameter(guest: GuestResource) -> None:
    """Issue 21 #6: a boolean is true exactly when resource-agents' ocf_is_true says so;
    anything else is false with a warning, never 6 (VirtualDomain starts such a resource)."""
    validate = guest.run("validate-all", timeout_ms=5000, params={"force_stop": "maybe"})
    assert validate.rc == 0, validate
    assert "force_stop='maybe' is taken as false" in validate.stderr, validate
    start = guest.run("start", timeout_ms=START_MS, params={"force_stop": "maybe"})
    assert start.rc == 0, start
    assert guest.state() == "running"
    stop = guest.run("stop", timeout_ms=STOP_MS, params={"force_stop": "maybe"})
    assert stop.rc == 0, stop
    assert guest.state() is None


def test_unknown_parameter(guest: GuestResource) -> None:
    validate = guest.run("validate-all", timeout_ms=5000, params={"no_such_parameter": "1"})
    assert validate.rc == 6, validate
    assert validate.reason and "no_such_parameter" in validate.reason, validate


def test_garbage_hypervisor_uri(guest: GuestResource) -> None:
    validate = guest.run("validate-all", timeout_ms=5000,
                         params={"hypervisor": "this is :// not a uri"})
    assert validate.rc == 6, validate
    assert validate.reason, validate


def test_valid_config_validates(guest: GuestResource) -> None:
    validate = guest.run("validate-all", timeout_ms=5000)
    assert validate.rc == 0, validate
    assert guest.state() is None


def test_config_deleted_while_running(guest: GuestResource) -> None:
    start = guest.run("start", timeout_ms=START_MS)
    assert start.rc == 0, start
    assert guest.wait_console(ACPID_MARKER, BOOT_S), guest.console()
    [qemu_pid] = guest.qemu_pids()
    guest.config.unlink()

    probe = guest.run("monitor", timeout_ms=MONITOR_MS, interval_ms=0)
    assert probe.rc == 0, probe
    stop = guest.run("stop", timeout_ms=STOP_MS)
    assert stop.rc == 0, stop
    assert guest.state() is None
    assert qemu_pid not in guest.qemu_pids()
    assert guest.qemu_pids() == []


def test_persistent_autostart_definition_is_refused(guest: GuestResource) -> None:
    define_persistent(guest.config.read_text(), autostart=True)
    facts = guest.facts()
    assert facts is not None and facts.persistent and facts.autostart

    start = guest.run("start", timeout_ms=START_MS)
    assert start.rc == 5, start
    assert start.reason and guest.name in start.reason, start
    assert "autostart" in start.reason, start
    assert guest.config.is_file(), "the user's config file must never be removed"
    after = guest.facts()
    assert after is not None and after.state == "shut off", after
    assert after.persistent, "the user's definition must not be deleted"
