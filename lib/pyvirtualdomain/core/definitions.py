"""What else libvirt holds under the domain's name on this host: a persistent definition (a
hazard to fencing) or a leftover shut-off transient domain (blocks every new start)."""

from __future__ import annotations

from ..deadline import Deadline
from ..errors import DomainNotFound, LibvirtFact, NotInstalled, OperationInvalid
from ..virt.domain import Domain
from .context import QUERY_BOUND_S, Context


def persistent_hazard(ctx: Context, dom: Domain, deadline: Deadline) -> None:
    """A persistent definition of the domain on this host is never used silently nor
    deleted: libvirt could start it outside the cluster's control."""
    if not dom.is_persistent(deadline.bound(QUERY_BOUND_S)):
        return
    name = dom.name
    fix = (f"remove the host's definition with 'virsh undefine {name}' (the cluster's config "
           "file is not touched) and let the cluster run the domain")
    if dom.autostart(deadline.bound(QUERY_BOUND_S)):
        raise NotInstalled(f"domain {name} is also defined on this host with autostart: libvirt "
                           f"would start it outside the cluster after a reboot; {fix}")
    if ctx.env.remote_node:
        raise NotInstalled(f"guest node {ctx.env.remote_node}: domain {name} is also defined "
                           f"persistently on this host; {fix}")
    ctx.log.warning(f"domain {name} is also defined persistently on this host; the cluster "
                    f"runs it from its config file. Recommended: {fix}")


def remove_leftover(ctx: Context, dom: Domain, deadline: Deadline) -> bool:
    """libvirt drops a transient domain when it stops; one still listed as shut off is a
    leftover that makes every new start of its name fail ("already being started"). libvirt-lxc
    9.0 leaves one when a restarted libvirtd finds the container died while it was down.
    Destroying it removes it (libvirt answers that it was not running). True when removed."""
    try:
        if dom.is_persistent(deadline.bound(QUERY_BOUND_S)):
            return False
        destroy_leftover(ctx, dom, deadline.bound(QUERY_BOUND_S))
    except (OperationInvalid, DomainNotFound):
        pass
    except LibvirtFact as f:
        ctx.log.warning(f"cannot remove the shut-off transient domain {dom.name}: {f.message}")
        return False
    return True


def destroy_leftover(ctx: Context, dom: Domain, timeout_s: float) -> None:
    """Destroy a transient domain libvirt still lists as shut off (see remove_leftover); its
    answer that the domain is not running means it is gone now."""
    ctx.log.info(f"removing the leftover shut-off transient domain {dom.name}")
    try:
        dom.destroy(timeout_s)
    except OperationInvalid:
        pass
