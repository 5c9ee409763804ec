"""What the agent reads from a domain XML beyond its identity: the pools and networks it
needs (start_resources), the devices guest health depends on. Not on the monitor's path."""

from __future__ import annotations

from ..tuples import NamedTuple
from .domxml import parse_xml


class Resources(NamedTuple):
    """Storage pools and libvirt networks a domain XML refers to."""

    pools: tuple[str, ...]
    networks: tuple[str, ...]


POOLS_XPATH = "devices/disk/source/@pool"
NETWORKS_XPATH = "devices/interface[@type=$t]/source/@network"
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"
GUEST_AGENT_XPATH = "devices/channel[target/@name=$n]"
WATCHDOG_XPATH = "devices/watchdog"
DISKS_XPATH = "devices/disk[not(@device) or @device='disk' or @device='lun']"


class Disk(NamedTuple):
    kind: str  # <disk type=...>: file, block, network, volume, dir
    source: str  # the file or device path, the network protocol, or pool/volume


class GuestDevices(NamedTuple):
    """The devices guest health depends on."""

    guest_agent: bool  # a channel to the qemu guest agent
    watchdog_action: str | None  # None: no watchdog device (libvirt's default action: reset)
    disks: tuple[Disk, ...]


def referenced_resources(data: bytes, path: str) -> Resources:
    root = parse_xml(data, path)
    pools = sorted({str(v) for v in root.xpath(POOLS_XPATH)})
    nets = sorted({str(v) for v in root.xpath(NETWORKS_XPATH, t="network")})
    return Resources(tuple(pools), tuple(nets))


def guest_devices(data: bytes, path: str) -> GuestDevices:
    root = parse_xml(data, path)
    agent = bool(root.xpath(GUEST_AGENT_XPATH, n=GUEST_AGENT_CHANNEL))
    watchdogs = root.xpath(WATCHDOG_XPATH)
    action = (watchdogs[0].get("action") or "reset") if watchdogs else None
    disks = []
    for disk in root.xpath(DISKS_XPATH):
        kind = disk.get("type") or "file"
        src = disk.find("source")
        if src is None:
            continue
        if kind == "network":
            where = src.get("protocol") or "network"
        elif kind == "volume":
            where = f"{src.get('pool')}/{src.get('volume')}"
        else:
            where = src.get("file") or src.get("dev") or src.get("dir") or ""
        if where:
            disks.append(Disk(kind, where))
    return GuestDevices(agent, action, tuple(disks))
