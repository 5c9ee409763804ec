"""start: create the domain transient from the config file and wait until it runs."""

from __future__ import annotations

from ..core.context import POLL_S, QUERY_BOUND_S, Context, Result, _require_valid_params
from ..core.definitions import _persistent_hazard, _remove_leftover
from ..core.last_resort import _kill_emulator
from ..core.recording import _save_record
from ..core.target import Target, _check_uri, _check_virt_type, _close, _connect
from ..deadline import Deadline
from ..errors import (
    AgentError,
    ConfigError,
    DomainNotFound,
    DomainNotRunning,
    DriverMissing,
    GuestNotResponding,
    HypervisorDenied,
    HypervisorTimeout,
    HypervisorUnavailable,
    InvalidDomainXML,
    LibvirtFact,
    NotInstalled,
    OperationFailed,
    PermissionProblem,
    UnsupportedOperation,
)
from ..ocf import OCFExit
from ..uri import is_local_uri
from ..virt.connection import Hypervisor
from ..virt.domain import Domain, DomainState
from ..virt.domxml import load_domain, with_uuid


def _wait_running(ctx: Context, dom: Domain, deadline: Deadline) -> DomainState:
    while True:
        state, _ = dom.state(deadline.bound(QUERY_BOUND_S))
        if state in (DomainState.RUNNING, DomainState.BLOCKED):
            return state
        if state in (DomainState.SHUTOFF, DomainState.CRASHED):
            raise AgentError(f"domain {dom.name} stopped right after it was started "
                             f"(state: {state.value})")
        if deadline.remaining() < POLL_S:
            raise AgentError(f"domain {dom.name} not running before the start timeout "
                             f"(state: {state.value})")
        ctx.sleep(POLL_S)


def _create(ctx: Context, hv: Hypervisor, xml: str, path: str, deadline: Deadline,
            target: Target) -> Domain:
    # Keep time to clean up after a create that does not return (hung libvirtd).
    cleanup_s = min(3.0, deadline.total * 0.2)
    try:
        return Domain.create_transient(hv, xml, max(0.1, deadline.remaining() - cleanup_s))
    except InvalidDomainXML as f:
        raise ConfigError(f"libvirt rejects config {path}: {f.message}") from None
    except UnsupportedOperation as f:
        raise NotInstalled(f"this host cannot run the domain in {path}: {f.message}") from None
    except HypervisorTimeout as f:
        # libvirt may still finish the create once it answers again: leave no half-started
        # guest behind on this host.
        if is_local_uri(target.uri):
            cleanup = _kill_emulator(ctx, target, deadline, "start abandoned")
            if cleanup.rc != OCFExit.SUCCESS:
                ctx.log.warning(cleanup.reason)
        raise AgentError(f"starting the domain: {f.message}") from None
    except (HypervisorUnavailable, OperationFailed, DomainNotRunning, GuestNotResponding) as f:
        raise AgentError(f"libvirt failed to start the domain in {path}: {f.message}") from None


def start(ctx: Context) -> Result:
    _require_valid_params(ctx)
    cfg, ident = load_domain(ctx.params.config)
    _check_virt_type(ctx, ident, cfg.path)
    uri = ctx.uri_for(ident)
    _check_uri(ctx, uri)
    try:
        xml = cfg.data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config {cfg.path} is not UTF-8 text") from None
    deadline = ctx.deadline("start")
    hv: Hypervisor | None = None
    try:
        hv = _connect(ctx, uri, deadline, retry_for_s=min(5.0, deadline.total / 10))
        dom: Domain | None
        try:
            dom = Domain.lookup(hv, ident, deadline.bound(QUERY_BOUND_S))
        except DomainNotFound:
            dom = None
        if dom is not None:
            state, _ = dom.state(deadline.bound(QUERY_BOUND_S))
            if state in (DomainState.RUNNING, DomainState.BLOCKED):
                ctx.log.info(f"domain {ident.name} is already running")
                _persistent_hazard(ctx, dom, deadline)
                _save_record(ctx, dom, ident, uri, cfg.path, cfg.mtime_ns, cfg.size, ident.uuid)
                return Result(OCFExit.SUCCESS)
            if state in (DomainState.PAUSED, DomainState.PMSUSPENDED):
                ctx.log.info(f"domain {ident.name} is {state.value}: resuming it")
                dom.resume(deadline.bound(QUERY_BOUND_S))
                _wait_running(ctx, dom, deadline)
                _save_record(ctx, dom, ident, uri, cfg.path, cfg.mtime_ns, cfg.size, ident.uuid)
                return Result(OCFExit.SUCCESS)
            if state in (DomainState.SHUTDOWN, DomainState.CRASHED) or (
                    state == DomainState.NOSTATE and dom.is_active(QUERY_BOUND_S)):
                ctx.log.info(f"domain {ident.name} is {state.value}: destroying it first")
                try:
                    dom.destroy(deadline.bound(deadline.remaining() / 2))
                except (DomainNotRunning, DomainNotFound):
                    pass
            if not (state == DomainState.SHUTOFF and _remove_leftover(ctx, dom, deadline)):
                _persistent_hazard(ctx, dom, deadline)
            if ident.uuid is None:
                xml = with_uuid(cfg.data, cfg.path, dom.uuid())
        if ctx.params.start_resources:
            from ..features.start_resources import start_resources

            start_resources(ctx, hv, cfg.data, cfg.path, deadline)
        from ..features.monitor_scripts import wait_monitor_scripts
        from ..features.snapshot import restore_snapshot

        if restore_snapshot(ctx, hv, ident.name, deadline):
            dom = Domain.lookup(hv, ident, deadline.bound(QUERY_BOUND_S))
        else:
            if ctx.params.backingfile:
                from ..features.backing import prepare_backing

                prepare_backing(ctx, deadline)
            ctx.log.info(f"starting domain {ident.name} from {cfg.path} on {uri}")
            dom = _create(ctx, hv, xml, cfg.path, deadline, Target(ident, uri, "config"))
        _wait_running(ctx, dom, deadline)
        _save_record(ctx, dom, ident, uri, cfg.path, cfg.mtime_ns, cfg.size, ident.uuid)
        wait_monitor_scripts(ctx, ident.name, deadline)
        ctx.log.info(f"domain {ident.name} is running")
        return Result(OCFExit.SUCCESS)
    except DriverMissing as f:
        raise NotInstalled(f"no libvirt driver for {uri} on this node: {f.message}") from None
    except HypervisorDenied as f:
        raise PermissionProblem(f"cannot connect to {uri}: {f.message}") from None
    except (HypervisorUnavailable, HypervisorTimeout) as f:
        raise AgentError(f"cannot start {ident.name}: libvirt at {uri}: {f.message}") from None
    except ImportError:
        raise NotInstalled("libvirt-python is not installed for this interpreter") from None
    except LibvirtFact as f:
        raise AgentError(f"cannot start {ident.name}: {f.message}") from None
    finally:
        _close(hv)
