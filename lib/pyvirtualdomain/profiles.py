"""What differs between the agents built on this package: one place, no copied code paths."""

from __future__ import annotations

from .tuples import NamedTuple


class Profile(NamedTuple):
    agent_name: str
    # Domain types (<domain type=...>) this agent accepts; None accepts any.
    virt_types: frozenset[str] | None
    # Used when the hypervisor parameter is unset; None: libvirt's default URI (virsh uri).
    fixed_default_uri: str | None
    # Shutdown modes this hypervisor driver implements (params check shutdown_mode against it).
    shutdown_modes: tuple[str, ...]
    # When the agent itself must kill the domain's processes (libvirt could not): at most this
    # long between SIGTERM and SIGKILL; 0 sends SIGKILL at once.
    kill_term_grace_s: float
    # Whether the domain XML's guest devices (guest agent channel, watchdog, disks) concern
    # the agent: they do for virtual machines, not for containers.
    guest_devices: bool


# qemu flushes its disk caches on SIGTERM, as libvirt's own destroy lets it.
VIRTUAL_DOMAIN = Profile(agent_name="PyVirtualDomain", virt_types=None, fixed_default_uri=None,
                         shutdown_modes=("acpi", "agent", "initctl", "signal", "paravirt"),
                         kill_term_grace_s=5.0, guest_devices=True)

# libvirt-lxc implements only initctl and signal shutdown; containers are never migrated.
# A container's libvirt_lxc controller has nothing to flush, and a SIGTERM reaching the
# container's init can be taken as a reboot request (busybox init does), which libvirt-lxc
# answers by starting the container again: the last resort kills the whole tree at once.
LXC_DOMAIN = Profile(agent_name="PyLXCDomain", virt_types=frozenset({"lxc"}),
                     fixed_default_uri="lxc:///system", shutdown_modes=("initctl", "signal"),
                     kill_term_grace_s=0.0, guest_devices=False)

PROFILES = {p.agent_name: p for p in (VIRTUAL_DOMAIN, LXC_DOMAIN)}
