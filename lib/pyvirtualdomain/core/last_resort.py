"""What stop may conclude when libvirt cannot confirm that the domain stopped, and the last
resort: find and kill the domain's processes (qemu; a container's libvirt_lxc controller and
every process of the container) on this host.

The rule (docs/architecture.md): stop returns 0 only when libvirt confirms the domain is
inactive or absent here, or when libvirt is verifiably unreachable (no socket, connection
refused) and no process of the domain exists. ``conclude_without_libvirt`` is where stop
applies its second half; anything else that is not proof ends in a non-zero exit, and
Pacemaker fences the node rather than risk two copies of the guest."""

from __future__ import annotations

import errno

from ..deadline import Deadline
from ..errors import AgentError, DriverMissing, HypervisorUnavailable, LibvirtFact
from ..uri import is_local_uri
from ..virt import procs
from ..virt.domxml import DomainIdentity
from .context import Context
from .target import Target

# How long a domain libvirt calls gone may take to lose its emulator process.
EMULATOR_EXIT_WAIT_S = 2.0


def emulator_pids(ident: DomainIdentity) -> list[int] | None:
    """Running emulator pids of the domain on this host, None when they cannot be looked up."""
    if not procs.lookup_available(ident):
        return None
    return procs.running_emulator_pids(ident)


def kill_emulator(ctx: Context, target: Target, deadline: Deadline, why: str) -> None:
    """Kill the domain's emulator; raise when it may still run."""
    name = target.ident.name
    if not is_local_uri(target.uri):
        raise AgentError(f"{name} may still run on remote hypervisor {target.uri} ({why})")
    pids = emulator_pids(target.ident)
    if pids is None:
        raise AgentError(f"psutil is not installed, cannot check whether {name} still runs "
                         f"({why})")
    if not pids:
        ctx.log.info(f"{why}; no emulator process of {name} runs on this host")
        return
    if not procs.available():
        raise AgentError(f"{name} still runs (pid {', '.join(map(str, pids))}): psutil is not "
                         f"installed to kill its emulator ({why})")
    ctx.log.warning(f"{why}; killing the emulator of {name} (pid {', '.join(map(str, pids))})")
    term_s = min(ctx.profile.kill_term_grace_s, deadline.remaining() / 3)
    _, alive = procs.kill_emulators(target.ident, term_s, max(0.2, deadline.remaining() - 0.2))
    if alive:
        raise AgentError(f"emulator of {name} (pid {', '.join(map(str, alive))}) survived "
                         f"SIGKILL ({why})")
    ctx.log.info(f"emulator of {name} killed")


def confirm_gone(ctx: Context, target: Target, what: str, deadline: Deadline) -> None:
    """libvirt says the domain is gone; on a local hypervisor, make sure no emulator lingers
    (an emulator libvirt lost track of still runs the guest)."""
    if is_local_uri(target.uri):
        if not procs.lookup_available(target.ident):
            ctx.log.info(f"{what} (psutil missing: emulator processes not checked)")
            return
        pids = procs.wait_gone(target.ident, deadline.bound(EMULATOR_EXIT_WAIT_S))
        if pids:
            kill_emulator(ctx, target, deadline, f"{what}, but its emulator (pid "
                          f"{', '.join(map(str, pids))}) still runs")
            return
    ctx.log.info(what)


def verifiably_unreachable(fact: LibvirtFact | None) -> bool:
    """Whether libvirt's answer proves that no domain of this URI can run here: no daemon
    socket, a connection refused, or a daemon without the URI's driver. A hung daemon, a
    broken client configuration or a dropped connection prove nothing."""
    if isinstance(fact, DriverMissing):
        return True
    return isinstance(fact, HypervisorUnavailable) and fact.errno in (errno.ENOENT,
                                                                      errno.ECONNREFUSED)


def conclude_without_libvirt(ctx: Context, target: Target, deadline: Deadline,
                             fact: LibvirtFact | None, why: str) -> None:
    """libvirt did not confirm that the domain stopped (``fact``: why not, None when
    libvirtd answers but would not stop it). Kill what runs of the domain here, then return
    only under the rule; raise otherwise."""
    kill_emulator(ctx, target, deadline, why)
    if not verifiably_unreachable(fact):
        raise AgentError(f"cannot confirm that {target.ident.name} stopped: {why}")
