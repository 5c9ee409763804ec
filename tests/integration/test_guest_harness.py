"""The test guests themselves, on a real libvirtd: every kernel module loads (and a module
that does not load fails the boot), virtio-net carries a ping, the qemu guest agent answers
through libvirt and stops answering when stopped, a default-mode shutdown goes through the
agent and the guest's slow /sbin/shutdown, the watchdog fires, a full disk pauses the guest
with an I/O error, and the teardown leaves nothing behind.

Guests are started with libvirt directly (not through the agent under test): these tests
check the harness other tests rely on."""

from __future__ import annotations

import dataclasses
import gzip
import re
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness import (
    ACPID_MARKER,
    AGENT_MARKER,
    AGENT_STOPPED_MARKER,
    FILL_MARKER,
    INIT_MARKER,
    MODULE_FAILED_MARKER,
    POWERBUTTON_MARKER,
    SBIN_SHUTDOWN_MARKER,
    SLOW_POWEROFF_MARKER,
    SLOW_STOP_MARKER,
    WATCHDOG_MARKER,
    WATCHDOG_STOPPED_MARKER,
    DomainEvents,
    GuestArtifacts,
    GuestNetwork,
    GuestOptions,
    GuestResource,
    HarnessError,
    Libvirtd,
    agent_channel_state,
    create_transient,
    domain_xml,
    wait_for_state,
)
from tests.harness.common import CLEAN_PATH, wait_until
from tests.harness.domains import import_libvirt, with_connection
from tests.harness.guest import BASE_MODULES, NET_MARKER, Cpio, ModuleIndex, options_cmdline
from tests.harness.guestnet import SUBNET, link_exists

from .conftest import MakeGuest, MakeSmallFs

pytestmark = pytest.mark.integration

BOOT_S = 60.0
# What qemu-ga 7.2 runs for guest-shutdown (qga/commands-posix.c).
QGA_SHUTDOWN_ARGS = "-h -P +0 hypervisor initiated shutdown"
UPTIME_RE = r"uptime=([0-9.]+)"


def boot(*guests: GuestResource, marker: str = INIT_MARKER) -> None:
    """Start each guest with libvirt (transient), then wait for ``marker`` on every console."""
    for g in guests:
        create_transient(g.config.read_text())
    for g in guests:
        assert g.wait_console(marker, BOOT_S), g.console()


def uptime_at(console: str, marker: str) -> float:
    """The guest's uptime printed on the first console line carrying ``marker``."""
    for line in console.splitlines():
        if marker in line:
            m = re.search(UPTIME_RE, line)
            assert m, line
            return float(m.group(1))
    raise AssertionError(f"no {marker!r} on the console:\n{console}")


def call_in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            box["error"] = exc
        box["elapsed_s"] = time.monotonic() - started

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


# -- kernel modules ------------------------------------------------------------------------


def test_module_order_comes_from_modules_dep(artifacts: GuestArtifacts) -> None:
    index = ModuleIndex.read(Path("/lib/modules") / artifacts.kernel_version)
    order = index.load_order("virtio_net")
    # The bug this replaced: virtio loaded before virtio_ring fails with "Unknown symbol".
    # Built-in modules are left out (Debian 13's kernel builds virtio and virtio_ring in;
    # Debian 12's has them as modules).
    chain = [m for m in ("virtio_ring", "virtio", "virtio_net") if m not in index.builtin]
    assert [m for m in order if m in chain] == chain, order
    assert not index.builtin & set(order), order
    assert order.index("failover") < order.index("net_failover") < order.index("virtio_net")
    for name in order:
        for dep in index.deps[name]:
            assert order.index(dep) < order.index(name), (dep, name, order)
    with pytest.raises(HarnessError, match="no_such_module"):
        index.load_order("no_such_module")


def test_default_guest_is_unchanged(artifacts: GuestArtifacts, tmp_path: Path) -> None:
    """Existing tests keep their guest: no extra device, no extra kernel argument."""
    xml = domain_xml("g", "graceful", artifacts, "qemu", tmp_path / "c.log")
    assert "<cmdline>console=ttyS0 quiet harness.mode=graceful</cmdline>" in xml
    assert f"<initrd>{artifacts.initramfs}</initrd>" in xml
    for device in ("<disk", "<interface", "<channel", "<watchdog"):
        assert device not in xml
    assert options_cmdline(GuestOptions()) == []


