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


VIRTUAL_DOMAIN = Profile(agent_name="PyVirtualDomain", virt_types=None, fixed_default_uri=None)

PROFILES = {p.agent_name: p for p in (VIRTUAL_DOMAIN,)}
