"""The cluster harness's own logic that needs no daemon: the oracle's checker, the guest
node's module order, the fence agent's protocol. (The real runs are in tests/cluster.)"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.harness.fencing import METADATA, parse  # noqa: E402
from tests.harness.guestnode import module_load_order  # noqa: E402
from tests.harness.oracle import check_lines  # noqa: E402

A = "3cfed56d-b2f5-4949-ba7a-8d1f62b776a2"
B = "9a1b7c2e-0000-4000-8000-000000000001"


def rec(boot: str, n: int, up: float | None = None) -> str:
    return f"ORACLE {boot} {n} {up if up is not None else 1.0 + n / 10:.2f}"


def test_oracle_accepts_one_boot_then_another() -> None:
    lines = [rec(A, i) for i in range(5)] + [rec(B, i) for i in range(3)]
    rep = check_lines(lines)
    assert rep.ok(), rep.problems
    assert rep.boot_ids == [A, B]


def test_oracle_rejects_interleaved_boots() -> None:
    lines = [rec(A, 0), rec(A, 1), rec(B, 0), rec(A, 2), rec(B, 1)]
    rep = check_lines(lines)
    assert any("two copies of the guest ran at once" in p for p in rep.problems), rep.problems


def test_oracle_rejects_gaps_torn_lines_and_time_going_back() -> None:
    assert check_lines([rec(A, 0), rec(A, 2)]).problems
    assert check_lines([rec(A, 0), rec(A, 1)[:20] + rec(A, 2)]).problems
    assert check_lines([rec(A, 0, 5.0), rec(A, 1, 4.0)]).problems
    # a new boot must start at 0 (else its first records were lost)
    assert check_lines([rec(A, 0), rec(B, 3)]).problems
    # checked from the middle of a file, the first run may start anywhere
    assert check_lines([rec(A, 7), rec(A, 8)], start_line=7).ok()


def test_nodes_never_rotate_an_oracle_within_a_run() -> None:
    """Both nodes' virtlogd append to a guest's oracle file, each counting only its own
    writes: a rotation by one (2 MiB by default) left the other writing into the renamed
    file, where two copies of the guest would no longer interleave in one file. Seen in a
    200-event soak (seed 1): guest1's rotated file ended 392 bytes over 2 MiB."""
    from tests.harness.cluster import NodeSpec, libvirt_config

    conf = libvirt_config(NodeSpec("pcmk-1", 1, "ns", "192.0.2.1", A))["virtlogd.conf"]
    sizes = re.findall(r"^max_size = (\d+)$", conf, re.M)
    # a 200-event soak runs ~2 hours; an oracle grows ~1.7 MiB an hour
    assert sizes and int(sizes[-1]) >= 256 * 1024 ** 2


def test_module_order_puts_dependencies_first(tmp_path: Path) -> None:
    d = tmp_path / "6.1.0-test"
    d.mkdir()
    (d / "modules.dep").write_text(
        "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/virtio/virtio_ring.ko:\n"
        "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko "
        "kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko "
        "kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n"
        "kernel/net/core/failover.ko:\n")
    (d / "modules.builtin").write_text("")
    order = module_load_order("6.1.0-test", ("kernel/drivers/net/virtio_net.ko",),
                              tmp_path)
    assert order.index("kernel/drivers/virtio/virtio_ring.ko") \
        < order.index("kernel/drivers/virtio/virtio.ko") \
        < order.index("kernel/drivers/net/virtio_net.ko")
    assert order.index("kernel/net/core/failover.ko") \
        < order.index("kernel/drivers/net/net_failover.ko")
    assert len(order) == len(set(order)) == 5


def test_fence_agent_reads_stdin_and_options() -> None:
    opts = parse([], io.StringIO("action=reboot\nport=pcmk-1\n# comment\ncluster_dir=/x\n"))
    assert opts == {"action": "reboot", "port": "pcmk-1", "cluster_dir": "/x"}
    assert parse(["-o", "off", "-n", "pcmk-2", "--cluster-dir=/y"], None) == {
        "action": "off", "plug": "pcmk-2", "cluster_dir": "/y"}
    assert parse([], io.StringIO("option=status\n"))["action"] == "status"


