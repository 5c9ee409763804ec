"""stop: graceful shutdown, then destroy, then the last resort, over one budget; non-zero
only when the domain may still run."""

from __future__ import annotations

from typing import NamedTuple

from ..core import record as staterec
from ..core.context import (
    POLL_S,
    QUERY_BOUND_S,
    RESTART_CHECK_S,
    SHUTDOWN_RESEND_S,
    Context,
    Result,
    _warn_params,
)
from ..core.definitions import _remove_leftover
from ..core.last_resort import _confirm_gone, _emulator_pids, _kill_emulator
from ..core.target import Target, _close, _connect, _identify
from ..deadline import Deadline
from ..errors import (
    DomainNotFound,
    DomainNotRunning,
    DriverMissing,
    GuestNotResponding,
    HypervisorDenied,
    HypervisorTimeout,
    HypervisorUnavailable,
    LibvirtFact,
    OperationFailed,
    UnsupportedOperation,
)
from ..ocf import OCFExit
from ..uri import is_local_uri, uri_problem
from ..virt.connection import Hypervisor
from ..virt.domain import Domain, DomainState


class StopBudget(NamedTuple):
    """How the stop's time is split: graceful phase, destroy, and the last resort."""

    kill_s: float
    destroy_s: float

    @classmethod
    def for_total(cls, total_s: float) -> StopBudget:
        kill = 3.0 if total_s >= 20 else 1.5
        destroy = min(20.0, max(3.0, total_s * 0.25))
        return cls(kill_s=kill, destroy_s=destroy)


def _gone(dom: Domain, deadline: Deadline) -> bool:
    try:
        state, _ = dom.state(deadline.bound(QUERY_BOUND_S))
    except (DomainNotFound, DomainNotRunning):
        return True
    return state == DomainState.SHUTOFF


def _emulators_replaced(target: Target, before: frozenset[int]) -> bool:
    """Whether the domain's emulator processes are all new ones: it was restarted."""
    if not before:
        return False
    now = _emulator_pids(target.ident)
    return bool(now) and before.isdisjoint(now or ())


def _graceful(ctx: Context, dom: Domain, target: Target, until: Deadline) -> bool:
    """Ask the guest to shut down, re-sending the request, until it is off or time is up.

    A guest may answer the request with a reboot (busybox init takes a container's SIGTERM
    as one, and libvirt-lxc then starts the container again): when the domain's emulator
    process has been replaced, stop asking and let it be destroyed.

    Each of several shutdown modes is requested on its own: given initctl+signal together,
    libvirt-lxc 9.0 tries initctl only and, when the container has no /dev/initctl, sends
    no signal either (and reports success)."""
    modes = ctx.params.shutdown_mode
    how = "+".join(modes) if modes else "the hypervisor's default method"
    requests: list[tuple[str, ...]] = [(m,) for m in modes] or [()]
    last_sent: float | None = None
    before = frozenset(_emulator_pids(target.ident) or ()) if is_local_uri(target.uri) \
        else frozenset()
    last_check = until.now()
    while True:
        now = until.now()
        if last_sent is None or now - last_sent >= SHUTDOWN_RESEND_S:
            for request in list(requests):
                try:
                    dom.shutdown(request, until.bound(QUERY_BOUND_S))
                except (DomainNotFound, DomainNotRunning):
                    return True
                except UnsupportedOperation as f:
                    requests.remove(request)
                    ctx.log.warning(f"graceful shutdown of {dom.name} ({'+'.join(request) or how}"
                                    f") not possible: {f.message}")
                except (GuestNotResponding, OperationFailed) as f:
                    ctx.log.warning(f"shutdown request to {dom.name} failed: {f.message}")
            if not requests:
                ctx.log.warning(f"no shutdown method works for {dom.name}: destroying it")
                return False
            if last_sent is None:
                ctx.log.info(f"asked domain {dom.name} to shut down ({how})")
            else:
                ctx.log.debug(f"re-sent the shutdown request to {dom.name}")
            last_sent = now
        if _gone(dom, until):
            return True
        if before and until.now() - last_check >= RESTART_CHECK_S:
            last_check = until.now()
            if _emulators_replaced(target, before):
                ctx.log.warning(f"domain {dom.name} restarted instead of shutting down (its "
                                f"guest took the request ({how}) as a reboot); destroying it")
                return _gone(dom, until)
        if until.remaining() <= POLL_S:
            ctx.log.warning(f"domain {dom.name} did not shut down in {until.total:.0f}s")
            return _gone(dom, until)
        ctx.sleep(POLL_S)


