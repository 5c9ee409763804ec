"""Double-start defence in depth (validate-all, OCF_CHECK_LEVEL=10): a lock manager in
libvirt's qemu driver (lock_manager in qemu.conf: "lockd" for virtlockd, or "sanlock") holds
a lease on each disk while the guest runs, so that a second copy started anywhere cannot
write to it, even if fencing, the cluster and this agent all failed."""

from __future__ import annotations

from ..core.context import Context
from ..uri import LibvirtConfError, parse_libvirt_conf
from ..virt.devices import Disk
from ..virt.storage import SHARED_FILESYSTEMS, filesystem_of

QEMU_CONF = "/etc/libvirt/qemu.conf"
def lock_manager(qemu_conf: str = QEMU_CONF) -> str | None:
    """The qemu driver's lock manager, None for libvirt's default ("nop": no leases)."""
    try:
        with open(qemu_conf, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    if "lock_manager" not in text:
        return None
    try:
        value = parse_libvirt_conf(text, qemu_conf).get("lock_manager")
    except LibvirtConfError:
        return None
    return value if isinstance(value, str) and value not in ("", "nop") else None


def shared_disks(disks: tuple[Disk, ...]) -> list[str]:
    """The disks another node may reach too: network disks, block devices (a SAN LUN looks
    like any other), files on a cluster or network filesystem."""
    shared = []
    for disk in disks:
        if disk.kind == "network":
            shared.append(f"{disk.source} network disk")
        elif disk.kind == "block":
            shared.append(disk.source)
        elif disk.kind == "file":
            fs = filesystem_of(disk.source)
            if fs in SHARED_FILESYSTEMS:
                shared.append(f"{disk.source} ({fs})")
    return shared


def check_disk_locking(ctx: Context, disks: tuple[Disk, ...]) -> None:
    shared = shared_disks(disks)
    if not shared or lock_manager() is not None:
        return
    ctx.log.warning(f"the domain's disks are on shared storage ({', '.join(shared[:3])}) but "
                    f"libvirt's qemu driver has no lock manager (lock_manager in {QEMU_CONF}: "
                    "lockd or sanlock): nothing but the cluster stops a second copy of the "
                    "guest from writing to them")
