"""monitor / status: running 0, cleanly off or absent 7, failed 1; a probe (interval 0) never
reports an error for "cannot know".

The recurring monitor of a running domain is the hot path: what only the other paths need
(process scans, recording, the fact-to-outcome mapping) is imported where it is used."""

from __future__ import annotations

from ..core import record
from ..core.context import QUERY_BOUND_S, Context, warn_params
from ..core.target import Target, close, connect, identify, unusable_uri
from ..deadline import Deadline
from ..errors import (
    UNREACHABLE,
    AgentError,
    ClientMisconfigured,
    ConfigError,
    DomainNotFound,
    LibvirtFact,
    NotInstalled,
    NotRunning,
)
from ..virt.connection import Hypervisor
from ..virt.domain import (
    PAUSED_CRASHED,
    PAUSED_IOERROR,
    PAUSED_REASONS,
    PAUSED_WATCHDOG,
    RUNNING_STATES,
    Domain,
    DomainState,
    postcopy_failed,
)


def _not_running(target: Target, reason: str) -> AgentError:
    """libvirt says the domain does not run here: believe it unless processes of the domain
    still run on this host. libvirt loses track of a container whose controller died (OOM,
    crash) while libvirtd was down: init and its children run on, re-parented."""
    from ..uri import is_local_uri

    if is_local_uri(target.uri):
        from ..core.last_resort import emulator_pids

        pids = emulator_pids(target.ident)
        if pids:
            return AgentError(f"{reason} per libvirt, but processes of it still run here (pid "
                              f"{', '.join(map(str, pids[:8]))}): libvirt lost track of it")
    return NotRunning(reason)


def _check_state(ctx: Context, state: DomainState, reason: int, target: Target) -> None:
    name = target.ident.name
    if postcopy_failed(state, reason):
        # Listed, even "running", but part of its memory is on the other host (issue 13).
        raise AgentError(f"domain {name} cannot run here: its post-copy migration failed "
                         "after the switch-over")
    if state == DomainState.PAUSED and not ctx.env.is_probe:
        # Paused for a reason that will not fix itself: the guest does no work (a probe,
        # which only asks where the domain is, still says it is here).
        stuck = reason in (PAUSED_WATCHDOG, PAUSED_CRASHED) or (
            reason == PAUSED_IOERROR and ctx.params.fail_on_io_error)
        if stuck:
            raise AgentError(f"domain {name} is paused {PAUSED_REASONS.get(reason, '')} and "
                             "will not resume by itself")
    if state in RUNNING_STATES:
        return
    if state == DomainState.SHUTOFF:
        raise _not_running(target, f"domain {name} is shut off")
    if state == DomainState.CRASHED:
        raise AgentError(f"domain {name} has crashed")
    raise AgentError(f"domain {name} is in state '{state.value}'")


def _monitor_without_libvirt(ctx: Context, target: Target, why: str,
                             local: bool | None = None, proof_of_absence: bool = True) -> None:
    """libvirt cannot be asked: answer from the emulator process on this host (``local``:
    whether the hypervisor is this host's; by default, what the URI says). With no process,
    "not running" needs ``proof_of_absence``: libvirt verifiably unreachable (no socket,
    refused), not merely hung, for a domain may be mid-start in a hung libvirtd."""
    from ..uri import is_local_uri

    name = target.ident.name
    if not (is_local_uri(target.uri) if local is None else local):
        if ctx.env.is_probe:
            ctx.log.warning(f"{why}; remote hypervisor, assuming {name} is not running here")
            raise NotRunning(f"probe: assuming {name} is not running here ({why})")
        raise AgentError(f"cannot tell whether {name} runs: {why}")
    from ..core.last_resort import emulator_pids

    pids = emulator_pids(target.ident)
    if pids is None:
        # Without psutil nothing here proves that the domain does not run: never 7.
        if ctx.env.is_probe:
            raise AgentError(f"cannot tell whether {name} runs: psutil is not installed to "
                             f"check its processes ({why})")
        raise NotInstalled(f"psutil is not installed to check the emulator of {name} ({why})")
    if pids:
        ctx.log.warning(f"{why}; emulator of {name} runs (pid {', '.join(map(str, pids))}): "
                        "reporting it running")
        return
    if not proof_of_absence:
        raise AgentError(f"cannot tell whether {name} runs: no process of it here, but {why}")
    raise NotRunning(f"no emulator process of {name} runs on this host ({why})")


