"""What differs between the agents built on this package: one place, no copied code paths."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    agent_name: str
    # Domain types (<domain type=...>) this agent accepts; None accepts any.
    virt_types: frozenset[str] | None
    # Used when the hypervisor parameter is unset; None: libvirt's default URI (virsh uri).
    fixed_default_uri: str | None


    # Shutdown modes this hypervisor driver implements (params check shutdown_mode against it).
    shutdown_modes: tuple[str, ...]


VIRTUAL_DOMAIN = Profile(agent_name="PyVirtualDomain", virt_types=None, fixed_default_uri=None,
                         shutdown_modes=("acpi", "agent", "initctl", "signal", "paravirt"))

# libvirt-lxc implements only initctl and signal shutdown; containers are never migrated.
LXC_DOMAIN = Profile(agent_name="PyLXCDomain", virt_types=frozenset({"lxc"}),
                     fixed_default_uri="lxc:///system", shutdown_modes=("initctl", "signal"))

PROFILES = {p.agent_name: p for p in (VIRTUAL_DOMAIN, LXC_DOMAIN)}