def test_every_module_loads(make_guest: MakeGuest, artifacts: GuestArtifacts) -> None:
    index = ModuleIndex.read(Path("/lib/modules") / artifacts.kernel_version)
    base = {m for top in BASE_MODULES for m in index.load_order(top)}
    plain = make_guest("graceful")
    every = make_guest("graceful", options=GuestOptions(modules=("virtio_console", "i6300esb",
                                                                  "virtio_blk")))
    started = time.monotonic()
    boot(plain)
    plain_s = time.monotonic() - started
    boot(every)
    for g, expected in ((plain, len(base)),
                        (every, len(base | {m for top in ("virtio_console", "i6300esb",
                                                          "virtio_blk")
                                            for m in index.load_order(top)}))):
        console = g.console()
        assert MODULE_FAILED_MARKER not in console, console
        assert re.search(rf"{INIT_MARKER} .* modules={expected}\b", console), console
    print(f"default guest: create to init marker {plain_s:.2f}s")


def test_a_module_that_does_not_load_fails_the_boot(make_guest: MakeGuest, tmp_path: Path,
                                                    artifacts: GuestArtifacts,
                                                    virt_type: str) -> None:
    """The old hand-written order (virtio before virtio_ring), appended over the real one:
    insmod fails, the guest says so and the boot helper raises."""
    extra = Cpio()
    extra.file("modules/base", b"old_order\n")
    extra.file("modules/old_order.order", b"virtio\nvirtio_ring\n")
    initramfs = tmp_path / "old-order.cpio.gz"
    initramfs.write_bytes(artifacts.initramfs.read_bytes()
                          + gzip.compress(extra.finish(), mtime=0))
    g = make_guest("graceful")
    g.config.write_text(domain_xml(g.name, "graceful",
                                   dataclasses.replace(artifacts, initramfs=initramfs),
                                   virt_type, g.console_log))
    create_transient(g.config.read_text())
    with pytest.raises(HarnessError, match=f"{MODULE_FAILED_MARKER} virtio: "):
        g.wait_console(INIT_MARKER, BOOT_S)


# -- virtio-net ----------------------------------------------------------------------------


def test_virtio_net_guest_answers_ping(make_guest: MakeGuest,
                                       guest_network: GuestNetwork) -> None:
    """With its modules loading, virtio-net works: a guest on a bridge inside a namespace
    the test made answers ping from there; its tap is no longer in the host's namespace."""
    tap, address = guest_network.new_tap()
    g = make_guest("graceful", options=GuestOptions(tap=tap, ip=address))
    guest_network.start_guest(g.name, g.config.read_text(), tap)
    assert g.wait_console(INIT_MARKER, BOOT_S), g.console()
    assert f"{NET_MARKER} {address} up" in g.console(), g.console()
    assert not link_exists(tap)
    assert link_exists(tap, guest_network.netns)
    assert guest_network.ping(address, count=2), g.console()
    assert not guest_network.ping(f"{SUBNET}.250")  # nobody has that address


# -- qemu guest agent ----------------------------------------------------------------------


def virsh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True,
                          text=True, timeout=30, env={"PATH": CLEAN_PATH, "LANG": "C"},
                          check=False)


@pytest.mark.parametrize("how", ["kill", "freeze"])
def test_agent_answers_then_stops(make_guest: MakeGuest, how: str) -> None:
    g = make_guest("graceful", options=GuestOptions(agent=True))
    boot(g, marker=AGENT_MARKER)
    assert wait_until(lambda: g.agent_ping(), 30, 0.2), g.console()
    assert agent_channel_state(g.name) == "connected"
    latencies = []
    for _ in range(5):
        started = time.monotonic()
        assert g.agent_ping()
        latencies.append(time.monotonic() - started)
    out = virsh("qemu-agent-command", g.name, '{"execute":"guest-ping"}')
    assert out.returncode == 0 and out.stdout.strip() == '{"return":{}}', out
    print(f"guest-ping through libvirt: median {statistics.median(latencies) * 1000:.0f} ms")

    # Raises unless the console says so and guest-ping gets no answer (against a frozen
    # agent each such ping takes libvirt's 5 s guest-sync wait: checked once, there).
    g.stop_agent(how)

    assert re.search(rf"{AGENT_STOPPED_MARKER} signal={'KILL' if how == 'kill' else 'STOP'}",
                     g.console()), g.console()
    assert agent_channel_state(g.name) == ("disconnected" if how == "kill" else "connected")
    if how == "kill":
        assert not g.agent_ping(2.0)
        out = virsh("qemu-agent-command", "--timeout", "2", g.name, '{"execute":"guest-ping"}')
        assert out.returncode != 0 and "not connected" in out.stderr, out
    assert g.state() == "running"


