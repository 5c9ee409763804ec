"""sync_config_on_stop against a real csync2 peer.

Two csync2 nodes as a cluster admin sets them up (tests/harness/csync2.py): one group, both
nodes, a shared key, the directory of domain configs included, the same path on both nodes.
The agent stops a real guest on node A, where a plain ``csync2 -x`` (what the agent runs)
reads the group's configuration from /etc/csync2.cfg in A's mount namespace; node B runs a real
``csync2 -ii`` server in the same private network namespace and receives the file."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ACPID_MARKER, AgentResult, GuestResource, Libvirtd, domain_facts
from tests.harness.agent import HANG_GRACE_S, agent_environment, run_agent_argv
from tests.harness.common import AGENTS_DIR, CLEAN_PATH, VENV_PYTHON
from tests.harness.csync2 import Csync2Pair

pytestmark = pytest.mark.integration

START_MS = 60000
STOP_MS = 30000
SYNC = {"save_config_on_stop": "true", "sync_config_on_stop": "true"}


@pytest.fixture
def pair(tmp_path: Path, libvirtd: Libvirtd) -> Iterator[Csync2Pair]:
    """Nodes A and B with B's csync2 server running; the group's directory is
    tmp_path/vms (libvirtd: the host lock is held, the namespace name is machine-wide)."""
    if shutil.which("csync2", path=CLEAN_PATH) is None:
        pytest.fail("csync2 is not installed (make deps-system installs it)")
    with Csync2Pair(tmp_path / "csync2", tmp_path / "vms") as p:
        yield p


def _in_group(guest: GuestResource, pair: Csync2Pair) -> None:
    """Move the guest's config file into the csync2 group's directory and push it to B, as
    an admin does once after creating it."""
    target = pair.synced_dir / guest.config.name
    guest.config.replace(target)
    guest.config = target
    guest.params["config"] = str(target)
    sync = pair.run_on("A", ["csync2", "-x"], check=False)
    assert sync.returncode == 0, sync.stderr
    assert pair.peer_copy(target).read_bytes() == target.read_bytes()


def _start(guest: GuestResource) -> str:
    r = guest.run("start", timeout_ms=START_MS)
    assert r.rc == 0, r
    # graceful stop needs the guest's acpid running (an early ACPI request is lost)
    assert guest.wait_console(ACPID_MARKER, 60), guest.console()
    facts = domain_facts(guest.name)
    assert facts is not None and facts.state == "running"
    return facts.uuid


def _stop_on_node_a(guest: GuestResource, pair: Csync2Pair, timeout_ms: int) -> AgentResult:
    """``PyVirtualDomain stop`` as Pacemaker's executor runs it, on node A."""
    params = {**guest.params, **SYNC}
    env = agent_environment("stop", params, timeout_ms=timeout_ms, interval_ms=None,
                            instance=guest.instance, state_dir=guest.state_dir,
                            agent=guest.agent)
    argv = pair.node_argv("A", [str(VENV_PYTHON), str(AGENTS_DIR / guest.agent), "stop"])
    return run_agent_argv(argv, env, action="stop", agent=guest.agent,
                          limit_s=timeout_ms / 1000.0 + HANG_GRACE_S, where=" on nodea")


def _warnings(r: AgentResult) -> list[str]:
    return [line for line in r.stderr.splitlines() if ": WARNING: " in line]


def test_stop_syncs_the_saved_config_to_the_csync2_peer(guest: GuestResource,
                                                        pair: Csync2Pair) -> None:
    _in_group(guest, pair)
    original = guest.config.read_bytes()
    assert b"<uuid>" not in original
    # Another file of the group, changed on A: the stop syncs the domain's config only
    # (VirtualDomain's csync2 -x CONFIG), not whatever else is pending in the group.
    unrelated = pair.synced_dir / "unrelated.xml"
    unrelated.write_text("<domain/>\n")
    uuid = _start(guest)

    r = _stop_on_node_a(guest, pair, STOP_MS)

    assert r.rc == 0, r
    assert r.elapsed_s < STOP_MS / 1000.0, r
    assert guest.state() is None, "libvirt still knows the domain"
    assert not guest.qemu_pids()
    assert not _warnings(r), r
    saved = guest.config.read_bytes()
    assert saved != original
    assert f"<uuid>{uuid}</uuid>".encode() in saved
    assert f"<name>{guest.name}</name>".encode() in saved
    # node B's copy of the file is the definition node A saved
    assert pair.peer_copy(guest.config).read_bytes() == saved
    assert f"Updated {guest.config} from {pair.hostname('A')}" in pair.server_log()
    assert not pair.peer_copy(unrelated).exists(), "csync2 pushed more than the config"
    assert "synced" in r.stderr and "csync2" in r.stderr


def test_stop_with_the_csync2_peer_down_still_stops(guest: GuestResource,
                                                    pair: Csync2Pair) -> None:
    _in_group(guest, pair)
    original = guest.config.read_bytes()
    pair.stop_server()
    uuid = _start(guest)

    r = _stop_on_node_a(guest, pair, STOP_MS)

    assert r.rc == 0, r
    assert r.elapsed_s < STOP_MS / 1000.0, r
    assert guest.state() is None, "libvirt still knows the domain"
    assert "destroying" not in r.stderr, r  # csync2's failure cost the shutdown nothing
    warnings = [w for w in _warnings(r) if "csync2" in w]
    assert warnings, r
    assert pair.hostname("B") in warnings[0], warnings  # csync2's own message, the peer named
    assert f"<uuid>{uuid}</uuid>".encode() in guest.config.read_bytes()  # saved all the same
    assert pair.peer_copy(guest.config).read_bytes() == original


def test_stop_with_a_hung_csync2_peer_keeps_its_deadline(guest: GuestResource,
                                                         pair: Csync2Pair) -> None:
    """A peer that accepts the connection and never answers keeps csync2 waiting forever: the
    stop bounds it, still shuts the guest down gracefully and ends within its op timeout."""
    _in_group(guest, pair)
    original = guest.config.read_bytes()
    pair.freeze_server()
    _start(guest)
    timeout_ms = 20000

    r = _stop_on_node_a(guest, pair, timeout_ms)

    assert r.rc == 0, r
    assert r.elapsed_s < timeout_ms / 1000.0, r
    assert guest.state() is None, "libvirt still knows the domain"
    warnings = [w for w in _warnings(r) if "csync2" in w and "did not finish" in w]
    assert warnings, r
    # csync2 got a share of the graceful phase, not all of it: no destroy was needed
    assert "destroying" not in r.stderr, r
    assert "asked domain" in r.stderr, r
    assert pair.peer_copy(guest.config).read_bytes() == original
