"""The last resort when libvirt cannot stop a domain: find and kill its emulator process
(qemu, or a container's libvirt_lxc controller and everything below it) on this host."""

from __future__ import annotations

from ..deadline import Deadline
from ..ocf import OCFExit
from ..uri import is_local_uri
from ..virt.domxml import DomainIdentity
from .context import Context, Result
from .target import Target


def _emulator_pids(ident: DomainIdentity) -> list[int] | None:
    """Running emulator pids of the domain on this host, None when they cannot be looked up."""
    try:
        from ..virt import procs

        return procs.running_emulator_pids(ident)
    except ImportError:
        return None


def _kill_emulator(ctx: Context, target: Target, deadline: Deadline, why: str) -> Result:
    """The last resort when libvirt cannot (or will not) stop the domain."""
    name = target.ident.name
    if not is_local_uri(target.uri):
        return Result(OCFExit.ERR_GENERIC, f"{name} may still run on remote hypervisor "
                                           f"{target.uri} ({why})")
    try:
        from ..virt import procs
    except ImportError:
        return Result(OCFExit.ERR_GENERIC, f"psutil is not installed, cannot check whether "
                                           f"{name} still runs ({why})")
    pids = procs.running_emulator_pids(target.ident)
    if not pids:
        ctx.log.info(f"{why}; no emulator process of {name} runs on this host")
        return Result(OCFExit.SUCCESS)
    ctx.log.warning(f"{why}; killing the emulator of {name} (pid {', '.join(map(str, pids))})")
    term_s = min(ctx.profile.kill_term_grace_s, deadline.remaining() / 3)
    _, alive = procs.kill_emulators(target.ident, term_s, max(0.2, deadline.remaining() - 0.2))
    if alive:
        return Result(OCFExit.ERR_GENERIC, f"emulator of {name} (pid "
                                           f"{', '.join(map(str, alive))}) survived SIGKILL "
                                           f"({why})")
    ctx.log.info(f"emulator of {name} killed")
    return Result(OCFExit.SUCCESS)


def _confirm_gone(ctx: Context, target: Target, what: str, deadline: Deadline) -> Result:
    """libvirt says the domain is gone; on a local hypervisor, make sure no emulator lingers
    (an emulator libvirt lost track of still runs the guest)."""
    if is_local_uri(target.uri):
        try:
            from ..virt import procs
        except ImportError:
            ctx.log.info(f"{what} (psutil missing: emulator processes not checked)")
            return Result(OCFExit.SUCCESS)
        pids = procs.wait_gone(target.ident, deadline.bound(2.0))
        if pids:
            return _kill_emulator(ctx, target, deadline, f"{what}, but its emulator (pid "
                                  f"{', '.join(map(str, pids))}) still runs")
    ctx.log.info(what)
    return Result(OCFExit.SUCCESS)
