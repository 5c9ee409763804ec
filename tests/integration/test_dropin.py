"""A resource that worked with VirtualDomain keeps working when only its type changes (issue
21), on the real libvirtd with real (tiny, TCG) qemu guests. Each test failed on the code
before its fix; VirtualDomain is run on the same guest where the comparison says something
(recorded in the fault table's build/faults.json, never asserted)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.harness import (
    ACPID_MARKER,
    POWERBUTTON_MARKER,
    SHUTDOWN_MARKER,
    AgentResult,
    GuestResource,
)
from tests.harness.agent import run_agent_argv
from tests.harness.common import AGENTS_DIR, CLEAN_PATH, VENV_PYTHON

from .conftest import MakeGuest
from .test_faults import measure_vd, record

pytestmark = pytest.mark.integration

START_MS = 60000
STOP_MS = 60000
MONITOR_MS = 20000
RECURRING_MS = 10000
BOOT_S = 60.0


def _started(g: GuestResource, marker: str = ACPID_MARKER,
             params: dict[str, str] | None = None) -> AgentResult:
    r = g.run("start", timeout_ms=START_MS, params=params)
    assert r.rc == 0, r
    assert g.wait_console(marker, BOOT_S), g.console()
    return r


@pytest.mark.parametrize("params", [
    {"migrate_options": "--timeout 60 --xml /nonexistent-on-this-node.xml"},
    {"migrate_options": "--persistent --undefinesource", "migration_user": "svc.ha"},
    {"migration_user": "Admin", "migration_transport": "SSH"},
    {"migrate_options": "--dname web2"},
    {"migrate_options": "--no-such-option", "force_stop": "maybe"},
])
def test_values_virtualdomain_reads_only_in_migrate_to_never_stop_a_start(
        guest: GuestResource, params: dict[str, str]) -> None:
    """Issue 21 #1 and #6: these made start answer 6, so Pacemaker stopped the resource and
    started it nowhere; VirtualDomain reads them only in migrate_to. Now the guest starts and
    is monitored (a warning says the migration would fail); validate-all still refuses what
    cannot work."""
    g = guest
    start = _started(g, params=params)
    monitor = g.run("monitor", timeout_ms=MONITOR_MS, interval_ms=RECURRING_MS, params=params)
    assert monitor.rc == 0, monitor
    stop = g.run("stop", timeout_ms=STOP_MS, params=params)
    assert stop.rc == 0, stop
    assert g.state() is None
    validate = g.run("validate-all", timeout_ms=5000, params=params)
    refused = "--dname" in params.get("migrate_options", "") or "--no-such" in params.get(
        "migrate_options", "")
    assert validate.rc == (6 if refused else 0), validate
    if refused:
        assert "a live migration of this resource will fail" in start.stderr, start


def _by_hand(action: str, config: Path, *extra: str) -> AgentResult:
    return run_agent_argv([str(VENV_PYTHON), str(AGENTS_DIR / "PyVirtualDomain"), action,
                           "--config", str(config), "--timeout", "60", *extra],
                          {"PATH": CLEAN_PATH, "HA_RSCTMP": str(config.parent / "by-hand")},
                          action=action, agent="PyVirtualDomain", limit_s=90)


def test_runs_by_hand_keep_each_domain_apart(make_guest: MakeGuest) -> None:
    """Issue 21 #4: without OCF_RESOURCE_INSTANCE every run by hand used one state file: a
    monitor of vm1 recorded it, and `stop --config vm2.xml` then stopped vm1 too ("this agent
    started vm1" although it had only monitored it)."""
    vm1, vm2 = make_guest("graceful"), make_guest("graceful")
    (vm1.config.parent / "by-hand").mkdir(exist_ok=True)
    assert _by_hand("start", vm1.config).rc == 0
    assert vm1.wait_console(ACPID_MARKER, BOOT_S), vm1.console()
    assert _by_hand("monitor", vm1.config, "--interval", "10").rc == 0
    stop2 = _by_hand("stop", vm2.config)
    assert stop2.rc == 0, stop2
    assert vm1.state() == "running", f"stopping vm2 by hand stopped vm1: {stop2}"
    assert "this agent started" not in stop2.stderr
    records = sorted(p.name for p in (vm1.config.parent / "by-hand").glob("*.state"))
    assert records == [f"PyVirtualDomain-{vm1.name}.state"], records
    assert _by_hand("stop", vm1.config).rc == 0
    assert vm1.state() is None


def test_a_shutdown_mode_the_guest_cannot_take_falls_back_to_acpi(guest: GuestResource) -> None:
    """Issue 21 #5: shutdown_mode=agent on a guest without a guest agent destroyed it at once
    (VirtualDomain never applied shutdown_mode: its stop asked by ACPI). Now the stop falls
    back to the default method and the guest shuts itself down; validate-all level 10 warns."""
    g = guest
    params = {"shutdown_mode": "agent"}
    _started(g, params=params)
    warned = g.run("validate-all", timeout_ms=5000, params=params,
                   env_extra={"OCF_CHECK_LEVEL": "10"})
    assert warned.rc == 0 and "shutdown_mode agent cannot work" in warned.stderr, warned
    stop = g.run("stop", timeout_ms=STOP_MS, params=params)
    record("shutdown-mode-fallback", "stop with shutdown_mode=agent, no guest agent", stop,
           f"console shows the ACPI shutdown: {SHUTDOWN_MARKER in g.console()}")
    assert stop.rc == 0, stop
    assert "falling back to the hypervisor's default shutdown method" in stop.stderr, stop
    assert "destroying domain" not in stop.stderr, stop
    console = g.console()
    assert POWERBUTTON_MARKER in console and SHUTDOWN_MARKER in console, console
    assert g.state() is None and g.qemu_pids() == []


def test_compare_shutdown_mode_agent_without_agent(guest: GuestResource) -> None:
    g = guest
    _started(g)
    measure_vd("shutdown-mode-fallback", "VirtualDomain: stop with shutdown_mode=agent, no guest "
               "agent", g, "stop", timeout_ms=STOP_MS, params={"shutdown_mode": "agent"},
               note=lambda: f"console shows the ACPI shutdown: {SHUTDOWN_MARKER in g.console()}")
    if g.state() is not None:
        assert g.run("stop", timeout_ms=STOP_MS, params={"force_stop": "true"}).rc == 0


def test_the_monitor_saves_a_definition_changed_while_running(guest: GuestResource) -> None:
    """Issue 21 #7: VirtualDomain's save_config_on_stop also saves on every monitor, so a
    change made to the running guest survives a fenced node; the agent saved only on stop.
    Now a recurring monitor saves the definition when it changed (and only then)."""
    g = guest
    params = {"save_config_on_stop": "true"}
    _started(g, params=params)
    assert g.run("monitor", timeout_ms=MONITOR_MS, interval_ms=RECURRING_MS,
                 params=params).rc == 0
    mtime = g.config.stat().st_mtime_ns
    assert g.run("monitor", timeout_ms=MONITOR_MS, interval_ms=RECURRING_MS,
                 params=params).rc == 0
    assert g.config.stat().st_mtime_ns == mtime, "rewritten although nothing changed"
    note = "changed while running, kept after a fence"
    done = subprocess.run(["virsh", "-c", g.uri, "desc", g.name, "--live", "--new-desc", note],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    m = g.run("monitor", timeout_ms=MONITOR_MS, interval_ms=RECURRING_MS, params=params)
    assert m.rc == 0, m
    assert f"<description>{note}</description>" in g.config.read_text()
    assert g.run("stop", timeout_ms=STOP_MS, params={"force_stop": "true"}).rc == 0


def test_a_value_libvirt_rejects_in_the_xml_is_wrong_everywhere(guest: GuestResource) -> None:
    """Issue 21 #8: <memory unit='XB'> got 5 ("this host cannot run it"), which bans the
    resource from this node only and lets Pacemaker try the next; it is wrong on every node."""
    g = guest
    text = g.config.read_text()
    g.config.write_text(text.replace("<memory unit='MiB'>128</memory>",
                                     "<memory unit='XB'>128</memory>"))
    r = g.run("start", timeout_ms=START_MS)
    assert r.rc == 6, r
    assert "libvirt rejects config" in (r.reason or "") and "XB" in (r.reason or ""), r
    assert g.state() is None


def test_monitor_scripts_named_by_path_lookup_pass_validate_all(guest: GuestResource) -> None:
    """Issue 21 #8: monitor_scripts=true passed the monitor (found in PATH, as VirtualDomain's
    shell finds it) but failed validate-all (only files were accepted)."""
    g = guest
    params = {"monitor_scripts": "true"}
    assert g.run("validate-all", timeout_ms=5000, params=params).rc == 0
    _started(g, params=params)
    assert g.run("monitor", timeout_ms=MONITOR_MS, interval_ms=RECURRING_MS,
                 params=params).rc == 0
    bad = g.run("validate-all", timeout_ms=5000, params={"monitor_scripts": "no-such-check"})
    assert bad.rc == 5, bad
    assert g.run("stop", timeout_ms=STOP_MS, params={"force_stop": "true"}).rc == 0
