"""The safety rule's second pass (issue 20), on the real libvirtd with real (tiny, TCG) qemu
guests: the paths where a guest could run twice or a healthy guest be failed that involve one
host (the migration paths are in test_migration.py).

Each test failed on the code before its fix (named in the docstring). Where VirtualDomain can
take the same path it is run on the same guest and recorded (never asserted) for the fault
table (docs/faults.md, rows 22-32)."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import (
    INIT_MARKER,
    WATCHDOG_STOPPED_MARKER,
    AgentResult,
    GuestArtifacts,
    GuestOptions,
    GuestResource,
    Libvirtd,
    new_guest_resource,
    remove_domain,
    wait_for_state,
)
from tests.harness.agent import run_agent_argv
from tests.harness.common import AGENTS_DIR, VENV_PYTHON, wait_until
from tests.harness.domains import with_connection

from .conftest import MakeGuest
from .test_faults import libvirt_says, measure_vd, no_traceback, record

pytestmark = pytest.mark.integration

START_MS = 60000
STOP_MS = 60000
MONITOR_MS = 20000
RECURRING_MS = 10000
BOOT_S = 60.0
DUMP_DIR = Path("/var/lib/libvirt/qemu/dump")


def _started(g: GuestResource, marker: str = INIT_MARKER,
             env: dict[str, str] | None = None) -> AgentResult:
    r = g.run("start", timeout_ms=START_MS, env_extra=env)
    assert r.rc == 0, r
    assert g.wait_console(marker, BOOT_S), g.console()
    return r


def _records(g: GuestResource) -> list[Path]:
    return sorted(g.state_dir.glob("PyVirtualDomain-*.state"))


# -- a state directory that is full, or read-only ------------------------------------------


class _Tmpfs:
    """A small tmpfs mounted for one test (HA_RSCTMP), unmounted in teardown."""

    def __init__(self, path: Path, size_kib: int = 256) -> None:
        self.path = path
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs",
                        str(path)], check=True)

    def fill(self) -> None:
        """Write until the file system is full (ENOSPC)."""
        fd = os.open(self.path / "ballast", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        probe = self.path / "probe"
        with pytest.raises(OSError):
            probe.write_bytes(b"x" * 8192)

    def read_only(self) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)

    def close(self) -> None:
        subprocess.run(["umount", str(self.path)], check=False)
        assert not os.path.ismount(self.path), f"{self.path} still mounted"


@pytest.fixture
def small_state_dir(tmp_path: Path) -> Iterator[_Tmpfs]:
    fs = _Tmpfs(tmp_path / "rsctmp-small")
    try:
        yield fs
    finally:
        fs.close()


def _cib(tmp_path: Path, instance: str) -> Path:
    """A CIB file with the resource, so that monitors write its utilization (crm_resource)."""
    cib = tmp_path / "cib.xml"
    env = {"CIB_file": str(cib), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    cib.write_text(subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True,
                                  check=True, env=env).stdout)
    subprocess.run(["cibadmin", "-C", "-o", "resources", "-X",
                    f"<primitive id='{instance}' class='ocf' provider='custom' "
                    "type='PyVirtualDomain'/>"], check=True, env=env, capture_output=True)
    return cib


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_full_or_read_only_state_directory_never_fails_a_healthy_guest(
        guest: GuestResource, small_state_dir: _Tmpfs, tmp_path: Path, fault: str) -> None:
    """Issue 20 #4 (and #1b): HA_RSCTMP full or read-only. The utilization cache write was not
    caught: every monitor of the healthy guest failed ("internal error: OSError: [Errno
    28]"); removing the record failed the stop that had stopped the guest. Now start, monitor
    and stop answer the truth, and with the record lost the guest is still found (by its
    owner tag) when the config goes too."""
    g = guest
    cib = _cib(tmp_path, g.instance)
    env = {"CIB_file": str(cib), "HA_RSCTMP": str(small_state_dir.path)}
    if fault == "full":
        small_state_dir.fill()
    else:
        small_state_dir.read_only()
    start = _started(g, env=env)
    assert "cannot write state file" in start.stderr, start
    assert not list(small_state_dir.path.glob("PyVirtualDomain-*.state"))
    for _ in range(2):
        m = g.run("monitor", timeout_ms=MONITOR_MS, interval_ms=RECURRING_MS, env_extra=env)
        assert m.rc == 0, m
        no_traceback(m)
    assert 'name="cpu" value="1"' in cib.read_text()
    # No record, and now no config either (its storage went away): still found.
    hidden = g.config.with_suffix(".hidden")
    g.config.rename(hidden)
    try:
        probe = g.run("monitor", timeout_ms=MONITOR_MS, interval_ms=0, env_extra=env)
        record("rsctmp-unwritable", f"{fault}: probe, no record, config gone, guest running",
               probe)
        assert probe.rc == 0, probe
        stop = g.run("stop", timeout_ms=STOP_MS, env_extra=env)
        record("rsctmp-unwritable", f"{fault}: stop, no record, config gone, guest running",
               stop, libvirt_says(g)())
        assert stop.rc == 0, stop
        assert g.state() is None and g.qemu_pids() == []
    finally:
        hidden.rename(g.config)


def test_compare_unwritable_record_and_config_gone(guest: GuestResource) -> None:
    """VirtualDomain on the same path (measured): its probe and stop look only at the config."""
    g = guest
    _started(g)
    hidden = g.config.with_suffix(".hidden")
    g.config.rename(hidden)
    try:
        measure_vd("rsctmp-unwritable", "VirtualDomain: probe, config gone, guest running", g,
                   "monitor", timeout_ms=MONITOR_MS, interval_ms=0)
        measure_vd("rsctmp-unwritable", "VirtualDomain: stop, config gone, guest running", g,
                   "stop", timeout_ms=STOP_MS, note=libvirt_says(g))
    finally:
        hidden.rename(g.config)
    assert g.run("stop", timeout_ms=STOP_MS, params={"force_stop": "true"}).rc == 0


# -- the probe without psutil while libvirtd is frozen ----------------------------------------


def _run_without_psutil(g: GuestResource, action: str, *, timeout_ms: int,
                        interval_ms: int | None = None) -> AgentResult:
    """The agent in an interpreter where psutil cannot be imported (as on a node where it
    is missing), everything else as Pacemaker runs it."""
    from tests.harness.agent import agent_environment

    env = agent_environment(action, g.params, timeout_ms=timeout_ms, interval_ms=interval_ms,
                            instance=g.instance, state_dir=g.state_dir, agent=g.agent)
    agent = AGENTS_DIR / g.agent
    code = ("import sys; sys.modules['psutil'] = None; "
            f"sys.argv = [{str(agent)!r}, {action!r}]; "
            f"exec(compile(open({str(agent)!r}).read(), {str(agent)!r}, 'exec'), "
            f"{{'__file__': {str(agent)!r}, '__name__': '__main__'}})")
    return run_agent_argv([str(VENV_PYTHON), "-c", code], env, action=action, agent=g.agent,
                          limit_s=timeout_ms / 1000 + 15)


def test_probe_with_libvirtd_frozen_and_psutil_missing_is_never_7(
        guest: GuestResource, libvirtd: Libvirtd) -> None:
    """Issue 20 #9: with libvirtd hung and psutil missing, the probe said 7 (stop rightly said
    1): nothing here proves the guest does not run. A qemu domain's processes are now read
    from /proc without psutil: the probe finds the running qemu and says so (0); a
    container's still need psutil (tests/unit/virt/test_procs.py)."""
    g = guest
    _started(g)
    libvirtd.freeze()
    try:
        probe = _run_without_psutil(g, "monitor", timeout_ms=MONITOR_MS, interval_ms=0)
        record("frozen-no-psutil", "probe, guest running, libvirtd frozen, no psutil", probe)
        measure_vd("frozen-no-psutil", "VirtualDomain: probe, guest running, libvirtd frozen",
                   g, "monitor", timeout_ms=MONITOR_MS, interval_ms=0)
    finally:
        libvirtd.thaw()
    assert probe.rc == 0, probe
    assert probe.elapsed_s < MONITOR_MS / 1000, probe
    assert f"emulator of {g.name} runs (pid " in probe.stderr, probe
    assert g.state() == "running"
    assert g.run("stop", timeout_ms=STOP_MS, params={"force_stop": "true"}).rc == 0