def _monitor_target(ctx: Context, target: Target, deadline: Deadline) -> None:
    name = target.ident.name
    problem = target.uri_problem
    if problem and target.uri_explicit:
        # Nothing can have been started through a URI that is not one (start refuses it,
        # and this agent has no record of a start through another).
        if ctx.env.is_probe:
            raise NotRunning(f"{problem} (probe: not running)")
        raise ConfigError(problem)
    if problem:
        # The node's default URI is unusable now; the domain may run through what it was.
        if ctx.env.is_probe:
            _monitor_without_libvirt(ctx, target, f"default hypervisor URI unusable: "
                                                  f"{problem}", local=True)
            return
        raise unusable_uri(problem, False, "")
    hv: Hypervisor | None = None
    retry = 0.0 if ctx.env.is_probe else min(2.0, deadline.total / 10)
    try:
        hv = connect(ctx, target.uri, deadline, retry)
        dom, state, reason = Domain.lookup_state(hv, target.ident,
                                                 deadline.bound(QUERY_BOUND_S),
                                                 name_fallback=not target.uuid_from_config)
        ctx.log.debug(f"domain {name} state: {state.value}")
        if not (state == DomainState.NOSTATE and dom.is_active(deadline.bound(QUERY_BOUND_S))):
            _check_state(ctx, state, reason, target)
        if target.unrecorded is not None:
            from ..core.recording import record_running

            # Running with no record (found by a probe, or recorded by no start of this
            # version): record it as start would have.
            record_running(ctx, dom, target.ident, target.uri, target.unrecorded,
                           config_uuid=target.ident.uuid if target.uuid_from_config else None,
                           deadline=deadline, quiet=True)
        elif target.source == "record" and not target.uuid_from_config:
            running_uuid = dom.uuid_or_none()
            if (target.record is not None and running_uuid is not None
                    and running_uuid != target.ident.uuid):
                from ..core.recording import rerecord_uuid

                rerecord_uuid(ctx, target.record, running_uuid)
        _running_extras(ctx, dom, target, deadline)
    except DomainNotFound:
        raise _not_running(target, f"domain {name} is not running (not found on "
                                   f"{target.uri})") from None
    except UNREACHABLE as f:
        from ..core.last_resort import verifiably_unreachable

        _monitor_without_libvirt(ctx, target, f"libvirt at {target.uri} unreachable: "
                                              f"{f.message}",
                                 proof_of_absence=verifiably_unreachable(f))
    except ClientMisconfigured as f:
        if not ctx.env.is_probe:
            from ..core.outcomes import fact_to_error

            raise fact_to_error(f, target.uri, f"monitor of {name} failed") from None
        _monitor_without_libvirt(ctx, target, f"libvirt's client configuration is unusable: "
                                              f"{f.message}", proof_of_absence=False)
    except ImportError:
        _monitor_without_libvirt(ctx, target, "libvirt-python is not installed")
    except LibvirtFact as f:
        from ..core.outcomes import fact_to_error

        raise fact_to_error(f, target.uri, f"monitor of {name} failed") from None
    finally:
        close(hv)


def _running_extras(ctx: Context, dom: Domain, target: Target, deadline: Deadline) -> None:
    """What a monitor of a running domain does beyond its state: guest health (a watchdog
    that dumped the guest; at OCF_CHECK_LEVEL=20 the guest agent), the user's monitor
    scripts, then the utilization attributes (VirtualDomain parity)."""
    if not ctx.env.is_probe:
        rec = target.record if target.record is not None else record.load(ctx.record_path)
        if rec is not None and rec.watchdog == "dump":
            from ..features.watchdog import check_watchdog_dump

            check_watchdog_dump(ctx, dom.name, dom.id(), rec.started_at)
        if ctx.env.check_level >= 20:
            from ..features.guest_agent import check_guest_agent

            check_guest_agent(ctx, dom, deadline)
    if ctx.params.monitor_scripts.strip():
        from ..features.monitor_scripts import run_monitor_scripts

        run_monitor_scripts(ctx, dom.name, deadline)
    if (ctx.params.save_config_on_stop or ctx.params.sync_config_on_stop) \
            and not ctx.env.is_probe and target.source != "owner":
        from ..features.config_save import save_config_if_readable

        save_config_if_readable(ctx, dom, deadline)
    if ctx.env.under_pacemaker and not ctx.env.is_probe:
        from ..features import utilization

        utilization.update(ctx, dom, deadline)


def _outcome(ctx: Context, target: Target, deadline: Deadline) -> AgentError | None:
    try:
        _monitor_target(ctx, target, deadline)
    except AgentError as exc:
        return exc
    return None


def _owned_targets(ctx: Context, problem: AgentError, deadline: Deadline) -> list[Target]:
    """No readable config and no state record: the domains carrying the resource's owner tag
    are its (a guest migrated in while the config was not mounted here, or whose record could
    not be written). A probe says 7 only when the search proves that none runs here."""
    from ..core.ownership import find_owned

    search = find_owned(ctx, deadline)
    if search.targets:
        names = ", ".join(t.ident.name for t in search.targets)
        ctx.log.warning(f"{problem.reason}; no state record, but {names} carries this "
                        f"resource's owner tag ({search.how})")
        return list(search.targets)
    if not ctx.env.is_probe:
        raise problem
    if not search.absent_proven:
        raise AgentError(f"cannot tell whether this resource runs here: {problem.reason}, no "
                         f"state record, and {search.how}")
    raise NotRunning(f"not running here: {problem.reason}, and no domain carries this "
                     f"resource's owner tag ({search.how})")


def monitor(ctx: Context) -> None:
    warn_params(ctx)
    targets, problem = identify(ctx)
    deadline = ctx.deadline("monitor")
    if not targets:
        assert problem is not None
        targets = _owned_targets(ctx, problem, deadline)
    outcomes = [_outcome(ctx, t, deadline) for t in targets]
    if outcomes[0] is None:
        return
    if any(o is None for o in outcomes[1:]):
        if targets[0].source == "owner":
            return  # a domain carrying the resource's owner tag runs here
        if targets[0].ident.name == targets[-1].ident.name:
            raise AgentError(f"domain {targets[-1].ident.name} runs through {targets[-1].uri} "
                             f"(recorded by this agent), not through the hypervisor "
                             f"{targets[0].uri} the resource now names")
        # The domain started from an older version of the config still runs.
        raise AgentError(f"domain {targets[-1].ident.name} started from an earlier config "
                         f"still runs; config now names {targets[0].ident.name}")
    raise outcomes[0]
