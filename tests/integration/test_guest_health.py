"""Guest health beyond "libvirt says running" (issue 16), on real qemu guests under libvirtd:
a guest agent that stops answering, a disk that fails with an I/O error, a watchdog that
fires, and the lock-manager warning against the machine's real qemu.conf."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import (
    AGENT_MARKER,
    FILL_MARKER,
    WATCHDOG_STOPPED_MARKER,
    GuestOptions,
    GuestResource,
    wait_for_state,
)
from tests.harness.common import wait_until

from .conftest import MakeGuest, MakeSmallFs

pytestmark = pytest.mark.integration

BOOT_S = 60.0
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
# libvirt's default auto_dump_path (the harness's qemu.conf does not move it)
DUMP_DIR = Path("/var/lib/libvirt/qemu/dump")
RECURRING = 10000
LEVEL_20 = {"OCF_CHECK_LEVEL": "20"}


def _started(guest: GuestResource, marker: str) -> None:
    r = guest.run("start", timeout_ms=60000)
    assert r.rc == 0, r
    assert guest.wait_console(marker, BOOT_S), guest.console()


def test_a_guest_whose_agent_stops_answering_fails_after_n_monitors(
        make_guest: MakeGuest) -> None:
    """OCF_CHECK_LEVEL=20: the agent answers -> 0; stopped inside the guest -> each monitor
    misses; the first guest_agent_misses-1 only warn, the next reports 1. Probes never
    ping."""
    g = make_guest("graceful", options=GuestOptions(agent=True))
    _started(g, AGENT_MARKER)
    assert wait_until(lambda: g.agent_ping(), 30, 0.2), g.console()
    ok = g.run("monitor", timeout_ms=30000, interval_ms=RECURRING, env_extra=LEVEL_20)
    assert ok.rc == 0, ok
    assert "did not answer" not in ok.stderr

    g.stop_agent("kill")
    params = {"guest_agent_misses": "3"}
    first = g.run("monitor", timeout_ms=30000, interval_ms=RECURRING, env_extra=LEVEL_20,
                  params=params)
    second = g.run("monitor", timeout_ms=30000, interval_ms=RECURRING, env_extra=LEVEL_20,
                   params=params)
    probe = g.run("monitor", timeout_ms=30000, interval_ms=0, env_extra=LEVEL_20,
                  params=params)
    third = g.run("monitor", timeout_ms=30000, interval_ms=RECURRING, env_extra=LEVEL_20,
                  params=params)
    assert (first.rc, second.rc) == (0, 0), (first, second)
    assert "(1 of 3 misses" in first.stderr and "(2 of 3 misses" in second.stderr
    assert probe.rc == 0 and "guest agent" not in probe.stderr, probe
    assert third.rc == 1, third
    assert f"guest agent of {g.name} did not answer 3 monitors in a row" in (third.reason or "")
    # an ordinary monitor (level 0) never asks the agent
    plain = g.run("monitor", timeout_ms=30000, interval_ms=RECURRING)
    assert plain.rc == 0, plain
    for r in (first, second, third):
        assert r.elapsed_s < 30.0, r


@pytest.fixture
def qemu_conf() -> Iterator[Path]:
    """The machine's qemu.conf, put back byte for byte afterwards."""
    before = QEMU_CONF.read_bytes()
    yield QEMU_CONF
    QEMU_CONF.write_bytes(before)


def test_a_guest_paused_by_a_disk_io_error_fails_the_monitor(
        make_guest: MakeGuest, make_small_fs: MakeSmallFs) -> None:
    """A real I/O error: the guest's disk lives on a small filesystem it fills; qemu pauses it
    (error_policy='stop'). fail_on_io_error (default true) reports it failed; false keeps
    VirtualDomain's 0; a probe says it is here (0)."""
    fs = make_small_fs(8)
    disk = fs.sparse_file("vda.raw", 64)
    g = make_guest("graceful", options=GuestOptions(disk=disk, fill_disk=True))
    fs.users.append(g.name)
    _started(g, FILL_MARKER)
    assert wait_until(lambda: g.state() == "paused", 60, 0.2), g.console()
    assert g.paused_reason() == "ioerror"
    failed = g.run("monitor", timeout_ms=30000, interval_ms=RECURRING)
    assert failed.rc == 1, failed
    assert f"domain {g.name} is paused by a disk I/O error" in (failed.reason or ""), failed
    kept = g.run("monitor", timeout_ms=30000, interval_ms=RECURRING,
                 params={"fail_on_io_error": "false"})
    assert kept.rc == 0, kept
    probe = g.run("monitor", timeout_ms=30000, interval_ms=0)
    assert probe.rc == 0, probe
    stop = g.run("stop", timeout_ms=30000)
    assert stop.rc == 0, stop
    assert g.state() is None


