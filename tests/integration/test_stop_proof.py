"""Stop and probe never lie (issue 13), on a real libvirtd and real qemu guests.

stop returns 0 only when libvirt confirms the domain is inactive or absent, or when libvirt is
verifiably unreachable (no socket, refused) and no process of the domain exists; a probe says
7 only under the same proof. Each test here reproduces a way the agent used to conclude
"stopped" (or to refuse a healthy configuration) while the guest could still run: a start
still running inside libvirtd (a slow libvirt hook), a refused shutdown (a paused guest), a
libvirt.conf the agent misread, a symlinked config, trace_ra. Every row is also measured for
ocf:heartbeat:VirtualDomain on the same scenario (docs/faults.md, bench/faults.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import (
    AGENT_MARKER,
    INIT_MARKER,
    SLOW_POWEROFF_MARKER,
    SLOW_STOP_MARKER,
    GuestOptions,
    GuestResource,
    hooks,
    wait_for_state,
)
from tests.harness.common import CallTimeout, pid_alive, wait_until
from tests.harness.domains import with_connection

from .conftest import MakeGuest
from .test_faults import libvirt_says, measure_vd, no_traceback, record

pytestmark = pytest.mark.integration

BOOT_S = 60.0
LIBVIRT_CONF = Path("/etc/libvirt/libvirt.conf")


def _libvirt(guest: GuestResource, what: str) -> None:
    """A one-off libvirt call on the guest (suspend, resume)."""
    with_connection(lambda conn: getattr(conn.lookupByName(guest.name), what)(), guest.uri,
                    10.0, what)


def _says(guest: GuestResource) -> str:
    """What libvirt says of the guest, when it answers (it holds a domain it is starting)."""
    try:
        return guest.state() or "absent"
    except CallTimeout:
        return "nothing (the domain is held by the create)"


def _started(guest: GuestResource, **params: str | None) -> int:
    r = guest.run("start", timeout_ms=30000, params=params)
    assert r.rc == 0, r
    assert guest.wait_console(INIT_MARKER, BOOT_S), guest.console()
    [pid] = guest.qemu_pids()
    return pid


# The agent guest takes this long to go down once its /sbin/shutdown ran: more than the 5 s
# one libvirt call used to get before libvirtd was declared hung.
AGENT_SHUTDOWN_S = 8.0


@pytest.mark.parametrize("shutdown_mode", ["", "agent"])
def test_graceful_stop_through_the_guest_agent_is_not_a_kill(make_guest: MakeGuest,
                                                             shutdown_mode: str) -> None:
    """Issue 13 #1. With the guest agent connected, libvirt shuts the guest down through it
    (shutdown_mode unset: libvirt tries the agent first) and the call returns only when the
    guest has powered off. It used to be cut at 5 s: libvirtd declared hung, destroy
    skipped, SIGTERM to qemu in the middle of the guest's own shutdown. Now the guest gets its
    graceful share of the op timeout. The guests ignore ACPI: only the agent can stop them."""
    row = "guest-agent"
    options = GuestOptions(agent=True, shutdown_delay_s=AGENT_SHUTDOWN_S)
    guest, vd_guest = (make_guest("ignore", options=options),
                       make_guest("ignore", options=options))
    params = {"shutdown_mode": shutdown_mode} if shutdown_mode else {}
    for g in (guest, vd_guest):
        _started(g)
        assert g.wait_console(AGENT_MARKER, BOOT_S), g.console()
    for g in (guest, vd_guest):
        assert wait_until(lambda g=g: g.agent_ping(), 30, 0.2), g.console()
    case = f"stop, shutdown_mode={shutdown_mode or 'unset'}, guest takes {AGENT_SHUTDOWN_S:.0f} s"
    stop = record(row, case, guest.run("stop", timeout_ms=60000, params=params),
                  note="guest's own shutdown " + ("completed" if SLOW_POWEROFF_MARKER
                                                  in guest.console() else "cut short"))
    measure_vd(row, case, vd_guest, "stop", timeout_ms=60000, params=params,
               note=lambda: "guest's own shutdown " + (
                   "completed" if SLOW_POWEROFF_MARKER in vd_guest.console() else "cut short"))

    assert stop.rc == 0, stop
    console = guest.console()
    assert SLOW_STOP_MARKER in console and SLOW_POWEROFF_MARKER in console, console
    assert "killing the emulator" not in stop.stderr, stop.stderr
    assert "destroying domain" not in stop.stderr, stop.stderr
    assert stop.elapsed_s >= AGENT_SHUTDOWN_S, stop
    assert guest.state() is None
    no_traceback(stop)


def test_stop_after_a_start_that_timed_out_inside_libvirt(make_guest: MakeGuest) -> None:
    """Issue 13 #2. A start whose create still runs in libvirtd (a qemu hook sleeping 25 s on
    "prepare", as slow storage or network set-up does) fails; Pacemaker then runs stop.
    libvirtd holds the domain meanwhile: every lookup of it waits. Before, stop's lookup was
    cut at 5 s, libvirtd declared hung, no qemu existed yet: stop said 0, and the guest came
    up moments later. Now stop fails while libvirt cannot answer, and says 0 only once
    libvirt confirms the guest gone."""
    row, hook_s = "slow-hook", 25.0
    guest, vd_guest = make_guest("graceful"), make_guest("graceful")
    hooks.slow(guest.name, "prepare", hook_s)
    hooks.slow(vd_guest.name, "prepare", hook_s)
    t0 = time.monotonic()
    start = record(row, "start, timeout 6s", guest.run("start", timeout_ms=6000))
    early = record(row, "stop right after, timeout 10s", guest.run("stop", timeout_ms=10000),
                   note=f"libvirt then says {_says(guest)}")
    late = record(row, "stop again, timeout 60s", guest.run("stop", timeout_ms=60000))
    after_s = time.monotonic() - t0
    time.sleep(3.0)
    left, pids = guest.state(), guest.qemu_pids()

    t1 = time.monotonic()
    measure_vd(row, "start, timeout 6s", vd_guest, "start", timeout_ms=6000)
    measure_vd(row, "stop right after, timeout 10s", vd_guest, "stop", timeout_ms=10000)
    wait = hook_s + 5.0 - (time.monotonic() - t1)
    if wait > 0:
        time.sleep(wait)  # the hook ends; libvirt finishes the create VirtualDomain gave up on
    measure_vd(row, "guest afterwards (probe)", vd_guest, "monitor", timeout_ms=20000,
               interval_ms=0, note=libvirt_says(vd_guest))

    # what matters first: no stop said 0 while libvirt could still finish the create, and
    # nothing of the guest runs once all is over
    assert early.rc != 0, early
    assert late.rc == 0, late
    assert after_s > hook_s, "stop confirmed before libvirt could answer"
    assert left is None and pids == [], (left, pids)
    assert start.rc == 1, start
    assert "may still be starting it" in (start.reason or ""), start
    assert early.elapsed_s < 10.0, early
    assert (early.reason or "").startswith("cannot confirm"), early
    no_traceback(start, early, late)


def test_stop_of_a_paused_guest_destroys_it_through_libvirt(make_guest: MakeGuest) -> None:
    """Issue 13 #3. qemu refuses to shut down a paused guest ("domain is not running"): that
    used to read as "already stopped"; on a local URI the process scan then killed qemu
    behind libvirt's back (on a remote one, nothing stopped it: test_migration.py). Now the
    state is read again and libvirt destroys it."""
    row = "paused"
    guest, vd_guest = make_guest("graceful"), make_guest("graceful")
    _started(guest)
    _started(vd_guest)
    for g in (guest, vd_guest):
        _libvirt(g, "suspend")
        assert g.state() == "paused"
    stop = record(row, "stop, guest paused by virsh suspend", guest.run("stop", timeout_ms=30000),
                  note=f"afterwards libvirt says {guest.state() or 'absent'}")
    measure_vd(row, "stop, guest paused by virsh suspend", vd_guest, "stop", timeout_ms=30000,
               note=libvirt_says(vd_guest))

    assert stop.rc == 0, stop
    assert guest.state() is None
    assert guest.qemu_pids() == []
    # through libvirt, not by killing qemu behind its back
    assert "killing the emulator" not in stop.stderr, stop.stderr
    assert "refused to shut down" in stop.stderr, stop.stderr
    no_traceback(stop)


@pytest.fixture
def libvirt_conf() -> Iterator[Path]:
    """The machine's libvirt.conf, restored byte for byte (or removed) afterwards."""
    before = LIBVIRT_CONF.read_bytes() if LIBVIRT_CONF.exists() else None
    yield LIBVIRT_CONF
    if before is None:
        LIBVIRT_CONF.unlink(missing_ok=True)
    else:
        LIBVIRT_CONF.write_bytes(before)


