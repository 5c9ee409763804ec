"""stop: an ordered escalation over one budget (save the RAM state when asked, graceful
shutdown, destroy, then the last resort: kill the emulator); non-zero only when the domain
may still run."""

from __future__ import annotations

from typing import Callable

from ..core.context import QUERY_BOUND_S, STATE_POLL_S, Context, warn_params
from ..core.definitions import destroy_leftover
from ..core.last_resort import (
    conclude_without_libvirt,
    confirm_gone,
    emulator_pids,
    kill_emulator,
)
from ..core.recording import forget_record
from ..core.target import Target, close, connect, identify
from ..deadline import Deadline
from ..errors import (
    UNREACHABLE,
    AgentError,
    CallTimedOut,
    DomainBusy,
    DomainNotFound,
    GuestNotResponding,
    HypervisorDenied,
    HypervisorTimeout,
    LibvirtFact,
    OperationFailed,
    OperationInvalid,
    PermissionProblem,
    UnsupportedOperation,
)
from ..tuples import NamedTuple
from ..uri import is_local_uri
from ..virt.connection import Hypervisor, PendingCall
from ..virt.domain import PAUSED_POSTCOPY, Domain, DomainState

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


def _confirmed_off(ctx: Context, hv: Hypervisor, dom: Domain, target: Target,
                   deadline: Deadline) -> bool:
    """Whether libvirt confirms the domain is inactive or absent here. A transient domain
    that libvirt still lists while shut off is either a leftover (libvirt-lxc 9.0 leaves one
    when a restarted libvirtd finds the container died meanwhile) or a domain whose start is
    still running in libvirtd: destroying it removes a leftover, and only absence counts."""
    bound = deadline.bound(QUERY_BOUND_S)
    try:
        state, _ = dom.state(bound)
        if state != DomainState.SHUTOFF:
            return False
        if dom.is_persistent(bound):
            return not dom.is_active(bound)
        destroy_leftover(ctx, dom, bound)
        Domain.lookup(hv, target.ident, bound, name_fallback=not target.uuid_from_config)
    except DomainNotFound:
        return True
    except (CallTimedOut, DomainBusy):
        return False  # libvirtd answers, the domain is busy (a start or a job): no proof yet
    return False


def _emulators_replaced(target: Target, before: frozenset[int]) -> bool:
    """Whether the domain's emulator processes are all new ones: it was restarted."""
    if not before:
        return False
    now = emulator_pids(target.ident)
    return bool(now) and before.isdisjoint(now or ())


def _graceful(ctx: Context, dom: Domain, target: Target, until: Deadline) -> bool:
    """Ask the guest to shut down until libvirt confirms it is off or time is up. True
    when it is off; False to escalate.

    The request runs in the background: through the guest agent it returns only when the
    guest is off, and that slowness says nothing about libvirtd. It is re-sent (once the
    previous one returned) every SHUTDOWN_RESEND_S, as a request made before the guest's OS
    listens (early boot) is lost.

    A guest may answer with a reboot (busybox init takes a container's SIGTERM as one, and
    libvirt-lxc then starts the container again): when the domain's emulator process has
    been replaced, stop asking and let it be destroyed. A refusal ("domain is not running")
    is no proof of anything: qemu refuses to shut down a paused or still starting domain,
    which is then destroyed.

    Each of several shutdown modes is requested on its own: given initctl+signal together,
    libvirt-lxc 9.0 tries initctl only and, when the container has no /dev/initctl, sends
    no signal either (and reports success). A mode the guest cannot take (agent without a
    guest agent) is dropped; when none is left, the hypervisor's default method is tried
    before the domain is destroyed."""
    modes = ctx.params.shutdown_mode
    how = "+".join(modes) if modes else "the hypervisor's default method"
    requests: list[tuple[str, ...]] = [(m,) for m in modes] or [()]
    tried_default = not modes
    pending: dict[tuple[str, ...], PendingCall] = {}
    last_sent: float | None = None
    before = frozenset(emulator_pids(target.ident) or ()) if is_local_uri(target.uri) \
        else frozenset()
    last_check = until.now()
    hv = dom.hv
    while True:
        for request, call in list(pending.items()):
            if not call.done():
                continue
            del pending[request]
            fact = call.outcome()
            if fact is None:
                continue
            if isinstance(fact, DomainNotFound):
                return True
            if isinstance(fact, OperationInvalid):
                if _confirmed_off(ctx, hv, dom, target, until):
                    return True
                ctx.log.warning(f"domain {dom.name} refused to shut down ({fact.message}): "
                                "destroying it")
                return False
            if isinstance(fact, UnsupportedOperation | GuestNotResponding) and request:
                # The mode cannot work with this guest (no agent channel, or no agent
                # answering it): the next method, not a destroy (VirtualDomain never applied
                # shutdown_mode, so its resources were shut down by the default method).
                requests.remove(request)
                ctx.log.warning(f"graceful shutdown of {dom.name} ({'+'.join(request)}) not "
                                f"possible: {fact.message}")
                if not requests and not tried_default:
                    tried_default = True
                    requests.append(())
                    ctx.log.warning(f"falling back to the hypervisor's default shutdown method "
                                    f"for {dom.name}")
            elif isinstance(fact, UnsupportedOperation):
                requests.remove(request)
                ctx.log.warning(f"graceful shutdown of {dom.name} ({how}) not possible: "
                                f"{fact.message}")
            elif isinstance(fact, HypervisorTimeout):
                raise fact
            else:
                ctx.log.warning(f"shutdown request to {dom.name} failed: {fact.message}")
        if not requests:
            ctx.log.warning(f"no shutdown method works for {dom.name}: destroying it")
            return False
        now = until.now()
        if not pending and (last_sent is None or now - last_sent >= SHUTDOWN_RESEND_S):
            for request in requests:
                pending[request] = dom.request_shutdown(request)
            if last_sent is None:
                ctx.log.info(f"asked domain {dom.name} to shut down ({how})")
            else:
                ctx.log.debug(f"re-sent the shutdown request to {dom.name}")
            last_sent = now
            # an ACPI request returns at once: read its outcome before the state
            for call in pending.values():
                call.wait(min(STATE_POLL_S, until.remaining()))
            continue
        if _confirmed_off(ctx, hv, dom, target, until):
            return True
        if before and until.now() - last_check >= RESTART_CHECK_S:
            last_check = until.now()
            if _emulators_replaced(target, before):
                ctx.log.warning(f"domain {dom.name} restarted instead of shutting down (its "
                                f"guest took the request ({how}) as a reboot); destroying it")
                return _confirmed_off(ctx, hv, dom, target, until)
        if until.remaining() <= STATE_POLL_S:
            ctx.log.warning(f"domain {dom.name} did not shut down in {until.total:.0f}s"
                            f"{' (the request is still pending in libvirt)' if pending else ''}")
            return _confirmed_off(ctx, hv, dom, target, until)
        ctx.sleep(STATE_POLL_S)