def test_a_watchdog_that_pauses_the_guest_fails_the_monitor(make_guest: MakeGuest) -> None:
    """i6300esb, action pause, the guest stops feeding it: libvirt says paused (watchdog);
    the monitor reports 1 so that Pacemaker recovers the guest (also on another node)."""
    g = make_guest("graceful", options=GuestOptions(watchdog_action="pause",
                                                    watchdog_timeout_s=2,
                                                    watchdog_stop_after_s=5))
    _started(g, WATCHDOG_STOPPED_MARKER)
    assert wait_until(lambda: g.state() == "paused", 30, 0.2), g.console()
    assert g.paused_reason() == "watchdog"
    m = g.run("monitor", timeout_ms=30000, interval_ms=RECURRING)
    assert m.rc == 1, m
    assert f"domain {g.name} is paused by its watchdog" in (m.reason or ""), m
    assert g.run("stop", timeout_ms=30000).rc == 0
    assert wait_for_state(g.name, None, 10)


def test_a_watchdog_with_action_dump_fails_the_monitor(make_guest: MakeGuest) -> None:
    """Action dump: libvirt writes a core dump to its auto_dump_path and lets the hung guest
    run on, still "running"; the dump file, newer than the start, is the monitor's evidence
    (the action was kept in the state record at start)."""
    g = make_guest("graceful", options=GuestOptions(watchdog_action="dump",
                                                    watchdog_timeout_s=2,
                                                    watchdog_stop_after_s=5))
    marker = f"-{g.name[:20]}-"

    def dumps() -> list[Path]:
        return [p for p in DUMP_DIR.glob(f"*{marker}*") if p.name.split(marker)[0].isdigit()]

    try:
        _started(g, WATCHDOG_STOPPED_MARKER)
        assert wait_until(lambda: bool(dumps()), 60, 0.5), g.console()
        assert wait_until(lambda: g.state() == "running", 30, 0.5), g.state()
        m = g.run("monitor", timeout_ms=30000, interval_ms=RECURRING)
        assert m.rc == 1, m
        assert "watchdog fired (action dump)" in (m.reason or ""), m
        assert g.run("stop", timeout_ms=30000, params={"force_stop": "true"}).rc == 0
    finally:
        for p in dumps():
            p.unlink()


def test_validate_warns_without_a_lock_manager_for_shared_disks(guest: GuestResource,
                                                                qemu_conf: Path) -> None:
    """OCF_CHECK_LEVEL=10 against the machine's real qemu.conf: a domain with a block-device
    disk (a SAN LUN looks like any other) and no lock_manager gets the warning; with
    lock_manager = "lockd" it does not."""
    xml = guest.config.read_text().replace(
        "</devices>", "<disk type='block' device='disk'><driver name='qemu' type='raw'/>"
        "<source dev='/dev/mapper/pyvd-shared-lun'/><target dev='vdb' bus='virtio'/></disk>"
        "</devices>")
    guest.config.write_text(xml)
    original = qemu_conf.read_text()
    qemu_conf.write_text("\n".join(line for line in original.splitlines()
                                   if not line.strip().startswith("lock_manager")) + "\n")
    level10 = {"OCF_CHECK_LEVEL": "10"}
    warned = guest.run("validate-all", timeout_ms=5000, env_extra=level10)
    assert warned.rc == 0, warned
    assert "no lock manager" in warned.stderr and "/dev/mapper/pyvd-shared-lun" in \
        warned.stderr, warned.stderr
    qemu_conf.write_text(original + '\nlock_manager = "lockd"  # virtlockd\n')
    quiet = guest.run("validate-all", timeout_ms=5000, env_extra=level10)
    assert quiet.rc == 0 and "lock manager" not in quiet.stderr, quiet