# Most resources leave hypervisor unset: the node's default URI applies.
DEFAULT_URI_PARAMS: dict[str, str | None] = {"hypervisor": None}


def test_libvirt_conf_with_a_trailing_comment(make_guest: MakeGuest,
                                              libvirt_conf: Path) -> None:
    """Issue 13 #10. `uri_default = "qemu:///system"  # note` is valid for libvirt; the
    agent read the URI with the comment glued on: start, validate-all and monitor answered 6
    (fatal everywhere, for a node-local file) and stop returned 0 while the guest ran."""
    row = "libvirt-conf"
    guest, vd_guest = make_guest("graceful"), make_guest("graceful")
    libvirt_conf.write_text('uri_default = "qemu:///system"  # the cluster\'s hosts\n')
    p = DEFAULT_URI_PARAMS
    validate = record(row, "uri_default with a trailing comment: validate-all",
                      guest.run("validate-all", params=p))
    start = record(row, "uri_default with a trailing comment: start",
                   guest.run("start", timeout_ms=30000, params=p))
    assert guest.wait_console(INIT_MARKER, BOOT_S), guest.console()
    monitor = record(row, "uri_default with a trailing comment: monitor",
                     guest.run("monitor", timeout_ms=20000, interval_ms=10000, params=p))
    stop = record(row, "uri_default with a trailing comment: stop",
                  guest.run("stop", timeout_ms=30000, params=p),
                  note=f"afterwards libvirt says {guest.state() or 'absent'}")
    vd = {"hypervisor": ""}
    for action, kw in (("validate-all", {}), ("start", {}),
                       ("monitor", {"interval_ms": 10000}), ("stop", {})):
        measure_vd(row, f"uri_default with a trailing comment: {action}", vd_guest, action,
                   timeout_ms=30000, params=vd, note=libvirt_says(vd_guest), **kw)

    assert (validate.rc, start.rc, monitor.rc, stop.rc) == (0, 0, 0, 0), \
        (validate, start, monitor, stop)
    assert guest.state() is None
    no_traceback(validate, start, monitor, stop)


