"""The cluster harness's own logic that needs no daemon: the oracle's checker, the guest
node's module order, the fence agent's protocol. (The real runs are in tests/cluster.)"""

from __future__ import annotations

import io
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