def test_agent_stop_after(make_guest: MakeGuest) -> None:
    """harness.agent_stop_after: the agent answers, then dies on its own."""
    g = make_guest("graceful", options=GuestOptions(agent=True, agent_stop_after_s=6))
    boot(g, marker=AGENT_MARKER)
    assert wait_until(lambda: g.agent_ping(), 30, 0.2), g.console()
    assert g.wait_console(AGENT_STOPPED_MARKER, 30), g.console()
    assert wait_until(lambda: agent_channel_state(g.name) == "disconnected", 10, 0.2)
    assert not g.agent_ping(2.0)


# -- graceful shutdown like a real OS ------------------------------------------------------


def test_shutdown_through_agent_and_slow_acpi(make_guest: MakeGuest) -> None:
    """virDomainShutdownFlags: default mode (libvirt tries the agent first) and GUEST_AGENT
    block until the guest has powered off, after its slow /sbin/shutdown; ACPI returns at
    once and the slow guest goes down after the same delay. The agent guests ignore ACPI,
    so only the agent can have stopped them."""
    libvirt = import_libvirt()
    delay = 3.0
    default_mode = make_guest("ignore", options=GuestOptions(agent=True, shutdown_delay_s=delay))
    agent_mode = make_guest("ignore", options=GuestOptions(agent=True, shutdown_delay_s=delay))
    acpi = make_guest("graceful", options=GuestOptions(slow_acpi=True, shutdown_delay_s=delay))
    boot(default_mode, agent_mode, marker=AGENT_MARKER)
    boot(acpi, marker=ACPID_MARKER)
    for g in (default_mode, agent_mode):
        assert wait_until(lambda g=g: g.agent_ping(), 30, 0.2), g.console()

    calls = {}
    for g, flags in ((default_mode, 0),
                     (agent_mode, libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT),
                     (acpi, libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)):
        calls[g.name] = call_in_thread(
            lambda g=g, flags=flags: with_connection(
                lambda conn: conn.lookupByName(g.name).shutdownFlags(flags), timeout_s=90))
    for g in (default_mode, agent_mode, acpi):
        t, box = calls[g.name]
        t.join(90)
        assert not t.is_alive()
        if "error" in box:
            raise box["error"]
        assert wait_for_state(g.name, None, delay + 30), g.console()

    for g in (default_mode, agent_mode):
        console = g.console()
        assert f"{SBIN_SHUTDOWN_MARKER} args={QGA_SHUTDOWN_ARGS}" in console, console
        assert f"{SLOW_STOP_MARKER} via=shutdown" in console, console
        assert POWERBUTTON_MARKER not in console, console
        went_down = uptime_at(console, SLOW_POWEROFF_MARKER) - uptime_at(console, SLOW_STOP_MARKER)
        assert went_down >= delay - 0.1, console
        # libvirt waits for the guest's power-off before the call returns
        assert calls[g.name][1]["elapsed_s"] >= delay, calls[g.name][1]
    console = acpi.console()
    assert POWERBUTTON_MARKER in console and f"{SLOW_STOP_MARKER} via=acpi" in console, console
    assert SBIN_SHUTDOWN_MARKER not in console
    assert uptime_at(console, SLOW_POWEROFF_MARKER) - uptime_at(console, SLOW_STOP_MARKER) \
        >= delay - 0.1, console
    assert calls[acpi.name][1]["elapsed_s"] < delay, calls[acpi.name][1]
    print("shutdownFlags blocked: " + ", ".join(
        f"{label} {calls[g.name][1]['elapsed_s']:.2f}s" for label, g in
        (("default", default_mode), ("agent", agent_mode), ("acpi", acpi))))


# -- watchdog ------------------------------------------------------------------------------


