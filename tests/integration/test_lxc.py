"""PyLXCDomain against real libvirt-lxc containers (busybox root filesystem, lxc:///system).

Every test checks the agent's exit code and what libvirt and the process table say after it:
the domain's state read back at lxc:///system, and the container's libvirt_lxc controller
(and what runs below it) found by pid."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness import AgentResult, Libvirtd, domain_facts, domain_state, run_agent
from tests.harness.agent import agent_environment, run_agent_argv
from tests.harness.common import (
    AGENTS_DIR,
    REPO_ROOT,
    VENV_PYTHON,
    children,
    descendants,
    pid_alive,
    read_cmdline,
    wait_until,
)
from tests.harness.lxc import LXC_URI, Container, freeze, thaw_frozen

from .conftest import MakeContainer

pytestmark = pytest.mark.integration

AGENT = "PyLXCDomain"
OP_MS = 20000
PROBE_BOUND_S = 1.0


def run(c: Container, action: str, tmp_path: Path, *, timeout_ms: int | None = OP_MS,
        interval_ms: int | None = None, **params: str) -> AgentResult:
    return run_agent(action, {"config": str(c.config), **params}, timeout_ms=timeout_ms,
                     interval_ms=interval_ms, instance=c.name, state_dir=tmp_path / "state",
                     agent=AGENT)


def state(c: Container) -> str | None:
    return domain_state(c.name, uri=LXC_URI)


def start_ready(c: Container, tmp_path: Path) -> int:
    """Start through the agent, wait for the init to be ready; the controller's pid."""
    r = run(c, "start", tmp_path)
    assert r.rc == 0, r
    assert state(c) == "running"
    assert c.wait_ready(10.0), c.events()
    [controller] = c.controller_pids()
    return controller


def assert_gone(c: Container, controller: int, *, what: str) -> None:
    assert state(c) is None, f"{what}: libvirt still lists {c.name}: {state(c)}"
    # A killed controller may linger as a zombie for a moment until libvirtd reaps it.
    assert wait_until(lambda: not pid_alive(controller), 3.0), \
        f"{what}: controller {controller} still runs"
    assert c.controller_pids() == [], f"{what}: a controller of {c.name} runs"


def test_start_monitor_stop(make_container: MakeContainer, tmp_path: Path) -> None:
    c = make_container("graceful")
    probe = run(c, "monitor", tmp_path, interval_ms=0)
    assert probe.rc == 7, probe
    assert state(c) is None

    controller = start_ready(c, tmp_path)
    facts = domain_facts(c.name, uri=LXC_URI)
    assert facts is not None and facts.state == "running"
    assert not facts.persistent and not facts.autostart, facts
    assert facts.id == controller, "libvirt-lxc's domain id is its controller's pid"
    init = descendants(controller)
    assert init, "the container's init runs below its controller"

    mon = run(c, "monitor", tmp_path, interval_ms=10000)
    assert mon.rc == 0, mon
    probe = run(c, "monitor", tmp_path, interval_ms=0)
    assert probe.rc == 0, probe

    again = run(c, "start", tmp_path)
    assert again.rc == 0, again
    assert c.controller_pids() == [controller], "a second start must not restart it"
    assert c.boots() == 1

    stop = run(c, "stop", tmp_path)
    assert stop.rc == 0, stop
    assert_gone(c, controller, what="stop")
    # libvirt-lxc's default shutdown used the container's /dev/initctl: a clean shutdown.
    assert "STOP initctl" in c.events(), c.events()
    assert stop.elapsed_s < 5.0, stop
    assert not any(pid_alive(p) for p in init)

    stop2 = run(c, "stop", tmp_path)
    assert stop2.rc == 0, stop2
    probe = run(c, "monitor", tmp_path, interval_ms=0)
    assert probe.rc == 7, probe
    mon = run(c, "monitor", tmp_path, interval_ms=10000)
    assert mon.rc == 7, mon


def test_stop_signal_mode(make_container: MakeContainer, tmp_path: Path) -> None:
    c = make_container("graceful")
    controller = start_ready(c, tmp_path)
    stop = run(c, "stop", tmp_path, shutdown_mode="signal")
    assert stop.rc == 0, stop
    assert_gone(c, controller, what="stop")
    assert "STOP signal" in c.events(), c.events()
    assert stop.elapsed_s < 5.0, stop