def _destroy(ctx: Context, dom: Domain, until: Deadline) -> bool:
    """Destroy until libvirt reports the domain gone or time is up."""
    while True:
        try:
            ctx.log.info(f"destroying domain {dom.name}")
            dom.destroy(max(0.5, until.remaining()))
        except (DomainNotFound, DomainNotRunning):
            return True
        except OperationFailed as f:
            ctx.log.warning(f"destroy of {dom.name} failed: {f.message}")
        if _gone(dom, until):
            return True
        if until.remaining() <= POLL_S:
            return False
        ctx.sleep(POLL_S)


def _stop_target(ctx: Context, target: Target, deadline: Deadline) -> Result:
    name = target.ident.name
    problem = uri_problem(target.uri)
    if problem:
        ctx.log.warning(f"{problem}: nothing can have been started through it, nothing to stop")
        return Result(OCFExit.SUCCESS)
    budget = StopBudget.for_total(deadline.total)
    hv: Hypervisor | None = None
    try:
        hv = _connect(ctx, target.uri, deadline.before(budget.kill_s),
                      retry_for_s=min(3.0, deadline.total / 10))
        try:
            dom = Domain.lookup(hv, target.ident, deadline.bound(QUERY_BOUND_S),
                         name_fallback=not target.uuid_from_config)
        except DomainNotFound:
            return _confirm_gone(ctx, target, f"domain {name} is not defined on {target.uri}",
                                     deadline)
        if _gone(dom, deadline):
            _remove_leftover(ctx, dom, deadline)
            return _confirm_gone(ctx, target, f"domain {name} is shut off", deadline)
        stopped = False
        p = ctx.params
        if p.save_config_on_stop or p.sync_config_on_stop or p.snapshot:
            from ..features.config_save import save_config
            from ..features.snapshot import save_snapshot

            save_config(ctx, dom, deadline.before(budget.destroy_s + budget.kill_s))
            if p.snapshot and not p.force_stop:
                stopped = save_snapshot(ctx, dom,
                                        deadline.before(budget.destroy_s + budget.kill_s))
        if not stopped and not p.force_stop:
            stopped = _graceful(ctx, dom, target,
                                deadline.before(budget.destroy_s + budget.kill_s))
        if not stopped:
            stopped = _destroy(ctx, dom, deadline.before(budget.kill_s))
        if stopped:
            return _confirm_gone(ctx, target, f"domain {name} stopped", deadline)
        return _kill_emulator(ctx, target, deadline, f"libvirt did not stop {name} in time")
    except HypervisorDenied as f:
        return Result(OCFExit.ERR_PERM, f"cannot connect to {target.uri} to stop {name}: "
                                        f"{f.message}")
    except (HypervisorUnavailable, HypervisorTimeout, DriverMissing) as f:
        return _kill_emulator(ctx, target, deadline, f"libvirt at {target.uri} unreachable: "
                                                     f"{f.message}")
    except ImportError:
        return _kill_emulator(ctx, target, deadline, "libvirt-python is not installed")
    except LibvirtFact as f:
        return _kill_emulator(ctx, target, deadline, f"stopping {name} failed: {f.message}")
    finally:
        _close(hv)


def stop(ctx: Context) -> Result:
    _warn_params(ctx)
    targets, problem = _identify(ctx)
    if not targets:
        assert problem is not None
        # No readable config and no record of a start since boot (the record lives on tmpfs):
        # this agent has not started the domain on this host, so nothing of ours runs here.
        ctx.log.warning(f"{problem.reason}; no record of a start on this host: nothing to stop")
        return Result(OCFExit.SUCCESS)
    deadline = ctx.deadline("stop")
    result = Result(OCFExit.SUCCESS)
    for target in targets:
        r = _stop_target(ctx, target, deadline)
        if r.rc != OCFExit.SUCCESS:
            result = r
    if result.rc == OCFExit.SUCCESS:
        staterec.remove(ctx.record_path)
        if ctx.env.under_pacemaker:
            from ..features import utilization

            utilization.forget(ctx)
    return result
