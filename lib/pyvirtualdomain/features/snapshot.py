"""snapshot: the guest's RAM saved to a file on stop and restored from it on start.

A saved state is only safe to restore over the disk it was saved with. It is restored only
when it belongs to this domain (the uuid in the file) and no cold start of the domain has
happened since (every cold start leaves ``<name>.coldstart`` in the directory, and a state
file older than it is superseded). Both checks see only what the directory holds, so the
directory must be shared by every node that may run the domain (validate-all warns when it
is not on shared storage), and start refuses (5) when it is missing rather than cold-start
past a state file that is merely not mounted. Files set aside are renamed, never deleted."""

from __future__ import annotations

import os
import time

from ..core.context import QUERY_BOUND_S, Context
from ..deadline import Deadline
from ..errors import (
    AgentError,
    CallTimedOut,
    ConfigError,
    HypervisorTimeout,
    LibvirtFact,
    NotInstalled,
)
from ..fileio import atomic_write, dump_fields
from ..virt.connection import Hypervisor
from ..virt.domain import Domain
from ..virt.domxml import DomainIdentity, parse_identity
from ..virt.storage import SHARED_FILESYSTEMS, filesystem_of


def snapshot_file(ctx: Context, name: str) -> str:
    return os.path.join(ctx.params.snapshot, f"{name}.state")


def cold_start_marker(ctx: Context, name: str) -> str:
    return os.path.join(ctx.params.snapshot, f"{name}.coldstart")


def save_snapshot(ctx: Context, dom: Domain, deadline: Deadline) -> bool:
    """Save the guest's RAM state (which also stops it); False when it could not be done.
    The directory is never created: missing, it is a shared one that is not mounted."""
    path = snapshot_file(ctx, dom.name)
    if not os.path.isdir(ctx.params.snapshot):
        ctx.log.warning(f"state of {dom.name} not saved: snapshot directory "
                        f"{ctx.params.snapshot} does not exist (not mounted?); shutting it down")
        return False
    try:
        ctx.log.info(f"saving the state of {dom.name} to {path}")
        dom.save_state(path, deadline.remaining())
        os.chmod(path, 0o600)
        return True
    except (LibvirtFact, OSError) as exc:
        msg = exc.message if isinstance(exc, LibvirtFact) else str(exc)
        ctx.log.warning(f"cannot save the state of {dom.name}: {msg}; shutting it down")
        return False


def _set_aside(ctx: Context, path: str, why: str) -> None:
    """Rename a state file that must not be restored (it stays for the admin to judge)."""
    aside = f"{path}.{why}-{time.strftime('%Y%m%dT%H%M%S')}"
    os.replace(path, aside)
    ctx.log.warning(f"{path} set aside as {aside}: not restored")


def restore_snapshot(ctx: Context, hv: Hypervisor, ident: DomainIdentity,
                     deadline: Deadline) -> bool:
    """Start from the saved state when there is one that may be restored; the file is removed
    once restored. False: start the domain afresh (a cold start)."""
    name = ident.name
    if not os.path.isdir(ctx.params.snapshot):
        raise NotInstalled(f"snapshot directory {ctx.params.snapshot} does not exist on this "
                           f"node (not mounted?): a saved state of {name} may be there")
    path = snapshot_file(ctx, name)
    try:
        saved = os.stat(path)
    except FileNotFoundError:
        return False
    try:
        saved_xml = hv.save_image_xml(path, deadline.bound(QUERY_BOUND_S))
        owner = parse_identity(saved_xml.encode(), path)
    except (LibvirtFact, AgentError) as exc:
        why = exc.message if isinstance(exc, LibvirtFact) else exc.reason
        raise AgentError(f"cannot read the saved state {path}: {why} (move it away to start "
                         f"{name} afresh)") from None
    if owner.name != name or (ident.uuid is not None and owner.uuid != ident.uuid):
        ctx.log.warning(f"saved state {path} belongs to another domain ({owner.name}, uuid "
                        f"{owner.uuid}), not {name} (uuid {ident.uuid})")
        _set_aside(ctx, path, "foreign")
        return False
    try:
        last_cold_start = os.stat(cold_start_marker(ctx, name)).st_mtime_ns
    except FileNotFoundError:
        last_cold_start = None
    if last_cold_start is not None and saved.st_mtime_ns <= last_cold_start:
        ctx.log.warning(f"saved state {path} is superseded: {name} was started afresh after it "
                        "was saved")
        _set_aside(ctx, path, "superseded")
        return False
    # Once restored, the image must never be restored again (the guest's disk moves on from
    # here), whatever fails afterwards: it leaves its name before the restore, and is not
    # restored at all when it cannot (a read-only directory).
    restoring = f"{path}.restoring-{time.strftime('%Y%m%dT%H%M%S')}"
    try:
        os.rename(path, restoring)
    except OSError as exc:
        raise AgentError(f"cannot restore {name}: {path} cannot be renamed before the restore "
                         f"({exc.strerror}), and an image that cannot be marked could be "
                         "restored twice") from None
    ctx.log.info(f"restoring {name} from {path} (renamed {restoring})")
    try:
        hv.restore_state(restoring, deadline.remaining())
    except (CallTimedOut, HypervisorTimeout) as f:
        # libvirt may still be restoring it: the image keeps its new name.
        raise AgentError(f"restore of {name} from {restoring} did not finish in time: "
                         f"{f.message}") from None
    except LibvirtFact as f:
        try:
            os.rename(restoring, path)  # libvirt refused it: not restored, keep it for later
        except OSError:
            pass
        raise AgentError(f"cannot restore {name} from {path}: {f.message} (move the file away "
                         "to start the domain afresh)") from None
    try:
        os.unlink(restoring)
    except OSError as exc:
        ctx.log.warning(f"restored {name}; {restoring} cannot be removed ({exc.strerror}): "
                        "under that name it is never restored again")
    return True


def record_cold_start(ctx: Context, ident: DomainIdentity) -> None:
    """A cold start supersedes every state saved before it: recorded before the domain is
    created, so that a start that cannot record it creates nothing."""
    path = cold_start_marker(ctx, ident.name)
    try:
        atomic_write(path, dump_fields({"uuid": ident.uuid or "", "node": os.uname().nodename,
                                        "started_at": str(time.time())}), mode=0o600)
    except OSError as exc:
        raise AgentError(f"cannot write {path}: {exc.strerror} (a saved state older than this "
                         "start could later be restored)") from None


def check_snapshot(ctx: Context) -> None:
    p = ctx.params
    if not p.snapshot:
        return
    if p.force_stop:
        raise ConfigError("snapshot and force_stop exclude each other: a forced stop cannot "
                          "save the guest's state")
    if not os.path.isabs(p.snapshot):
        raise ConfigError(f"snapshot={p.snapshot!r} is not an absolute directory path")
    if not os.path.isdir(p.snapshot):
        raise NotInstalled(f"snapshot directory {p.snapshot} does not exist on this node")
    kind = filesystem_of(p.snapshot)
    if kind is not None and kind not in SHARED_FILESYSTEMS:
        ctx.log.warning(f"snapshot directory {p.snapshot} is not on shared storage ({kind}): "
                        "a state saved on this node is invisible to the others, which may "
                        "start the domain afresh; a later start here would restore old memory "
                        "over a disk that moved on")
