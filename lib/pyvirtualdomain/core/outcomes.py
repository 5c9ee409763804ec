"""The one place that turns a libvirt fact into how an action ends, for every action that has
no better answer of its own (monitor and stop have one when libvirt is unreachable: they look
for the domain's processes; see actions/monitor.py and core/last_resort.py)."""

from __future__ import annotations

from ..errors import (
    UNREACHABLE,
    AgentError,
    ClientMisconfigured,
    DriverMissing,
    HypervisorDenied,
    LibvirtFact,
    NotInstalled,
    PermissionProblem,
)

LIBVIRT_PYTHON_MISSING = "libvirt-python is not installed for this interpreter"


def libvirt_python_missing() -> NotInstalled:
    return NotInstalled(LIBVIRT_PYTHON_MISSING)


def fact_to_error(fact: LibvirtFact, uri: str, doing: str) -> AgentError:
    """``doing`` says what failed, e.g. "cannot start vm1"; it leads the reason."""
    if isinstance(fact, HypervisorDenied):
        return PermissionProblem(f"cannot connect to {uri}: {fact.message}")
    if isinstance(fact, ClientMisconfigured):
        return NotInstalled(f"libvirt's client configuration is unusable on this node: "
                            f"{fact.message}")
    if isinstance(fact, DriverMissing):
        return NotInstalled(f"no libvirt driver for {uri} on this node: {fact.message}")
    if isinstance(fact, UNREACHABLE):
        return AgentError(f"{doing}: libvirt at {uri}: {fact.message}")
    return AgentError(f"{doing}: {fact.message}")