@pytest.mark.parametrize("mode", ["", "signal", "initctl,signal"])
def test_stop_init_ignoring_shutdown(make_container: MakeContainer, tmp_path: Path,
                                     mode: str) -> None:
    c = make_container("ignore")
    controller = start_ready(c, tmp_path)
    t0 = time.monotonic()
    stop = run(c, "stop", tmp_path, timeout_ms=20000, shutdown_mode=mode)
    assert stop.rc == 0, stop
    assert time.monotonic() - t0 < 20.0, stop
    assert_gone(c, controller, what="stop")
    if "signal" in mode:
        # The request was re-sent during the graceful phase (libvirt's destroy adds one more
        # SIGTERM of its own before SIGKILL).
        assert c.events().count("IGNORED TERM") >= 2, c.events()
    assert "destroying domain" in stop.stderr, stop


def test_busybox_init_reboots_on_sigterm(make_container: MakeContainer, tmp_path: Path) -> None:
    """busybox init takes SIGTERM as reboot and libvirt-lxc starts the container again,
    even with on_reboot=destroy: the agent must notice and destroy it, not wait or lie."""
    c = make_container("busybox", on_reboot="destroy")
    controller = start_ready(c, tmp_path)
    stop = run(c, "stop", tmp_path, timeout_ms=60000, shutdown_mode="signal")
    assert stop.rc == 0, stop
    assert_gone(c, controller, what="stop")
    assert c.controller_pids() == []
    assert "STOP busybox-init" in c.events(), c.events()
    if c.boots() >= 2:
        # libvirt-lxc started the container again (the quirk, most runs): the agent noticed
        # within a few seconds, not after the ~40 s graceful phase of a 60 s timeout.
        assert "restarted instead of shutting down" in stop.stderr, stop
        assert stop.elapsed_s < 15.0, stop
    else:
        # Some runs libvirt-lxc does not restart it (a race inside libvirt): then the stop
        # went through the destroy and must say so.
        assert "destroying domain" in stop.stderr or "stopped" in stop.stderr, stop


def test_force_stop(make_container: MakeContainer, tmp_path: Path) -> None:
    c = make_container("graceful")
    controller = start_ready(c, tmp_path)
    stop = run(c, "stop", tmp_path, force_stop="true")
    assert stop.rc == 0, stop
    assert_gone(c, controller, what="force stop")
    # libvirt's destroy itself sends SIGTERM before SIGKILL (the init may log "STOP signal"),
    # but the agent must not have asked for a shutdown.
    assert "to shut down" not in stop.stderr, stop
    assert stop.elapsed_s < 5.0, stop


def test_destroy_with_processes_refusing_to_die(make_container: MakeContainer,
                                                tmp_path: Path) -> None:
    """One process of the container is frozen (as if stuck in the kernel): libvirt's destroy
    spends ~9 s, reports "Some processes refused to die", and then calls the container shut
    off. A process of the container still exists: stop does not say 0 while one does (issue
    13: 0 only when none is left; it used to say 0 here). Once the process can die (thawed,
    its SIGKILL pending), a second stop says 0."""
    c = make_container("graceful")
    controller = start_ready(c, tmp_path)
    [init] = children(controller)
    # The init's long-lived helper (its /dev/initctl reader), not init itself.
    [victim] = [p for p in children(init) if read_cmdline(p) == ["/bin/sh", "/init-graceful"]]
    freeze(c.name, [victim])
    t0 = time.monotonic()
    stop = run(c, "stop", tmp_path, timeout_ms=20000, force_stop="true")
    assert time.monotonic() - t0 < 20.0, stop
    assert stop.rc == 1, stop
    assert "still runs" in (stop.reason or "") and str(victim) in (stop.reason or ""), stop
    assert pid_alive(victim)
    assert not pid_alive(controller)
    thaw_frozen(c.name)
    again = run(c, "stop", tmp_path, timeout_ms=20000, force_stop="true")
    assert again.rc == 0, again
    assert wait_until(lambda: not pid_alive(victim), 5.0)
    assert_gone(c, controller, what="stop")


def test_stop_with_whole_container_frozen(make_container: MakeContainer,
                                          tmp_path: Path) -> None:
    """Nothing of the container can die (controller included): stop must not report
    success (a failed stop fences the host), and must still answer inside its timeout."""
    c = make_container("graceful")
    controller = start_ready(c, tmp_path)
    freeze(c.name)
    t0 = time.monotonic()
    stop = run(c, "stop", tmp_path, timeout_ms=20000, force_stop="true")
    assert time.monotonic() - t0 < 20.0, stop
    assert stop.rc == 1, stop
    assert stop.reason, stop
    assert pid_alive(controller)