def test_an_unparsable_libvirt_conf_is_node_local_and_stop_never_guesses(
        make_guest: MakeGuest, libvirt_conf: Path) -> None:
    """Issue 13 #10. A libvirt.conf that libvirt itself cannot parse breaks every client on
    the node: a probe answers from the guest's processes, monitor and validate-all answer 5
    (this node only, not 6), and stop can confirm nothing: it kills what runs and fails."""
    row = "libvirt-conf"
    guest, vd_guest = make_guest("graceful"), make_guest("graceful")
    p = DEFAULT_URI_PARAMS
    qemu_pid = _started(guest, **p)
    _started(vd_guest)
    libvirt_conf.write_text('uri_default = "qemu:///system\n')  # unterminated
    try:
        case = "libvirt.conf unparsable"
        probe = record(row, f"{case}: probe",
                       guest.run("monitor", timeout_ms=20000, interval_ms=0, params=p))
        recurring = record(row, f"{case}: monitor",
                           guest.run("monitor", timeout_ms=20000, interval_ms=10000, params=p))
        validate = record(row, f"{case}: validate-all", guest.run("validate-all", params=p))
        stop = record(row, f"{case}: stop", guest.run("stop", timeout_ms=20000, params=p),
                      note=f"afterwards the guest's qemu "
                           f"{'runs' if pid_alive(qemu_pid) else 'is gone'}")
        vd = {"hypervisor": ""}
        for action, kw in (("validate-all", {}), ("monitor", {"interval_ms": 0}),
                           ("monitor", {"interval_ms": 10000}), ("stop", {})):
            label = "probe" if kw.get("interval_ms") == 0 else action
            # (no libvirt client works on this node now, the harness's neither)
            measure_vd(row, f"{case}: {label}", vd_guest, action, timeout_ms=20000, params=vd,
                       note=lambda: "its guest's qemu " + ("runs" if vd_guest.qemu_pids()
                                                           else "is gone"), **kw)
    finally:
        libvirt_conf.write_text("")

    assert probe.rc == 0, probe  # its qemu ran
    assert recurring.rc == 5, recurring
    assert validate.rc == 5, validate
    assert stop.rc == 1, stop
    assert (stop.reason or "").startswith(f"cannot confirm that {guest.name} stopped"), stop
    assert not pid_alive(qemu_pid)
    no_traceback(probe, recurring, validate, stop)