# -- an old state record never widens what the agent acts on ----------------------------------


def test_a_record_from_before_uuid_pinning_never_adopts_a_foreign_domain(
        guest: GuestResource, make_guest: MakeGuest) -> None:
    """Issue 20 #10: a record written before the config's own uuid was recorded lost the
    pinning: with the config unreadable a monitor adopted a foreign domain of the same name
    (another uuid) and recorded its uuid, so a later stop destroyed it."""
    g = guest
    _started(g)
    [rec] = _records(g)
    recorded_uuid = with_connection(lambda c: c.lookupByName(g.name).UUIDString())
    assert g.run("stop", timeout_ms=STOP_MS, params={"force_stop": "true"}).rc == 0
    # The record as an earlier version wrote it (no config_uuid), for the domain now gone.
    rec.write_text(f"name={g.name}\nuuid={recorded_uuid}\nvirt_type=qemu\nemulator=\n"
                   f"uri={g.uri}\nconfig={g.config}\nconfig_mtime_ns=1\nconfig_size=1\n"
                   f"started_at={time.time()}\n")
    # Someone else runs a domain of the same name (another uuid) from their own XML.
    foreign = make_guest("graceful")
    foreign_xml = foreign.config.read_text().replace(f"<name>{foreign.name}</name>",
                                                     f"<name>{g.name}</name>")
    with_connection(lambda c: c.createXML(foreign_xml, 0))
    assert wait_for_state(g.name, "running", 30)
    foreign_uuid = with_connection(lambda c: c.lookupByName(g.name).UUIDString())
    assert foreign_uuid != recorded_uuid
    hidden = g.config.with_suffix(".hidden")
    g.config.rename(hidden)
    try:
        m = g.run("monitor", timeout_ms=MONITOR_MS, interval_ms=RECURRING_MS)
        record("old-record", "recurring monitor, foreign domain of the same name", m)
        assert m.rc == 7, m
        assert recorded_uuid in rec.read_text() and foreign_uuid not in rec.read_text()
        stop = g.run("stop", timeout_ms=STOP_MS)
        record("old-record", "stop, foreign domain of the same name", stop,
               f"foreign domain afterwards: {g.state() or 'absent'}")
        assert stop.rc == 0, stop
        assert g.state() == "running", "stop destroyed a domain that was never ours"
        assert with_connection(lambda c: c.lookupByName(g.name).UUIDString()) == foreign_uuid
    finally:
        hidden.rename(g.config)
        remove_domain(g.name)