def test_probe_with_libvirtd_stopped(libvirtd: Libvirtd, make_container: MakeContainer,
                                     tmp_path: Path) -> None:
    running = make_container("graceful")
    absent = make_container("graceful")
    controller = start_ready(running, tmp_path)

    libvirtd.stop(keep_virtlogd=True)
    try:
        assert not libvirtd.is_running
        assert pid_alive(controller), "stopping libvirtd must leave the container running"
        p_run = run(running, "monitor", tmp_path, interval_ms=0)
        assert p_run.rc == 0, p_run
        assert p_run.elapsed_s < PROBE_BOUND_S, p_run
        assert "libvirt_lxc" in p_run.stderr or str(controller) in p_run.stderr, p_run

        p_abs = run(absent, "monitor", tmp_path, interval_ms=0)
        assert p_abs.rc == 7, p_abs
        assert p_abs.reason, p_abs
        assert p_abs.elapsed_s < PROBE_BOUND_S, p_abs

        rec = run(running, "monitor", tmp_path, interval_ms=10000)
        assert rec.rc == 0, rec
        assert pid_alive(controller), "the monitor must not touch the container"
    finally:
        libvirtd.start()

    # libvirtd reconnects to the controller it left running.
    assert wait_until(lambda: state(running) == "running", 10.0), state(running)
    assert running.controller_pids() == [controller]
    assert state(absent) is None
    stop = run(running, "stop", tmp_path, force_stop="true")
    assert stop.rc == 0, stop
    assert_gone(running, controller, what="stop after libvirtd restart")


def test_stop_with_libvirtd_stopped(libvirtd: Libvirtd, make_container: MakeContainer,
                                    tmp_path: Path) -> None:
    c = make_container("graceful")
    controller = start_ready(c, tmp_path)
    init = descendants(controller)
    libvirtd.stop(keep_virtlogd=True)
    try:
        stop = run(c, "stop", tmp_path, timeout_ms=20000)
        assert stop.rc == 0, stop
        assert stop.elapsed_s < 20.0, stop
        assert wait_until(lambda: not pid_alive(controller), 3.0), "controller survived"
        assert not any(pid_alive(p) for p in init), "container processes survived"
    finally:
        libvirtd.start()
    # Quirk of libvirt-lxc 9.0: the restarted daemon cannot reconnect to the dead container
    # and keeps it listed as a shut-off transient domain, which blocks any new start of the
    # name ("already being started") until something destroys it.
    assert state(c) in (None, "shut off"), state(c)
    mon = run(c, "monitor", tmp_path, interval_ms=0)
    assert mon.rc == 7, mon
    start = run(c, "start", tmp_path)
    assert start.rc == 0, start
    assert state(c) == "running"
    [controller2] = c.controller_pids()
    assert controller2 != controller
    stop = run(c, "stop", tmp_path, force_stop="true")
    assert stop.rc == 0, stop
    assert_gone(c, controller2, what="stop after restart")


def test_a_container_whose_controller_died_while_libvirtd_was_down(
        libvirtd: Libvirtd, make_container: MakeContainer, tmp_path: Path) -> None:
    """Issue 13 #4. The container's libvirt_lxc controller is killed (OOM, crash) while
    libvirtd is down: init and its children run on, re-parented, and the restarted libvirtd
    reports the container shut off. The agent believed libvirt: probe 7 and stop 0 while they
    ran. Now a probe finds the container's processes (by init's LIBVIRT_LXC_* environment and
    its pid namespace) and says 1, and stop kills every one of them before saying 0."""
    c = make_container("graceful")
    controller = start_ready(c, tmp_path)
    inside = descendants(controller)
    assert inside, "the container's init runs below its controller"
    libvirtd.stop(keep_virtlogd=True)
    try:
        os.kill(controller, 9)
        assert wait_until(lambda: not pid_alive(controller), 5.0)
    finally:
        libvirtd.start()
    survivors = [p for p in inside if pid_alive(p)]
    assert survivors, "the container died with its controller: nothing to find"
    assert state(c) in (None, "shut off"), state(c)

    try:
        probe = run(c, "monitor", tmp_path, interval_ms=0)
        assert probe.rc == 1, probe
        assert "still run here" in (probe.reason or ""), probe
        stop = run(c, "stop", tmp_path)
        assert stop.rc == 0, stop
        assert wait_until(lambda: not any(pid_alive(p) for p in survivors), 5.0), \
            f"container processes survived the stop: {[p for p in survivors if pid_alive(p)]}"
        after = run(c, "monitor", tmp_path, interval_ms=0)
        assert after.rc == 7, after
    finally:
        # The harness finds container processes below the controller, which is gone.
        for pid in survivors:
            if pid_alive(pid):
                os.kill(pid, 9)


