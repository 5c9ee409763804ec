"""Our agents as ordinary cluster resources (no guest node): a tiny TCG qemu guest under
ocf:custom:PyVirtualDomain and a busybox container under ocf:custom:PyLXCDomain.

Pacemaker starts each one, its recurring monitor notices the guest dying behind the cluster's
back and the cluster recovers it, ``crm_resource --force-check`` / ``--force-stop`` give the
right answers, and disabling stops it; each outcome is read back from crm_mon, the CIB,
libvirt and the process table."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.harness.cluster import DOMAIN_PREFIX, GUEST_NODE, ClusterNode, ClusterStatus
from tests.harness.common import descendants, pid_alive, wait_until
from tests.harness.domains import domain_facts, kill_qemu, qemu_pids
from tests.harness.guest import (
    ACPID_MARKER,
    SHUTDOWN_MARKER,
    build_artifacts,
    console_text,
    detect_virt_type,
    domain_xml,
)
from tests.harness.lxc import build_rootfs, new_container

pytestmark = pytest.mark.cluster

MONITOR_S = 5
START_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 60.0
RECOVERY_TIMEOUT_S = 90.0


@dataclass
class Case:
    rsc: str
    agent: str
    domain: str
    driver: str  # "qemu" or "lxc"
    params: dict[str, str]
    ready: Callable[[], bool]  # the guest can take a graceful shutdown request
    graceful_stops: Callable[[], int]  # shutdowns the guest itself saw (this boot/run)
    emulator_pids: Callable[[], list[int]]


def _qemu_case(node: ClusterNode) -> Case:
    artifacts = build_artifacts()
    virt_type = detect_virt_type(artifacts, uri=node.uri("qemu"))
    name = f"{DOMAIN_PREFIX}tcg"
    d = node.guests_dir / name
    d.mkdir(parents=True, exist_ok=True)
    console = d / "console.log"
    config = d / f"{name}.xml"
    config.write_text(domain_xml(name, "graceful", artifacts, virt_type, console))
    return Case(rsc="vm-tcg", agent="PyVirtualDomain", domain=name, driver="qemu",
                params={"config": str(config), "hypervisor": "qemu:///system"},
                ready=lambda: ACPID_MARKER in console_text(console),
                graceful_stops=lambda: console_text(console).count(SHUTDOWN_MARKER),
                emulator_pids=lambda: qemu_pids(name))


def _lxc_case(node: ClusterNode) -> Case:
    rootfs = build_rootfs()
    name = f"{DOMAIN_PREFIX}ct"
    c = new_container(node.guests_dir, name, "graceful", rootfs)

    def emulator_pids() -> list[int]:
        ctls = node.controller_pids(name)
        return ctls + [p for ctl in ctls for p in descendants(ctl)]

    return Case(rsc="ct-plain", agent="PyLXCDomain", domain=name, driver="lxc",
                params={"config": str(c.config), "hypervisor": "lxc:///system"},
                ready=lambda: bool(c.events()) and c.events()[-1] == "READY",
                graceful_stops=lambda: sum(1 for e in c.events() if e.startswith("STOP ")),
                emulator_pids=emulator_pids)


@pytest.fixture(params=["PyVirtualDomain", "PyLXCDomain"])
def case(request: pytest.FixtureRequest, cluster: ClusterNode) -> Iterator[Case]:
    c = _qemu_case(cluster) if request.param == "PyVirtualDomain" else _lxc_case(cluster)
    yield c
    # Leave the cluster empty for the next case (the module's teardown stops all anyway).
    try:
        cluster.set_meta(c.rsc, "is-managed", "true")
        cluster.set_meta(c.rsc, "target-role", "Stopped")
        cluster.wait_status(lambda st: c.rsc not in st.resources
                            or not st.resources[c.rsc].active, 60.0, f"{c.rsc} stopped")
        cluster.delete_resource(c.rsc)
    except Exception as exc:  # noqa: BLE001 - the module teardown cleans up anyway
        print(f"cleanup of {c.rsc}: {exc}")


def _running(node: ClusterNode, c: Case) -> bool:
    facts = domain_facts(c.domain, node.uri(c.driver))
    return facts is not None and facts.state == "running"


def _started(node: ClusterNode, rsc: str) -> Callable[[ClusterStatus], bool]:
    return lambda st: st.started_on(rsc) == (node.node_name,)


def _force(node: ClusterNode, what: str, rsc: str) -> tuple[int, str]:
    proc = node.crm_resource(f"--force-{what}", "--resource", rsc)
    return proc.returncode, proc.stdout + proc.stderr


def test_cluster_starts_monitors_stops(cluster: ClusterNode, case: Case) -> None:
    node, c = cluster, case
    t0 = time.monotonic()
    node.add_primitive(c.rsc, c.agent, c.params, monitor_interval=f"{MONITOR_S}s",
                       avoid_nodes=(GUEST_NODE,))
    node.wait_status(_started(node, c.rsc), START_TIMEOUT_S, f"{c.rsc} started")
    print(f"{c.rsc}: Started {time.monotonic() - t0:.1f}s after creation")
    facts = domain_facts(c.domain, node.uri(c.driver))
    assert facts is not None and facts.state == "running", facts
    assert not facts.persistent and not facts.autostart, facts
    st = node.status()
    assert st.started_on(c.rsc) == (node.node_name,), st.resources.get(c.rsc)
    assert st.resources[c.rsc].agent == f"ocf:custom:{c.agent}", st.resources[c.rsc]
    assert wait_until(c.ready, READY_TIMEOUT_S, 0.1), f"{c.domain} never became ready"

    # The recurring monitor runs and reports "running".
    def monitor_ok() -> bool:
        return any(op["operation"] == "monitor" and op.get("interval") == str(MONITOR_S * 1000)
                   and op["rc-code"] == "0" for op in node.operations(c.rsc))
    assert wait_until(monitor_ok, 2 * MONITOR_S + 5, 0.5), node.operations(c.rsc)

    # The guest dies behind the cluster's back: the monitor notices, the cluster recovers.
    victims = c.emulator_pids()
    assert victims
    if c.driver == "qemu":
        kill_qemu(c.domain)
    else:
        for pid in victims:  # the controller's death may take the container's first
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not any(pid_alive(p) for p in victims), 10.0, 0.05)
    t0 = time.monotonic()

    def failed_then_restarted(st: ClusterStatus) -> bool:
        failed = any(f.get("op_key", "").startswith(f"{c.rsc}_monitor") for f in st.failures)
        return failed and _started(node, c.rsc)(st) and bool(c.emulator_pids()) \
            and not any(p in victims for p in c.emulator_pids())

    st = node.wait_status(failed_then_restarted, RECOVERY_TIMEOUT_S,
                          f"{c.rsc}: monitor failure seen and recovered")
    print(f"{c.rsc}: recovered {time.monotonic() - t0:.1f}s after its emulator was killed")
    failure = next(f for f in st.failures if f.get("op_key", "").startswith(f"{c.rsc}_monitor"))
    # exitcode: the OCF code (its words, exitstatus, are "not running" in 2.1, "Not running" in 3.0)
    assert failure.get("exitcode") == "7", failure
    assert _running(node, c)
    node.cleanup(c.rsc)
    assert wait_until(c.ready, READY_TIMEOUT_S, 0.1), f"{c.domain} never became ready again"

    # crm_resource --force-check runs the agent's monitor here: running.
    rc, out = _force(node, "check", c.rsc)
    assert rc == 0, out

    # --force-stop on the unmanaged resource: the agent stops the guest for real.
    node.set_meta(c.rsc, "is-managed", "false")
    node.wait_status(lambda st: not st.resources[c.rsc].managed, 30.0, f"{c.rsc} unmanaged")
    before = c.emulator_pids()
    stops_before = c.graceful_stops()
    rc, out = _force(node, "stop", c.rsc)
    assert rc == 0, out
    assert domain_facts(c.domain, node.uri(c.driver)) is None
    assert wait_until(lambda: not any(pid_alive(p) for p in before), 10.0, 0.05)
    assert c.emulator_pids() == []
    assert c.graceful_stops() == stops_before + 1, f"{c.domain}: stop was not graceful"
    rc, out = _force(node, "check", c.rsc)
    assert rc == 7, out
    # Nothing starts it while the cluster does not manage it.
    time.sleep(MONITOR_S + 1)
    assert domain_facts(c.domain, node.uri(c.driver)) is None

    # Managed again: the cluster finds it stopped and starts it.
    node.set_meta(c.rsc, "is-managed", "true")
    node.cleanup(c.rsc)
    node.wait_status(lambda st: _started(node, c.rsc)(st) and st.resources[c.rsc].managed,
                     START_TIMEOUT_S, f"{c.rsc} started again")
    assert _running(node, c)
    assert wait_until(c.ready, READY_TIMEOUT_S, 0.1)

    # Disabled: stopped, and gone from libvirt.
    node.set_meta(c.rsc, "target-role", "Stopped")
    node.wait_status(lambda st: st.resources[c.rsc].role == "Stopped"
                     and not st.resources[c.rsc].active, 60.0, f"{c.rsc} stopped")
    assert domain_facts(c.domain, node.uri(c.driver)) is None
    assert c.emulator_pids() == []
    ops = node.operations(c.rsc)
    last_stop = [op for op in ops if op["operation"] == "stop"]
    assert last_stop and last_stop[-1]["rc-code"] == "0", ops