# -- a by-hand timeout that is no duration -----------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "nan", "-5", "1e999", "soon"])
def test_an_unusable_timeout_by_hand_gets_one_line(guest: GuestResource, value: str) -> None:
    """Issue 20 #11: `--timeout inf` printed a traceback."""
    r = run_agent_argv([str(VENV_PYTHON), str(AGENTS_DIR / "PyVirtualDomain"), "monitor",
                        "--config", str(guest.config), "--timeout", value],
                       {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, action="monitor",
                       agent="PyVirtualDomain", limit_s=30)
    assert r.rc == 2, r
    no_traceback(r)
    lines = [line for line in r.stderr.splitlines() if line.startswith("ocf-exit-reason:")]
    assert len(lines) == 1 and "--timeout" in lines[0], r


# -- what start learnt about the guest survives re-records ------------------------------------


def _dumps(prefix: str) -> list[Path]:
    return [p for p in DUMP_DIR.glob(f"*-{prefix}*")]


def test_the_watchdog_dump_check_survives_rerecords(make_guest: MakeGuest) -> None:
    """Issue 20 #5: a start that found the guest running and a monitor that re-recorded it
    after a config edit both dropped the watchdog action from the record (and reset the start
    time the guest agent's miss count counts from): the guest's watchdog then fired and
    dumped it, and the monitor kept saying 0."""
    g = make_guest("graceful", options=GuestOptions(watchdog_action="dump",
                                                    watchdog_timeout_s=2,
                                                    watchdog_stop_after_s=25))
    try:
        _started(g)
        [rec] = _records(g)
        first = dict(line.split("=", 1) for line in rec.read_text().splitlines())
        again = g.run("start", timeout_ms=START_MS)  # found running
        assert again.rc == 0 and "already running" in again.stderr, again
        st = g.config.stat()
        os.utime(g.config, ns=(st.st_mtime_ns + 10**9,) * 2)  # the admin touched the config
        m = g.run("monitor", timeout_ms=MONITOR_MS, interval_ms=RECURRING_MS)
        assert m.rc == 0, m
        now = dict(line.split("=", 1) for line in rec.read_text().splitlines())
        assert now["config_mtime_ns"] != first["config_mtime_ns"], "not re-recorded"
        assert (now["watchdog"], now["started_at"]) == (first["watchdog"], first["started_at"])
        assert g.wait_console(WATCHDOG_STOPPED_MARKER, 60), g.console()
        assert wait_until(lambda: bool(_dumps(g.name[:20])), 60, 0.5), g.console()
        assert wait_until(lambda: g.state() == "running", 30, 0.5), g.state()
        m = g.run("monitor", timeout_ms=MONITOR_MS, interval_ms=RECURRING_MS)
        assert m.rc == 1 and "watchdog fired (action dump)" in (m.reason or ""), m
        assert g.run("stop", timeout_ms=STOP_MS, params={"force_stop": "true"}).rc == 0
    finally:
        for p in _dumps(g.name[:20]):
            p.unlink()


def test_a_dump_of_a_domain_sharing_the_first_20_characters_is_not_ours(
        libvirtd: Libvirtd, artifacts: GuestArtifacts, virt_type: str, tmp_path: Path) -> None:
    """Issue 20 #6: libvirt names a dump <id>-<first 20 characters of the name>-<time>; the
    monitor matched any id, so the dump of ...-webserver-02 failed the monitor of
    ...-webserver-01. Two real guests whose names share 20 characters; only the second
    one's watchdog fires."""
    stem = f"pyvd-twin-{secrets.token_hex(3)}-webserver-"
    assert len(stem) >= 20
    quiet = new_guest_resource(tmp_path / "a", stem + "01", "graceful", artifacts, virt_type,
                               options=GuestOptions(watchdog_action="dump"))
    firing = new_guest_resource(tmp_path / "b", stem + "02", "graceful", artifacts, virt_type,
                                options=GuestOptions(watchdog_action="dump",
                                                     watchdog_timeout_s=2,
                                                     watchdog_stop_after_s=5))
    try:
        _started(quiet)
        _started(firing, WATCHDOG_STOPPED_MARKER)
        assert wait_until(lambda: bool(_dumps(stem[:20])), 60, 0.5), firing.console()
        # libvirt pauses the guest while it dumps it, then lets it run on (hung)
        assert wait_until(lambda: firing.state() == "running", 30, 0.5), firing.state()
        mine = firing.run("monitor", timeout_ms=MONITOR_MS, interval_ms=RECURRING_MS)
        assert mine.rc == 1 and "watchdog fired" in (mine.reason or ""), mine
        other = quiet.run("monitor", timeout_ms=MONITOR_MS, interval_ms=RECURRING_MS)
        record("dump-twins", "recurring monitor of the twin whose watchdog did not fire",
               other)
        assert other.rc == 0, other
    finally:
        for g in (quiet, firing):
            remove_domain(g.name)
        for p in _dumps(stem[:20]):
            p.unlink()


# -- a restored RAM image is never restored twice ------------------------------------------------


def _immutable(path: Path, on: bool) -> None:
    subprocess.run(["chattr", "+i" if on else "-i", str(path)], check=True)


def test_a_restored_snapshot_that_cannot_be_marked_is_never_restored(
        guest: GuestResource, tmp_path: Path) -> None:
    """Issue 20 #7: with the snapshot directory read-only, start restored the saved state,
    could not remove it and answered 1 with the guest running; the next start restored the
    same old RAM image again over a disk that had moved on. Now an image that cannot be
    marked (renamed) before its restore is not restored at all."""
    g = guest
    snap = tmp_path / "snapshots"
    snap.mkdir()
    params = {"snapshot": str(snap)}
    assert g.run("start", timeout_ms=START_MS, params=params).rc == 0
    assert g.wait_console(INIT_MARKER, BOOT_S)
    stop = g.run("stop", timeout_ms=STOP_MS, params=params)
    assert stop.rc == 0, stop
    state_file = snap / f"{g.name}.state"
    assert state_file.exists()
    _immutable(snap, True)  # nothing in it can be renamed, removed or created, even by root
    try:
        r = g.run("start", timeout_ms=START_MS, params=params)
        record("snapshot-readonly", "start with the saved state in an unwritable directory",
               r, libvirt_says(g)())
        assert r.rc == 1, r
        assert "cannot be renamed before the restore" in (r.reason or ""), r
        assert g.state() is None, "restored although the image could not be marked"
    finally:
        _immutable(snap, False)
    # Writable again: restored once, and the image is gone from its name.
    r = g.run("start", timeout_ms=START_MS, params=params)
    assert r.rc == 0 and "restoring" in r.stderr, r
    assert not state_file.exists()
    assert g.run("stop", timeout_ms=STOP_MS, params={"force_stop": "true"}).rc == 0


# -- a saved config never discloses a secret ------------------------------------------------------


VNC = "<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1' passwd='{pw}'/>"


def test_save_config_on_stop_never_leaves_a_secret_readable_by_others(
        guest: GuestResource) -> None:
    """Issue 20 #8: save_config_on_stop writes libvirt's XML with passwords (VNC passwd) and
    kept the file's 0644: everyone on the node (and, with sync_config_on_stop, on every node)
    could read the password. A saved file holding secrets is readable by its owner only."""
    g = guest
    password = secrets.token_hex(4)
    xml = g.config.read_text()
    g.config.write_text(xml.replace("</devices>", VNC.format(pw=password) + "\n  </devices>"))
    g.config.chmod(0o644)
    _started(g)
    stop = g.run("stop", timeout_ms=STOP_MS, params={"save_config_on_stop": "true"})
    assert stop.rc == 0, stop
    saved = g.config.read_text()
    mode = stat.S_IMODE(g.config.stat().st_mode)
    record("secret-in-saved-config", "stop with save_config_on_stop, VNC password, file 0644",
           stop, f"saved file mode {mode:04o}, password in it: {password in saved}")
    assert password in saved, "the password must survive (the next start needs it)"
    assert mode == 0o600, f"{mode:04o}"
    assert "pyvirtualdomain" not in saved, "the owner tag does not belong in the config"
    # VirtualDomain on the same guest and file (measured): its save writes a new file.
    g.config.chmod(0o644)
    _started(g)

    def vd_mode() -> str:
        text = g.config.read_text()
        return (f"saved file mode {stat.S_IMODE(g.config.stat().st_mode):04o}, password in "
                f"it: {password in text}")

    measure_vd("secret-in-saved-config", "VirtualDomain: stop with save_config_on_stop, VNC "
               "password, file 0644", g, "stop", timeout_ms=STOP_MS,
               params={"save_config_on_stop": "true"}, note=vd_mode)
    if g.state() is not None:
        assert g.run("stop", timeout_ms=STOP_MS, params={"force_stop": "true"}).rc == 0
