"""snapshot: the guest's RAM saved to a file on stop and restored from it on start."""

from __future__ import annotations

import os

from ..core.context import Context
from ..deadline import Deadline
from ..errors import AgentError, LibvirtFact, NotInstalled
from ..ocf import OCFExit
from ..virt.connection import Hypervisor
from ..virt.domain import Domain


def snapshot_file(ctx: Context, name: str) -> str:
    return os.path.join(ctx.params.snapshot, f"{name}.state")


def save_snapshot(ctx: Context, dom: Domain, deadline: Deadline) -> bool:
    """Save the guest's RAM state (which also stops it); False when it could not be done."""
    path = snapshot_file(ctx, dom.name)
    try:
        os.makedirs(ctx.params.snapshot, mode=0o700, exist_ok=True)
        ctx.log.info(f"saving the state of {dom.name} to {path}")
        dom.save_state(path, deadline.remaining())
        os.chmod(path, 0o600)
        return True
    except (LibvirtFact, OSError) as exc:
        msg = exc.message if isinstance(exc, LibvirtFact) else str(exc)
        ctx.log.warning(f"cannot save the state of {dom.name}: {msg}; shutting it down")
        return False


def restore_snapshot(ctx: Context, hv: Hypervisor, name: str, deadline: Deadline) -> bool:
    """Start from a saved state when one exists; the file is removed once restored."""
    if not ctx.params.snapshot:
        return False
    path = snapshot_file(ctx, name)
    if not os.path.exists(path):
        return False
    ctx.log.info(f"restoring {name} from {path}")
    try:
        hv.restore_state(path, deadline.remaining())
    except LibvirtFact as f:
        raise AgentError(f"cannot restore {name} from {path}: {f.message} (remove the file to "
                         "start the domain afresh)") from None
    os.unlink(path)
    return True


def check_snapshot(ctx: Context) -> None:
    p = ctx.params
    if not p.snapshot:
        return
    if p.force_stop:
        raise AgentError("snapshot and force_stop exclude each other: a forced stop cannot "
                         "save the guest's state", OCFExit.ERR_CONFIGURED)
    if not os.path.isabs(p.snapshot):
        raise AgentError(f"snapshot={p.snapshot!r} is not an absolute directory path",
                         OCFExit.ERR_CONFIGURED)
    if not os.path.isdir(p.snapshot):
        raise NotInstalled(f"snapshot directory {p.snapshot} does not exist on this node")