def test_fence_agent_metadata_names_its_actions_and_target() -> None:
    root = ET.fromstring(METADATA)
    assert root.get("name") == "fence_pyvd"
    actions = {a.get("name") for a in root.iter("action")}
    assert {"on", "off", "reboot", "status", "list", "monitor", "metadata"} <= actions
    params = {p.get("name") for p in root.iter("parameter")}
    assert {"action", "plug", "port", "cluster_dir"} <= params


@pytest.mark.parametrize("stdin,rc", [("action=metadata\n", 0), ("action=frobnicate\n", 1),
                                      ("action=status\nport=pcmk-1\ncluster_dir=/nonexistent\n",
                                       1)])
def test_fence_agent_exit_codes(stdin: str, rc: int) -> None:
    agent = ROOT / "tests" / "harness" / "fence_pyvd"
    text = agent.read_text().replace("@REPO_ROOT@", str(ROOT))
    proc = subprocess.run([sys.executable, "-c", text], input=stdin, capture_output=True,
                          text=True, timeout=30, check=False)
    assert proc.returncode == rc, proc.stderr


# -- Pacemaker's log lines and fencing history, as 2.1 (Debian 12) and 3.0 (Debian 13) write them

from tests.harness.cluster import (  # noqa: E402
    Result,
    find_in_order,
    operation_results,
    parse_fence_history,
)

PREFIX = "Dec 03 22:00:00 pcmk-1 pacemaker-controld  [4242] (log_executor_event) \tnotice: "
LOG_2_1 = "".join(PREFIX + line + "\n" for line in (
    "Result of stop operation for vm-guest1 on pcmk-1: ok | graph action confirmed; call=40 "
    "key=vm-guest1_stop_0 rc=0",
    "Result of monitor operation for vm-guest1 on pcmk-1: not running | graph action "
    "unconfirmed; call=41 key=vm-guest1_monitor_10000 rc=7",
    "Result of start operation for vm-guest1 on pcmk-2: error (domain pyvd-x refused to start) "
    "| graph action confirmed; call=42 key=vm-guest1_start_0 rc=1",
    "Result of migrate_to operation for vm-guest1 on pcmk-2: Timed Out after 2m | graph action "
    "confirmed; call=43 key=vm-guest1_migrate_to_0"))
LOG_3_0 = LOG_2_1.replace(": ok |", ": OK |").replace(": not running |", ": Not running |")


@pytest.mark.parametrize("log", [LOG_2_1, LOG_3_0], ids=["pacemaker-2.1", "pacemaker-3.0"])
def test_operation_results_read_rc_whatever_the_words(log: str) -> None:
    got = [(r.operation, r.rsc, r.node, r.rc) for r in operation_results(log)]
    assert got == [("stop", "vm-guest1", "pcmk-1", 0), ("monitor", "vm-guest1", "pcmk-1", 7),
                   ("start", "vm-guest1", "pcmk-2", 1), ("migrate_to", "vm-guest1", "pcmk-2", None)]
    assert Result("monitor", "vm-guest1", "pcmk-1", rc=7).found_in(operation_results(log))
    assert not Result("start", "vm-guest1", rc=0).found_in(operation_results(log))
    assert Result("migrate_to", "vm-guest1", "pcmk-2", rc=None).found_in(operation_results(log))


def test_operation_result_with_exit_reason_as_pacemaker_3_0_logs_it() -> None:
    line = ("Dec 03 23:25:44.503 pcmk-1 pacemaker-controld  [251] (log_executor_event) \tnotice: "
            "Result of probe operation for vm-guest1 on pcmk-1: Not running (domain pyvd-cl-guest1 "
            "is not running (not found on qemu:///system)) | graph action confirmed; call=10 "
            "key=vm-guest1_monitor_0 rc=7\n")
    (r,) = operation_results(line)
    assert (r.operation, r.rsc, r.node, r.rc) == ("probe", "vm-guest1", "pcmk-1", 7)


