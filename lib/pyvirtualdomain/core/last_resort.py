"""The last resort when libvirt cannot stop a domain: find and kill its emulator process
(qemu, or a container's libvirt_lxc controller and everything below it) on this host."""

from __future__ import annotations

from ..deadline import Deadline
from ..errors import AgentError
from ..uri import is_local_uri
from ..virt import procs
from ..virt.domxml import DomainIdentity
from .context import Context
from .target import Target

# How long a domain libvirt calls gone may take to lose its emulator process.
EMULATOR_EXIT_WAIT_S = 2.0


def emulator_pids(ident: DomainIdentity) -> list[int] | None:
    """Running emulator pids of the domain on this host, None when they cannot be looked up."""
    if not procs.available():
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
        if not procs.available():
            ctx.log.info(f"{what} (psutil missing: emulator processes not checked)")
            return
        pids = procs.wait_gone(target.ident, deadline.bound(EMULATOR_EXIT_WAIT_S))
        if pids:
            kill_emulator(ctx, target, deadline, f"{what}, but its emulator (pid "
                          f"{', '.join(map(str, pids))}) still runs")
            return
    ctx.log.info(what)