def test_watchdog_fires_and_pauses_the_guest(make_guest: MakeGuest) -> None:
    libvirt = import_libvirt()
    timeout = 2
    g = make_guest("graceful", options=GuestOptions(watchdog_action="pause",
                                                    watchdog_timeout_s=timeout,
                                                    watchdog_stop_after_s=2 * timeout + 1))
    with DomainEvents(name=g.name) as events:
        boot(g, marker=WATCHDOG_MARKER)
        assert g.wait_console(WATCHDOG_STOPPED_MARKER, 30), g.console()
        stopped_at = time.monotonic()
        # Fed for longer than its timeout: it must not have fired before feeding stopped.
        assert events.of_kind("watchdog") == [], events.events
        fired = events.wait_for("watchdog", 30)
        assert fired is not None, g.console()
        assert fired.detail == (libvirt.VIR_DOMAIN_EVENT_WATCHDOG_PAUSE,)
        suspended = events.wait_for("lifecycle", 10, lambda e: e.detail == (
            libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_WATCHDOG))
        assert suspended is not None, events.events
    assert g.state() == "paused"
    assert g.paused_reason() == "watchdog"
    print(f"watchdog fired {fired.at - stopped_at:.2f}s after feeding stopped "
          f"(timeout {timeout}s)")


# -- a disk that fails ---------------------------------------------------------------------


def test_full_disk_pauses_with_io_error_and_teardown_leaves_nothing(
        make_guest: MakeGuest, make_small_fs: MakeSmallFs, libvirtd: Libvirtd) -> None:
    libvirt = import_libvirt()
    fs = make_small_fs(8)
    disk = fs.sparse_file("vda.raw", 64)
    g = make_guest("graceful", options=GuestOptions(disk=disk, fill_disk=True))
    fs.users.append(g.name)
    with DomainEvents(name=g.name) as events:
        created_at = time.monotonic()
        boot(g, marker=FILL_MARKER)
        error = events.wait_for("io-error", 60)
        assert error is not None, g.console()
        path, alias, action, reason = error.detail
        assert (path, action, reason) == (str(disk), libvirt.VIR_DOMAIN_EVENT_IO_ERROR_PAUSE,
                                          "enospc"), error
    assert wait_for_state(g.name, "paused", 10)
    assert g.paused_reason() == "ioerror"
    assert "HARNESS-FILL ended" not in g.console()  # the guest is frozen mid-write
    assert fs.used_kib() >= 7 * 1024
    print(f"paused with an I/O error {error.at - created_at:.2f}s after create (the guest "
          f"writes from boot)")

    [qemu] = g.qemu_pids()
    fs.close()
    assert g.state() is None
    assert not Path(f"/proc/{qemu}").exists()
    assert not fs.is_mounted()
    for pid in ("self", str(libvirtd.pid)):
        mountinfo = Path(f"/proc/{pid}/mountinfo").read_text()
        assert str(fs.mountpoint) not in mountinfo, mountinfo
    assert not fs.mountpoint.exists()


def _link_mac(netns: str, dev: str) -> str:
    out = subprocess.run(["ip", "-n", netns, "-o", "link", "show", dev], capture_output=True,
                         text=True, check=True).stdout
    return out.split("link/ether ", 1)[1].split()[0]


def test_cluster_bridge_keeps_its_mac_when_guests_come_and_go() -> None:
    """A cluster node's bridge keeps one MAC address while ports join and leave. A Linux
    bridge whose address nobody set takes the lowest MAC of its ports, and libvirt's taps
    (fe:54:...) are lower than an uplink veth whose random address begins fe:b2: the soak
    saw a guest's migration to pcmk-2 change pcmk-2's bridge address; pcmk-1's ARP entry
    went stale, corosync lost the peer for 6 s, and both nodes fenced."""
    from tests.harness.cluster import BRIDGE, create_node_bridge
    from tests.harness.nsnode import create_netns, delete_netns

    netns = "pyvd-brtest"

    def add_port(name: str, mac: str) -> None:
        subprocess.run(["ip", "-n", netns, "link", "add", name, "address", mac, "type", "veth",
                        "peer", "name", f"{name}-p"], check=True)
        subprocess.run(["ip", "-n", netns, "link", "set", name, "master", BRIDGE], check=True)

    delete_netns(netns)
    create_netns(netns)
    try:
        create_node_bridge(netns, "10.99.0.1")
        # the uplink: a port with a high address, as a random one can be
        add_port("brt-up", "fe:ff:33:14:e7:b2")
        before = _link_mac(netns, BRIDGE)
        # a guest's tap comes (the lowest address on the bridge), then goes
        add_port("brt-tap", "02:00:00:00:00:01")
        with_tap = _link_mac(netns, BRIDGE)
        subprocess.run(["ip", "-n", netns, "link", "del", "brt-tap"], check=True)
        after = _link_mac(netns, BRIDGE)
        assert (with_tap, after) == (before, before), (before, with_tap, after)
    finally:
        assert delete_netns(netns) is None
