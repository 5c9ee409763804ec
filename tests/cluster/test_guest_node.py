"""A libvirt-lxc container of ours as a Pacemaker guest node, under a real cluster.

The container (resource vm-guest1, ocf:custom:PyLXCDomain, meta remote-node=guest1) runs
pacemaker-remoted; an ocf:pacemaker:Dummy (dummy-g1) may run on guest1 only. Each test reads
the outcome back from crm_mon, the CIB, libvirt, the Pacemaker log and the process table.
The tests run in file order and each brings the guest node back online first."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from tests.harness.cluster import (
    GUEST_ADDRESS,
    GUEST_DOMAIN,
    GUEST_NODE,
    ClusterNode,
    ClusterStatus,
    Result,
    find_in_order,
)
from tests.harness.common import descendants, pid_alive, wait_until
from tests.harness.domains import domain_facts

pytestmark = pytest.mark.cluster

VM = "vm-guest1"
DUMMY = "dummy-g1"
ONLINE_TIMEOUT_S = 90.0
# Recovery of a guest node: remote connection failure noticed, stop, start, reconnect.
RECOVERY_TIMEOUT_S = 120.0
FENCED_WATCH_S = 10.0


def _guest_up(node: str) -> Callable[[ClusterStatus], bool]:
    def up(st: ClusterStatus) -> bool:
        return (st.online(GUEST_NODE) and st.started_on(VM) == (node,)
                and st.started_on(DUMMY) == (GUEST_NODE,))
    return up


@pytest.fixture(scope="module")
def guest_node(cluster: ClusterNode) -> Iterator[ClusterNode]:
    """vm-guest1 (the guest-node container) and dummy-g1 on guest1, both started."""
    config = cluster.write_guest_node_xml()
    cluster.add_primitive(
        VM, "PyLXCDomain",
        {"config": str(config), "hypervisor": "lxc:///system", "shutdown_mode": "signal"},
        meta={"remote-node": GUEST_NODE, "remote-addr": GUEST_ADDRESS,
              "remote-connect-timeout": "30s"},
        avoid_nodes=(GUEST_NODE,))
    cluster.wait_status(lambda st: st.online(GUEST_NODE), ONLINE_TIMEOUT_S,
                        f"guest node {GUEST_NODE} online")
    cluster.add_primitive(DUMMY, "Dummy", {}, provider="pacemaker", monitor_interval="10s",
                          op_timeout="20s", avoid_nodes=(cluster.node_name,),
                          prefer_node=GUEST_NODE)
    cluster.wait_status(_guest_up(cluster.node_name), ONLINE_TIMEOUT_S,
                        f"{DUMMY} started on {GUEST_NODE}")
    yield cluster


def ensure_guest_online(node: ClusterNode) -> ClusterStatus:
    """Bring the guest node back as an earlier test may have left it."""
    st = node.status()
    if _guest_up(node.node_name)(st):
        return st
    for rsc in (VM, DUMMY):
        node.set_meta(rsc, "is-managed", "true")
        node.set_meta(rsc, "target-role", "Started")
        node.cleanup(rsc)
    return node.wait_status(_guest_up(node.node_name), RECOVERY_TIMEOUT_S,
                            f"{GUEST_NODE} online with {DUMMY}")


def _netns(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def test_guest_node_online_with_dummy(guest_node: ClusterNode) -> None:
    node = guest_node
    # crm_mon's XML (its text differs between Pacemaker versions): guest1 is an online guest
    # node run by vm-guest1 (text: "GuestOnline: [ guest1 ]"), vm-guest1 runs on the cluster
    # node ("guest1@pyvd-node1") and the Dummy on guest1.
    st = node.status()
    g = st.nodes[GUEST_NODE]
    assert g.type in ("remote", "guest") and g.online and g.container == VM, g
    assert st.started_on(VM) == (node.node_name,), st.resources[VM]
    assert st.resources[VM].agent == "ocf:custom:PyLXCDomain", st.resources[VM]
    assert st.started_on(DUMMY) == (GUEST_NODE,), st.resources[DUMMY]
    assert st.resources[DUMMY].agent == "ocf:pacemaker:Dummy", st.resources[DUMMY]

    # libvirt: the container runs, transient, no autostart (fencing the host stops it).
    facts = domain_facts(GUEST_DOMAIN, node.uri("lxc"))
    assert facts is not None and facts.state == "running", facts
    assert not facts.persistent and not facts.autostart, facts

    # pacemaker-remoted runs inside the container, in its own network namespace.
    remoted = node.remoted_pid()
    assert remoted is not None, "no pacemaker-remoted below the container's init"
    anchor = node.pid("anchor")
    assert anchor is not None
    assert _netns(remoted) != _netns(anchor) != _netns(os.getpid())

    # The Dummy ran inside the guest: its state file is in the container's private /run,
    # not in the node's.
    in_guest = f"/proc/{remoted}/root/run/Dummy-{DUMMY}.state"
    assert os.path.exists(in_guest), f"{in_guest} missing"
    assert not (node.run_dir / f"Dummy-{DUMMY}.state").exists()

    # The agent's own log lines reached Pacemaker's log through the executor.
    log = node.pacemaker_log_text()
    assert f"starting domain {GUEST_DOMAIN}" in log, node.log_tail()


def test_kill_remoted_recovers_guest_through_agent(guest_node: ClusterNode) -> None:
    node = guest_node
    ensure_guest_online(node)
    init_before = node.container_init_pid()
    remoted = node.remoted_pid()
    assert init_before is not None and remoted is not None
    boots_before = sum(1 for e in node.guest_events() if e.startswith("BOOT "))
    log_offset = len(node.pacemaker_log_text())
    ops_before = {op["call-id"] for op in node.operations(VM)}

    t0 = time.monotonic()
    os.kill(remoted, signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(remoted), 5.0, 0.02)

    def recovered(st: ClusterStatus) -> bool:
        init = node.container_init_pid()
        return init is not None and init != init_before and bool(_guest_up(node.node_name)(st))

    node.wait_status(recovered, RECOVERY_TIMEOUT_S,
                     f"{GUEST_NODE} recovered after pacemaker-remoted was killed")
    took = time.monotonic() - t0
    print(f"guest node recovered {took:.1f}s after kill -9 of pacemaker-remoted")

    # The cluster recovered the guest through our agent: stop (graceful: the init got
    # SIGTERM), then start, a new container init and a new boot.
    events = node.guest_events()
    boots = [i for i, e in enumerate(events) if e.startswith("BOOT ")]
    assert len(boots) == boots_before + 1, events
    assert "STOP signal" in events[boots[-2]:boots[-1]], events
    assert not pid_alive(init_before)

    # Pacemaker fenced the guest by recovering its resource, through our agent, in order.
    log = node.pacemaker_log_text()[log_offset:]
    missing = find_in_order(log, [
        rf"Guest node {GUEST_NODE} will be fenced \(by recovering its guest resource {VM}\)",
        rf"{VM}_stop_0\[\d+\] error output \[ PyLXCDomain\({VM}\)\[\d+\]: INFO: asked "
        rf"domain {GUEST_DOMAIN} to shut down \(signal\)",
        Result("stop", VM, node.node_name, rc=0),
        rf"{VM}_start_0\[\d+\] error output \[ PyLXCDomain\({VM}\)\[\d+\]: INFO: "
        rf"starting domain {GUEST_DOMAIN}",
        Result("start", VM, node.node_name, rc=0)])
    assert missing is None, f"not in Pacemaker's log: {missing}\n{log[-6000:]}"
    # The CIB's history: the last non-recurring operation is a new, successful start.
    last = [op for op in node.operations(VM) if op.get("id") == f"{VM}_last_0"]
    assert len(last) == 1 and last[0]["operation"] == "start" and last[0]["rc-code"] == "0", last
    assert last[0]["call-id"] not in ops_before, last


def test_host_fencing_leaves_guest_stopped_until_cluster_starts_it(
        guest_node: ClusterNode) -> None:
    """Simulated fencing of the host: libvirtd and the container (its libvirt_lxc
    controller and every process below it) SIGKILLed at once. With the resource unmanaged,
    nothing may bring the guest back; once managed again, the cluster does."""
    node = guest_node
    ensure_guest_online(node)
    node.set_meta(VM, "is-managed", "false")
    node.wait_status(lambda st: not st.resources[VM].managed, 30.0, f"{VM} unmanaged")
    boots_before = sum(1 for e in node.guest_events() if e.startswith("BOOT "))

    libvirtd = node.pid("libvirtd")
    controllers = node.controller_pids(GUEST_DOMAIN)
    assert libvirtd is not None and len(controllers) == 1
    victims = [libvirtd, *controllers]
    for ctl in controllers:
        victims += descendants(ctl)
    for pid in victims:  # the controller's death may take the container's first
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not any(pid_alive(p) for p in victims), 10.0, 0.05), \
        [p for p in victims if pid_alive(p)]

    log_offset = len(node.pacemaker_log_text())
    node.restart_libvirtd()
    t0 = time.monotonic()
    seen: set[str] = set()
    while time.monotonic() - t0 < FENCED_WATCH_S:
        # libvirt-lxc's reconnect after its restart may keep a dead transient domain as
        # "shut off" (its status file in /run/libvirt/lxc survived: no real reboot here):
        # acceptable, as long as it neither runs nor is persistent nor autostarts.
        facts = domain_facts(GUEST_DOMAIN, node.uri("lxc"))
        if facts is not None:
            assert facts.state == "shut off" and not facts.persistent \
                and not facts.autostart, facts
        seen.add("absent" if facts is None else facts.state)
        assert node.controller_pids(GUEST_DOMAIN) == []
        time.sleep(0.5)
    print(f"after the simulated fencing libvirt showed {GUEST_DOMAIN} as: {sorted(seen)}")
    assert sum(1 for e in node.guest_events() if e.startswith("BOOT ")) == boots_before
    assert node.list_domains("qemu") == {}

    # The agent reports the truth: not running.
    check = node.crm_resource("--force-check", "--resource", VM)
    assert check.returncode == 7, check.stdout + check.stderr
    st = node.status()
    assert not st.online(GUEST_NODE), st.nodes

    # The cluster's own recurring monitor (still run for an unmanaged resource) said so.
    assert wait_until(lambda: find_in_order(node.pacemaker_log_text()[log_offset:], [
        Result("monitor", VM, node.node_name, rc=7)]) is None, 15.0, 0.5), node.log_tail()

    # Only the cluster starts it again.
    node.set_meta(VM, "is-managed", "true")
    node.cleanup(VM)
    node.wait_status(_guest_up(node.node_name), RECOVERY_TIMEOUT_S,
                     f"{GUEST_NODE} back after the cluster manages {VM} again")
    log = node.pacemaker_log_text()[log_offset:]
    if "shut off" in seen:
        # ... and our agent cleared libvirt's dead transient leftover on the way.
        assert f"removing the leftover shut-off transient domain {GUEST_DOMAIN}" in log, log[-6000:]
    assert find_in_order(log, [Result("start", VM, node.node_name, rc=0)]) is None, log[-6000:]
    facts = domain_facts(GUEST_DOMAIN, node.uri("lxc"))
    assert facts is not None and facts.state == "running" and not facts.persistent, facts
    assert sum(1 for e in node.guest_events() if e.startswith("BOOT ")) == boots_before + 1


def test_disable_stops_container(guest_node: ClusterNode) -> None:
    node = guest_node
    ensure_guest_online(node)
    controllers = node.controller_pids(GUEST_DOMAIN)
    assert len(controllers) == 1
    node.set_meta(VM, "target-role", "Stopped")
    st = node.wait_status(lambda st: st.resources[VM].role == "Stopped"
                          and not st.resources[VM].active and not st.online(GUEST_NODE),
                          60.0, f"{VM} stopped")
    assert not st.resources[DUMMY].active, st.resources[DUMMY]
    # libvirt read back: the transient container is gone, and so are its processes.
    assert domain_facts(GUEST_DOMAIN, node.uri("lxc")) is None
    assert GUEST_DOMAIN not in node.list_domains("lxc")
    assert wait_until(lambda: not any(pid_alive(p) for p in controllers), 5.0)
    assert node.controller_pids(GUEST_DOMAIN) == []
    assert node.guest_events()[-1] == "STOP signal", node.guest_events()
    st = node.status()
    g = st.nodes.get(GUEST_NODE)
    assert g is None or not g.online, g
    assert st.resources[VM].role == "Stopped" and st.resources[VM].nodes == (), st.resources[VM]
