"""stop: an ordered escalation over one budget (save the RAM state when asked, graceful
shutdown, destroy, then the last resort: kill the emulator); non-zero only when the domain
may still run."""

from __future__ import annotations

from typing import Callable, NamedTuple

from ..core import record
from ..core.context import QUERY_BOUND_S, STATE_POLL_S, Context, warn_params
from ..core.definitions import remove_leftover
from ..core.last_resort import confirm_gone, emulator_pids, kill_emulator
from ..core.outcomes import UNREACHABLE
from ..core.target import Target, close, connect, identify
from ..deadline import Deadline
from ..errors import (
    AgentError,
    DomainNotFound,
    GuestNotResponding,
    HypervisorDenied,
    LibvirtFact,
    OperationFailed,
    OperationInvalid,
    PermissionProblem,
    UnsupportedOperation,
)
from ..uri import is_local_uri, uri_problem
from ..virt.connection import Hypervisor
from ..virt.domain import Domain, DomainState

# A shutdown request sent before the guest's OS listens (early boot) is lost: re-send it.
SHUTDOWN_RESEND_S = 3.0
# How often the graceful stop checks (by its processes) whether the domain restarted instead.
RESTART_CHECK_S = 1.0


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
    except (DomainNotFound, OperationInvalid):
        return True
    return state == DomainState.SHUTOFF


def _emulators_replaced(target: Target, before: frozenset[int]) -> bool:
    """Whether the domain's emulator processes are all new ones: it was restarted."""
    if not before:
        return False
    now = emulator_pids(target.ident)
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
    before = frozenset(emulator_pids(target.ident) or ()) if is_local_uri(target.uri) \
        else frozenset()
    last_check = until.now()
    while True:
        now = until.now()
        if last_sent is None or now - last_sent >= SHUTDOWN_RESEND_S:
            for request in list(requests):
                try:
                    dom.shutdown(request, until.bound(QUERY_BOUND_S))
                except (DomainNotFound, OperationInvalid):
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
        if until.remaining() <= STATE_POLL_S:
            ctx.log.warning(f"domain {dom.name} did not shut down in {until.total:.0f}s")
            return _gone(dom, until)
        ctx.sleep(STATE_POLL_S)


def _destroy(ctx: Context, dom: Domain, until: Deadline) -> bool:
    """Destroy until libvirt reports the domain gone or time is up."""
    while True:
        try:
            ctx.log.info(f"destroying domain {dom.name}")
            dom.destroy(max(0.5, until.remaining()))
        except (DomainNotFound, OperationInvalid):
            return True
        except OperationFailed as f:
            ctx.log.warning(f"destroy of {dom.name} failed: {f.message}")
        if _gone(dom, until):
            return True
        if until.remaining() <= STATE_POLL_S:
            return False
        ctx.sleep(STATE_POLL_S)


def _save_state(ctx: Context, dom: Domain, target: Target, until: Deadline) -> bool:
    from ..features.snapshot import save_snapshot

    return save_snapshot(ctx, dom, until)


def _destroy_step(ctx: Context, dom: Domain, target: Target, until: Deadline) -> bool:
    return _destroy(ctx, dom, until)


# A step of the escalation: True once the domain is stopped.
Step = Callable[[Context, Domain, Target, Deadline], bool]


def _escalation(ctx: Context, deadline: Deadline) -> list[tuple[Step, Deadline]]:
    """The steps this stop takes, each with the time it may use: the last resort keeps its
    share of the budget whatever the steps before it do."""
    budget = StopBudget.for_total(deadline.total)
    gentle_until = deadline.before(budget.destroy_s + budget.kill_s)
    steps: list[tuple[Step, Deadline]] = []
    if not ctx.params.force_stop:
        if ctx.params.snapshot:
            steps.append((_save_state, gentle_until))
        steps.append((_graceful, gentle_until))
    steps.append((_destroy_step, deadline.before(budget.kill_s)))
    return steps


def _stop_target(ctx: Context, target: Target, deadline: Deadline) -> None:
    name = target.ident.name
    problem = uri_problem(target.uri)
    if problem:
        ctx.log.warning(f"{problem}: nothing can have been started through it, nothing to stop")
        return
    budget = StopBudget.for_total(deadline.total)
    hv: Hypervisor | None = None
    try:
        hv = connect(ctx, target.uri, deadline.before(budget.kill_s),
                     retry_for_s=min(3.0, deadline.total / 10))
        try:
            dom = Domain.lookup(hv, target.ident, deadline.bound(QUERY_BOUND_S),
                                name_fallback=not target.uuid_from_config)
        except DomainNotFound:
            confirm_gone(ctx, target, f"domain {name} is not defined on {target.uri}", deadline)
            return
        if _gone(dom, deadline):
            remove_leftover(ctx, dom, deadline)
            confirm_gone(ctx, target, f"domain {name} is shut off", deadline)
            return
        p = ctx.params
        if p.save_config_on_stop or p.sync_config_on_stop:
            from ..features.config_save import save_config

            save_config(ctx, dom, deadline.before(budget.destroy_s + budget.kill_s))
        for step, until in _escalation(ctx, deadline):
            if step(ctx, dom, target, until):
                confirm_gone(ctx, target, f"domain {name} stopped", deadline)
                return
        kill_emulator(ctx, target, deadline, f"libvirt did not stop {name} in time")
    except HypervisorDenied as f:
        raise PermissionProblem(f"cannot connect to {target.uri} to stop {name}: "
                                f"{f.message}") from None
    except UNREACHABLE as f:
        kill_emulator(ctx, target, deadline, f"libvirt at {target.uri} unreachable: "
                                             f"{f.message}")
    except ImportError:
        kill_emulator(ctx, target, deadline, "libvirt-python is not installed")
    except LibvirtFact as f:
        kill_emulator(ctx, target, deadline, f"stopping {name} failed: {f.message}")
    finally:
        close(hv)


def stop(ctx: Context) -> None:
    warn_params(ctx)
    targets, problem = identify(ctx)
    if not targets:
        assert problem is not None
        # No readable config and no record of a start since boot (the record lives on tmpfs):
        # this agent has not started the domain on this host, so nothing of ours runs here.
        ctx.log.warning(f"{problem.reason}; no record of a start on this host: nothing to stop")
        return
    deadline = ctx.deadline("stop")
    failure: AgentError | None = None
    for target in targets:
        try:
            _stop_target(ctx, target, deadline)
        except AgentError as exc:
            failure = exc
    if failure is not None:
        raise failure
    record.remove(ctx.record_path)
    if ctx.env.under_pacemaker:
        from ..features import utilization

        utilization.forget(ctx)