def test_operation_results_without_details_use_the_words() -> None:
    # A line cut before its " | ..." details still says what happened.
    for word, rc in (("ok", 0), ("OK", 0), ("Not running", 7), ("not running", 7)):
        (r,) = operation_results(f"Result of stop operation for a on n1: {word}\n")
        assert r.rc == rc, word


def test_find_in_order_mixes_patterns_and_results() -> None:
    log = "Guest node guest1 will be fenced\n" + LOG_3_0
    assert find_in_order(log, [r"Guest node guest1 will be fenced",
                               Result("stop", "vm-guest1", "pcmk-1", rc=0),
                               Result("monitor", "vm-guest1", rc=7)]) is None
    # order matters: the stop came before the monitor
    missing = find_in_order(log, [Result("monitor", "vm-guest1", rc=7),
                                  Result("stop", "vm-guest1", rc=0)])
    assert missing is not None and "stop" in missing
    assert find_in_order(log, [Result("stop", "vm-guest1", "pcmk-2")]) is not None


FENCE_HISTORY_XML = """<pacemaker-result api-version="2.30"
    request="stonith_admin --history pcmk-1 --output-as=xml">
  <fence_history>
    <fence_event action="reboot" target="pcmk-1" client="pacemaker-controld.1234"
        origin="pcmk-2" status="success" delegate="pcmk-2"
        completed="2026-12-03 22:00:01 +00:00"/>
  </fence_history>
  <status code="0" message="OK"/>
</pacemaker-result>
"""


def test_fence_history_from_xml() -> None:
    (event,) = parse_fence_history(FENCE_HISTORY_XML)
    assert (event["action"], event["target"], event["status"]) == ("reboot", "pcmk-1", "success")


# -- a resource and its constraints reach the CIB together ------------------------------------

from tests.harness.cluster import TWO_NODES, ClusterNode  # noqa: E402


class OfflineCibNode(ClusterNode):
    """A cluster node whose commands run here against an offline CIB (CIB_file): the real
    cibadmin and crm_resource, no cluster. After every command it checks what a scheduler
    run at that moment could see."""

    def __init__(self, cib: Path) -> None:
        super().__init__(TWO_NODES.nodes[0], cib.parent, TWO_NODES)
        self.cib_file = cib
        self.seen: list[tuple[bool, set[str]]] = []  # after each command: primitive?, constraints

    def exec(self, argv, timeout_s=60.0, check=False, env=None, input_text=None):  # type: ignore[no-untyped-def,override]
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s,
                             check=check, env={"CIB_file": str(self.cib_file),
                                               "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        conf = ET.parse(self.cib_file).getroot().find("configuration")
        assert conf is not None
        self.seen.append((conf.find("resources/primitive[@id='vm-x']") is not None,
                          {c.get("id", "") for c in conf.iter("rsc_location")}))
        return out


def test_a_primitive_is_never_in_the_cib_without_its_constraints(tmp_path: Path) -> None:
    if subprocess.run(["sh", "-c", "command -v cibadmin"], capture_output=True).returncode:
        pytest.fail("cibadmin is not installed (make deps installs pacemaker-cli-utils)")
    cib = tmp_path / "cib.xml"
    cib.write_text(subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True,
                                  check=True).stdout)
    node = OfflineCibNode(cib)
    node.add_primitive("vm-x", "Dummy", {}, provider="heartbeat",
                       avoid_nodes=("guest1", "guest2"), prefer_node="pcmk-1",
                       discover_avoided=False)
    wanted = {"vm-x-avoid-guest1", "vm-x-avoid-guest2", "vm-x-on-pcmk-1"}
    # whenever the resource existed, all its constraints did too (a transition computed in
    # between would probe it where resource-discovery=never was about to forbid it)
    assert node.seen and all(cons >= wanted for prim, cons in node.seen if prim), node.seen
    conf = ET.parse(cib).getroot().find("configuration")
    assert conf is not None
    avoid = conf.find("constraints/rsc_location[@id='vm-x-avoid-guest1']")
    assert avoid is not None and avoid.get("resource-discovery") == "never"
    role = conf.find("resources/primitive[@id='vm-x']/meta_attributes/nvpair[@name='target-role']")
    assert role is not None and role.get("value") == "Started"
