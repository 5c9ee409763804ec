"""monitor / status: running 0, cleanly off or absent 7, failed 1; a probe (interval 0) never
reports an error for "cannot know"."""

from __future__ import annotations

from ..core.context import QUERY_BOUND_S, RUNNING_STATES, Context, Result, _warn_params
from ..core.last_resort import _emulator_pids
from ..core.recording import _rerecord_uuid, _save_record, _uuid_of
from ..core.target import Target, _close, _connect, _identify
from ..deadline import Deadline
from ..errors import (
    DomainNotFound,
    DriverMissing,
    HypervisorDenied,
    HypervisorTimeout,
    HypervisorUnavailable,
    LibvirtFact,
)
from ..ocf import OCFExit
from ..uri import is_local_uri, uri_problem
from ..virt.connection import Hypervisor
from ..virt.domain import Domain, DomainState


def _state_result(state: DomainState, name: str) -> Result:
    if state in RUNNING_STATES:
        return Result(OCFExit.SUCCESS)
    if state == DomainState.SHUTOFF:
        return Result(OCFExit.NOT_RUNNING, f"domain {name} is shut off")
    if state == DomainState.CRASHED:
        return Result(OCFExit.ERR_GENERIC, f"domain {name} has crashed")
    return Result(OCFExit.ERR_GENERIC, f"domain {name} is in state '{state.value}'")


def _monitor_without_libvirt(ctx: Context, target: Target, why: str) -> Result:
    name = target.ident.name
    if not is_local_uri(target.uri):
        if ctx.env.is_probe:
            ctx.log.warning(f"{why}; remote hypervisor, assuming {name} is not running here")
            return Result(OCFExit.NOT_RUNNING, f"probe: assuming {name} is not running here "
                                               f"({why})")
        return Result(OCFExit.ERR_GENERIC, f"cannot tell whether {name} runs: {why}")
    pids = _emulator_pids(target.ident)
    if pids is None:
        if ctx.env.is_probe:
            return Result(OCFExit.NOT_RUNNING, f"probe: psutil is not installed to check the "
                                               f"emulator of {name} ({why})")
        return Result(OCFExit.ERR_INSTALLED, f"psutil is not installed to check the emulator of "
                                             f"{name} ({why})")
    if pids:
        ctx.log.warning(f"{why}; emulator of {name} runs (pid {', '.join(map(str, pids))}): "
                        "reporting it running")
        return Result(OCFExit.SUCCESS)
    return Result(OCFExit.NOT_RUNNING, f"no emulator process of {name} runs on this host "
                                       f"({why})")


def _monitor_target(ctx: Context, target: Target, deadline: Deadline) -> Result:
    name = target.ident.name
    problem = uri_problem(target.uri)
    if problem:
        # Nothing can have been started through a URI that is not one.
        if ctx.env.is_probe:
            return Result(OCFExit.NOT_RUNNING, f"{problem} (probe: not running)")
        return Result(OCFExit.ERR_CONFIGURED, problem)
    hv: Hypervisor | None = None
    retry = 0.0 if ctx.env.is_probe else min(2.0, deadline.total / 10)
    try:
        hv = _connect(ctx, target.uri, deadline, retry)
        dom = Domain.lookup(hv, target.ident, deadline.bound(QUERY_BOUND_S),
                     name_fallback=not target.uuid_from_config)
        state, _reason = dom.state(deadline.bound(QUERY_BOUND_S))
        ctx.log.debug(f"domain {name} state: {state.value}")
        if state == DomainState.NOSTATE and dom.is_active(deadline.bound(QUERY_BOUND_S)):
            result = Result(OCFExit.SUCCESS)
        else:
            result = _state_result(state, name)
        if result.rc == OCFExit.SUCCESS:
            if target.unrecorded is not None:
                # Running with no record (found by a probe, or recorded by no start of this
                # version): record it as start would have.
                _save_record(ctx, dom, target.ident, target.uri, *target.unrecorded,
                             config_uuid=target.ident.uuid if target.uuid_from_config else None,
                             quiet=True)
            elif target.source == "record" and target.ident.uuid != _uuid_of(dom):
                _rerecord_uuid(ctx, dom, target)
            return _running_extras(ctx, dom, deadline)
        return result
    except DomainNotFound:
        return Result(OCFExit.NOT_RUNNING, f"domain {name} is not running (not found on "
                                           f"{target.uri})")
    except HypervisorDenied as f:
        return Result(OCFExit.ERR_PERM, f"cannot connect to {target.uri}: {f.message}")
    except (HypervisorUnavailable, HypervisorTimeout, DriverMissing) as f:
        return _monitor_without_libvirt(ctx, target, f"libvirt at {target.uri} unreachable: "
                                                     f"{f.message}")
    except ImportError:
        return _monitor_without_libvirt(ctx, target, "libvirt-python is not installed")
    except LibvirtFact as f:
        return Result(OCFExit.ERR_GENERIC, f"monitor of {name} failed: {f.message}")
    finally:
        _close(hv)


def _running_extras(ctx: Context, dom: Domain, deadline: Deadline) -> Result:
    """What a monitor of a running domain does beyond its state: the user's monitor
    scripts, then the utilization attributes (VirtualDomain parity)."""
    p = ctx.params
    if p.monitor_scripts.strip():
        from ..features.monitor_scripts import run_monitor_scripts

        failed = run_monitor_scripts(ctx, dom.name, deadline)
        if failed is not None:
            return failed
    if ctx.env.under_pacemaker and not ctx.env.is_probe:
        from ..features import utilization

        utilization.update(ctx, dom, deadline)
    return Result(OCFExit.SUCCESS)


def monitor(ctx: Context) -> Result:
    _warn_params(ctx)
    targets, problem = _identify(ctx)
    if not targets:
        assert problem is not None
        if ctx.env.is_probe:
            return Result(OCFExit.NOT_RUNNING, f"{problem.reason} (probe: not running here)")
        return Result(problem.rc, problem.reason)
    deadline = ctx.deadline("monitor")
    results = [_monitor_target(ctx, t, deadline) for t in targets]
    running = [r for r in results if r.rc == OCFExit.SUCCESS]
    if len(targets) > 1 and running and results[0].rc != OCFExit.SUCCESS:
        # The domain started from an older version of the config still runs.
        return Result(OCFExit.ERR_GENERIC, f"domain {targets[-1].ident.name} started from an "
                      f"earlier config still runs; config now names {targets[0].ident.name}")
    return results[0]