def _destroy(ctx: Context, dom: Domain, target: Target, until: Deadline) -> bool:
    """Destroy until libvirt confirms the domain is off, or time is up. A destroy that waits
    on the domain's job lock (a start or another job still running in libvirtd) is retried."""
    ctx.log.info(f"destroying domain {dom.name}")
    while True:
        try:
            dom.destroy(max(0.5, until.remaining()))
        except DomainNotFound:
            return True
        except (OperationInvalid, OperationFailed, DomainBusy, CallTimedOut) as f:
            ctx.log.debug(f"destroy of {dom.name}: {f.message}")
        if _confirmed_off(ctx, dom.hv, dom, target, until):
            return True
        if until.remaining() <= STATE_POLL_S:
            return False
        ctx.sleep(STATE_POLL_S)


def _save_state(ctx: Context, dom: Domain, target: Target, until: Deadline) -> bool:
    from ..features.snapshot import save_snapshot

    return save_snapshot(ctx, dom, until)


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
    steps.append((_destroy, deadline.before(budget.kill_s)))
    return steps


def _postcopy_source(dom: Domain, deadline: Deadline) -> bool:
    """Whether the domain is the source of a post-copy migration past its switch-over and
    still under way: the guest runs on the target, which pulls its missing memory from here."""
    try:
        state, reason = dom.state(deadline.bound(QUERY_BOUND_S))
    except (CallTimedOut, DomainBusy):
        return False
    return state == DomainState.PAUSED and reason == PAUSED_POSTCOPY


def _wait_for_postcopy(ctx: Context, hv: Hypervisor, dom: Domain, target: Target,
                       deadline: Deadline) -> bool:
    """Neither shut down nor destroy the source of a running post-copy migration: the guest on
    the target needs the memory it still holds. Wait, inside the stop's budget, until the
    migration ends. True when the domain left this host; False when the migration ended
    otherwise (it failed: the stop goes on as for any domain that cannot run). At the
    deadline: fail, without touching it."""
    name = dom.name
    ctx.log.warning(f"domain {name} is the source of a post-copy migration still moving "
                    "memory: waiting for it to end (never destroyed meanwhile)")
    while True:
        try:
            state, reason = dom.state(deadline.bound(QUERY_BOUND_S))
        except DomainNotFound:
            return True
        except (CallTimedOut, DomainBusy):
            state, reason = DomainState.PAUSED, PAUSED_POSTCOPY
        if state == DomainState.SHUTOFF:
            return _confirmed_off(ctx, hv, dom, target, deadline)
        if not (state == DomainState.PAUSED and reason == PAUSED_POSTCOPY):
            ctx.log.warning(f"the post-copy migration of {name} ended with the domain "
                            f"{state.value} here: stopping it")
            return False
        if deadline.remaining() <= STATE_POLL_S:
            raise AgentError(f"cannot stop {name}: it is the source of a post-copy migration "
                             "still moving memory to the guest on the target; not destroyed")
        ctx.sleep(STATE_POLL_S)