def test_stop_without_a_record_under_an_unusable_default_uri_fails(
        make_guest: MakeGuest, libvirt_conf: Path) -> None:
    """Issue 13 #10: the URI the state record kept is what stop uses; without a record and
    with no usable URI, stop cannot conclude "stopped"."""
    guest = make_guest("graceful")
    p = DEFAULT_URI_PARAMS
    r = guest.run("start", timeout_ms=30000, params=p)
    assert r.rc == 0, r
    for rec in guest.state_dir.glob(f"*{guest.name}*"):
        rec.unlink()  # as after an upgrade from an agent that kept none
    libvirt_conf.write_text('uri_default = "not a uri"\n')
    try:
        stop = record("libvirt-conf", "uri_default not a URI, no state record: stop",
                      guest.run("stop", timeout_ms=20000, params=p))
    finally:
        libvirt_conf.write_text("")
    assert stop.rc == 1, stop
    assert (stop.reason or "").startswith(f"cannot tell whether {guest.name} still runs"), stop
    assert guest.state() == "running"


def test_save_config_on_stop_writes_through_a_symlink(make_guest: MakeGuest,
                                                      tmp_path: Path) -> None:
    """Issue 13 #6 on a real guest: the config links to shared storage; after stop the link
    is still a link and the shared file holds libvirt's definition, mode and owner kept."""
    row = "symlinked-config"
    guest, vd_guest = make_guest("graceful"), make_guest("graceful")
    reals = {}
    for g in (guest, vd_guest):
        shared = tmp_path / f"shared-{g.name}"
        shared.mkdir()
        real = shared / g.config.name
        g.config.rename(real)
        real.chmod(0o640)
        g.config.symlink_to(real)
        reals[g.name] = real
        _started(g)

    def outcome(g: GuestResource) -> str:
        real = reals[g.name]
        return (f"config {'still a symlink' if g.config.is_symlink() else 'now a plain file'};"
                f" shared file {'updated' if '<uuid>' in real.read_text() else 'not updated'}")

    params = {"save_config_on_stop": "true", "force_stop": "true"}
    stop = record(row, "stop with save_config_on_stop", guest.run(
        "stop", timeout_ms=30000, params=params), note=outcome(guest))
    measure_vd(row, "stop with save_config_on_stop", vd_guest, "stop", timeout_ms=30000,
               params=params, note=lambda: outcome(vd_guest))

    real = reals[guest.name]
    assert stop.rc == 0, stop
    assert guest.config.is_symlink()
    assert "<uuid>" in real.read_text() and f"<name>{guest.name}</name>" in real.read_text()
    assert real.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in real.parent.iterdir()) == [real.name]
    assert wait_for_state(guest.name, None, 10.0)


def test_trace_ra_on_a_real_guest(make_guest: MakeGuest, tmp_path: Path) -> None:
    """Issue 13 #9: trace_ra=1 (crm_resource --trace) answered 6 (fatal cluster-wide); the
    actions run and leave their traces where resource-agents puts them."""
    row = "trace-ra"
    guest, vd_guest = make_guest("graceful"), make_guest("graceful")
    env = {"HA_VARLIB": str(tmp_path / "varlib"), "OCF_RESOURCE_TYPE": "PyVirtualDomain"}
    traced = {"trace_ra": "1"}
    start = record(row, "start with trace_ra=1", guest.run(
        "start", timeout_ms=30000, params=traced, env_extra=env))
    stop = record(row, "stop with trace_ra=1", guest.run(
        "stop", timeout_ms=30000, params={**traced, "force_stop": "true"}, env_extra=env))
    # VirtualDomain's trace into this test's directory (its default is below /var/lib).
    vd_traced = {**traced, "trace_file": str(tmp_path / "vd" / "trace")}
    (tmp_path / "vd").mkdir()
    measure_vd(row, "start with trace_ra=1", vd_guest, "start", timeout_ms=30000,
               params=vd_traced)
    measure_vd(row, "stop with trace_ra=1", vd_guest, "stop", timeout_ms=30000,
               params={**vd_traced, "force_stop": "true"}, note=libvirt_says(vd_guest))

    assert start.rc == 0 and stop.rc == 0, (start, stop)
    traces = sorted(p.name.split(".")[1] for p in
                    (tmp_path / "varlib" / "trace_ra" / "PyVirtualDomain").iterdir())
    assert traces == ["start", "stop"], traces
    assert guest.state() is None
