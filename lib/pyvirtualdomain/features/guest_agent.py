"""Guest health at OCF_CHECK_LEVEL=20: the qemu guest agent must answer a ping.

A guest whose kernel hung, or whose watchdog fired with action none or dump, still "runs" for
libvirt; its guest agent stops answering. One miss only logs (the guest may be busy); the
monitor reports failure after guest_agent_misses in a row. The count is kept beside the state
record (HA_RSCTMP, a tmpfs: it survives only as long as the host, like the guest), tied to
the start it counts for."""

from __future__ import annotations

from ..core import record
from ..core.context import Context
from ..deadline import Deadline
from ..errors import (
    AgentError,
    CallTimedOut,
    GuestNotResponding,
    OperationFailed,
    OperationInvalid,
    UnsupportedOperation,
)
from ..fileio import atomic_write, dump_fields, parse_fields
from ..virt.domain import Domain

# At most this long for one ping, and never more than a third of what the monitor has left.
PING_BOUND_S = 5.0


def _count_path(ctx: Context) -> str:
    return record.sibling(ctx.record_path, record.AGENT_MISSES_SUFFIX)


def _started_at(ctx: Context) -> str:
    rec = record.load(ctx.record_path)
    return "" if rec is None else repr(rec.started_at)


def _misses(ctx: Context, started: str) -> int:
    try:
        with open(_count_path(ctx), "rb") as f:
            fields = parse_fields(f.read(4096))
        return int(fields.get("misses", "0")) if fields.get("started_at") == started else 0
    except (OSError, ValueError):
        return 0


def _set_misses(ctx: Context, started: str, misses: int) -> None:
    path = _count_path(ctx)
    try:
        if misses == 0:
            import os

            os.unlink(path)
        else:
            atomic_write(path, dump_fields({"started_at": started, "misses": str(misses)}),
                         mode=0o644)
    except FileNotFoundError:
        pass
    except OSError as exc:
        ctx.log.warning(f"cannot keep the guest agent's miss count in {path}: {exc.strerror}")


def check_guest_agent(ctx: Context, dom: Domain, deadline: Deadline) -> None:
    """Ping the guest agent; raise once it missed guest_agent_misses monitors in a row."""
    started = _started_at(ctx)
    misses = _misses(ctx, started)
    limit = ctx.params.guest_agent_misses
    try:
        dom.agent_ping(max(1.0, min(PING_BOUND_S, deadline.remaining() / 3)))
    except UnsupportedOperation as f:
        ctx.log.warning(f"OCF_CHECK_LEVEL=20 asks for a guest agent check, but {dom.name} has "
                        f"no guest agent channel: the check cannot work ({f.message})")
        return
    except (GuestNotResponding, CallTimedOut, OperationFailed, OperationInvalid) as f:
        misses += 1
        _set_misses(ctx, started, misses)
        if misses >= limit:
            raise AgentError(f"guest agent of {dom.name} did not answer {misses} monitors in a "
                             f"row (guest hung?): {f.message}") from None
        ctx.log.warning(f"guest agent of {dom.name} did not answer ({misses} of {limit} misses "
                        f"before the domain is reported failed): {f.message}")
        return
    if misses:
        ctx.log.info(f"guest agent of {dom.name} answers again after {misses} miss(es)")
        _set_misses(ctx, started, 0)
    ctx.log.debug(f"guest agent of {dom.name} answered")
