"""The test guests themselves, on a real libvirtd: every kernel module loads, and a module
that does not load fails the boot.

Guests are started with libvirt directly (not through the agent under test): these tests
check the harness other tests rely on."""

from __future__ import annotations

import dataclasses
import gzip
import re
import time
from pathlib import Path

import pytest

from tests.harness import (
    INIT_MARKER,
    MODULE_FAILED_MARKER,
    GuestArtifacts,
    GuestResource,
    HarnessError,
    create_transient,
    domain_xml,
)
from tests.harness.guest import BASE_MODULES, Cpio, ModuleIndex

from .conftest import MakeGuest

pytestmark = pytest.mark.integration

BOOT_S = 60.0


def boot(*guests: GuestResource, marker: str = INIT_MARKER) -> None:
    """Start each guest with libvirt (transient), then wait for ``marker`` on every console."""
    for g in guests:
        create_transient(g.config.read_text())
    for g in guests:
        assert g.wait_console(marker, BOOT_S), g.console()


# -- kernel modules ------------------------------------------------------------------------


def test_module_order_comes_from_modules_dep(artifacts: GuestArtifacts) -> None:
    index = ModuleIndex.read(Path("/lib/modules") / artifacts.kernel_version)
    order = index.load_order("virtio_net")
    # The bug this replaced: virtio loaded before virtio_ring fails with "Unknown symbol".
    assert order.index("virtio_ring") < order.index("virtio") < order.index("virtio_net")
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


def test_every_module_loads(make_guest: MakeGuest, artifacts: GuestArtifacts) -> None:
    index = ModuleIndex.read(Path("/lib/modules") / artifacts.kernel_version)
    base = {m for top in BASE_MODULES for m in index.load_order(top)}
    plain = make_guest("graceful")
    started = time.monotonic()
    boot(plain)
    plain_s = time.monotonic() - started
    console = plain.console()
    assert MODULE_FAILED_MARKER not in console, console
    assert re.search(rf"{INIT_MARKER} .* modules={len(base)}\b", console), console
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