def probe_on_another_host(c: Container, state_dir: Path) -> AgentResult:
    """A probe as the node next door would run it, on a host that shares this kernel (as the
    cluster tests' nodes do): its own network namespace, and a /run/libvirt of its own in
    which no libvirtd listens. Both namespaces end with the agent's process."""
    env = agent_environment("monitor", {"config": str(c.config)}, timeout_ms=OP_MS,
                            interval_ms=0, instance=c.name, state_dir=state_dir, agent=AGENT)
    argv = ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs pyvd-other-host /run/libvirt && exec "$@"', "sh",
            str(VENV_PYTHON), str(AGENTS_DIR / AGENT), "monitor"]
    return run_agent_argv(argv, env, action="monitor", agent=AGENT, limit_s=OP_MS / 1000 + 10,
                          where=" on another host")


def test_a_container_of_another_host_sharing_the_kernel_is_not_ours(
        make_container: MakeContainer, tmp_path: Path) -> None:
    """Found by the two-node cluster test (fresh-clone CI): the nodes share one kernel, and
    the probe on the node that did not run guest2 found the container's processes by their
    LIBVIRT_LXC_* environment (issue 13 #4) and said 1; Pacemaker took guest2 for active on
    both nodes and recovered it (stopped, guest node fenced, started again). A container
    whose init is the child of a libvirt_lxc controller in another network namespace is that
    host's: the probe there says 7, here 0."""
    c = make_container("graceful")
    controller = start_ready(c, tmp_path)
    other = probe_on_another_host(c, tmp_path / "other-host")
    assert other.rc == 7, other
    here = run(c, "monitor", tmp_path, interval_ms=0)
    assert here.rc == 0, here
    assert pid_alive(controller) and state(c) == "running"
    stop = run(c, "stop", tmp_path)
    assert stop.rc == 0, stop
    assert_gone(c, controller, what="stop")


QEMU_XML = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64'>hvm</type></os>
</domain>
"""


def test_non_lxc_domain_rejected(make_container: MakeContainer, tmp_path: Path) -> None:
    c = make_container("graceful")
    c.config.write_text(QEMU_XML.format(name=c.name))
    for action in ("validate-all", "start"):
        r = run(c, action, tmp_path)
        assert r.rc == 6, r
        assert r.reason and "qemu" in r.reason and "lxc" in r.reason, r
    assert state(c) is None
    assert domain_state(c.name) is None, "nothing may be started on qemu:///system either"

    ok = make_container("graceful")
    r = run(ok, "validate-all", tmp_path)
    assert r.rc == 0, r


OCF_DIR = Path("/usr/lib/ocf/resource.d/custom")
INSTALLED = ("PyVirtualDomain", "PyLXCDomain")


def test_ocf_tester(make_container: MakeContainer, tmp_path: Path) -> None:
    tester = shutil.which("ocf-tester", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if tester is None:
        pytest.fail("ocf-tester is not installed (resource-agents); it cannot run here")
    if shutil.which("xmllint") is None:
        pytest.fail("xmllint is missing (libxml2-utils): ocf-tester fails every agent without")
    c = make_container("graceful")
    before = {a: (OCF_DIR / a).exists() for a in INSTALLED}
    dir_existed = OCF_DIR.is_dir()
    try:
        make = subprocess.run(["make", "-C", str(REPO_ROOT), "install-agents"],
                              capture_output=True, text=True, timeout=60)
        assert make.returncode == 0, make.stdout + make.stderr
        agent = OCF_DIR / AGENT
        assert agent.read_text().startswith(f"#!{REPO_ROOT / '.venv' / 'bin' / 'python'}")
        t0 = time.monotonic()
        proc = subprocess.run([tester, "-n", "t", "-o", f"config={c.config}", str(agent)],
                              capture_output=True, text=True, timeout=300, cwd="/",
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"})
        elapsed = time.monotonic() - t0
        assert proc.returncode == 0, f"ocf-tester rc {proc.returncode}:\n{proc.stdout}\n" \
                                     f"{proc.stderr}"
        assert "passed all tests" in proc.stdout, proc.stdout
        assert elapsed < 60, proc.stdout
    finally:
        for a, existed in before.items():
            if not existed:
                try:
                    (OCF_DIR / a).unlink()
                except FileNotFoundError:
                    pass
        if not dir_existed:
            try:
                OCF_DIR.rmdir()
            except OSError:
                pass
    assert state(c) is None, "ocf-tester ends with the resource stopped"
    assert c.controller_pids() == []
    assert os.path.exists(c.config)