def _stop_target(ctx: Context, target: Target, deadline: Deadline) -> None:
    name = target.ident.name
    problem = target.uri_problem
    if problem and target.uri_explicit:
        # start refuses such a URI, and there is no record of a start through another.
        ctx.log.warning(f"{problem}: nothing can have been started through it, nothing to stop")
        return
    if problem:
        # The node's default URI is unusable and no record says which one started it: the
        # domain may run through the URI libvirt had before. Not proof of anything.
        raise AgentError(f"cannot tell whether {name} still runs: default hypervisor URI "
                         f"unusable on this node: {problem}")
    budget = StopBudget.for_total(deadline.total)
    hv: Hypervisor | None = None
    try:
        hv = connect(ctx, target.uri, deadline.before(budget.kill_s),
                     retry_for_s=min(3.0, deadline.total / 10))
        _stop_through_libvirt(ctx, hv, target, deadline)
    except HypervisorDenied as f:
        raise PermissionProblem(f"cannot connect to {target.uri} to stop {name}: "
                                f"{f.message}") from None
    except UNREACHABLE as f:
        conclude_without_libvirt(ctx, target, deadline, f,
                                 f"libvirt at {target.uri} unreachable: {f.message}")
    except ImportError:
        conclude_without_libvirt(ctx, target, deadline, None,
                                 "libvirt-python is not installed")
    except LibvirtFact as f:
        conclude_without_libvirt(ctx, target, deadline, f, f"stopping {name} failed: "
                                                           f"{f.message}")
    finally:
        close(hv)


def _lookup(ctx: Context, hv: Hypervisor, target: Target, until: Deadline) -> Domain | None:
    """The domain, None when libvirt says it is absent. A lookup that waits on the domain
    (libvirt holds it while a start runs its hooks) is retried until ``until``."""
    while True:
        try:
            return Domain.lookup(hv, target.ident, until.bound(QUERY_BOUND_S),
                                 name_fallback=not target.uuid_from_config)
        except DomainNotFound:
            return None
        except CallTimedOut as slow:
            if until.remaining() <= STATE_POLL_S:
                raise
            ctx.log.warning(f"{slow.message}; asking again")


def _stop_through_libvirt(ctx: Context, hv: Hypervisor, target: Target,
                          deadline: Deadline) -> None:
    name = target.ident.name
    budget = StopBudget.for_total(deadline.total)
    dom = _lookup(ctx, hv, target, deadline.before(budget.kill_s))
    if dom is None:
        confirm_gone(ctx, target, f"domain {name} is not defined on {target.uri}", deadline)
        return
    if _confirmed_off(ctx, hv, dom, target, deadline):
        confirm_gone(ctx, target, f"domain {name} is shut off", deadline)
        return
    if _postcopy_source(dom, deadline) and _wait_for_postcopy(ctx, hv, dom, target, deadline):
        confirm_gone(ctx, target, f"domain {name} migrated away (post-copy)", deadline)
        return
    p = ctx.params
    if p.save_config_on_stop or p.sync_config_on_stop:
        from ..features.config_save import save_config

        save_config(ctx, dom, deadline.before(budget.destroy_s + budget.kill_s))
    for step, until in _escalation(ctx, deadline):
        if step(ctx, dom, target, until):
            confirm_gone(ctx, target, f"domain {name} stopped", deadline)
            return
    # libvirtd answers but did not stop the domain in time: kill it ourselves, and ask libvirt
    # whether it noticed (a killed qemu is seen at once)
    kill_emulator(ctx, target, deadline, f"libvirt did not stop {name} in time")
    if _confirmed_off(ctx, hv, dom, target, deadline):
        ctx.log.info(f"libvirt confirms {name} is off")
        return
    raise AgentError(f"cannot confirm that {name} stopped: libvirt did not stop it in time "
                     "and does not report it off")


def _owned_targets(ctx: Context, problem: AgentError, deadline: Deadline) -> list[Target]:
    """No readable config and no state record: neither proves that nothing of the resource
    runs here (the guest may have migrated in while the config was not mounted here, or its
    record could not be written). The domains carrying the resource's owner tag are its."""
    from ..core.ownership import find_owned

    search = find_owned(ctx, deadline)
    if search.targets:
        names = ", ".join(t.ident.name for t in search.targets)
        ctx.log.warning(f"{problem.reason}; no state record, but {names} carries this "
                        f"resource's owner tag ({search.how}): stopping it")
        return list(search.targets)
    if not search.absent_proven:
        raise AgentError(f"cannot tell whether a domain of this resource still runs here: "
                         f"{problem.reason}, no state record, and {search.how}")
    ctx.log.warning(f"{problem.reason}; no state record and no domain with this resource's "
                    f"owner tag ({search.how}): nothing to stop")
    return []


def stop(ctx: Context) -> None:
    warn_params(ctx)
    targets, problem = identify(ctx)
    deadline = ctx.deadline("stop")
    if not targets:
        assert problem is not None
        targets = _owned_targets(ctx, problem, deadline)
        if not targets:
            return
    failure: AgentError | None = None
    for target in targets:
        try:
            _stop_target(ctx, target, deadline)
        except AgentError as exc:
            failure = exc
    if failure is not None:
        raise failure
    forget_record(ctx)
    if ctx.env.under_pacemaker:
        from ..features import utilization

        utilization.forget(ctx)
