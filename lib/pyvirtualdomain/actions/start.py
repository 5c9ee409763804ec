"""start: create the domain transient from the config file and wait until it runs."""

from __future__ import annotations

from ..core.context import QUERY_BOUND_S, STATE_POLL_S, Context, require_valid_params
from ..core.definitions import persistent_hazard, remove_leftover
from ..core.last_resort import kill_emulator
from ..core.outcomes import fact_to_error, libvirt_python_missing
from ..core.ownership import resource_owner
from ..core.record import ConfigStamp
from ..core.recording import record_running
from ..core.start_config import read_start_config
from ..core.target import Target, close, connect
from ..deadline import Deadline
from ..errors import (
    AgentError,
    CallTimedOut,
    ConfigError,
    DomainNotFound,
    GuestNotResponding,
    HypervisorTimeout,
    HypervisorUnavailable,
    InvalidArgument,
    InvalidDomainXML,
    LibvirtFact,
    NotInstalled,
    OperationFailed,
    OperationInvalid,
    UnsupportedOperation,
)
from ..uri import is_local_uri
from ..virt.connection import Hypervisor
from ..virt.domain import EXECUTING_STATES, SUSPENDED_STATES, Domain, DomainState
from ..virt.domxml import prepared_xml


def _wait_running(ctx: Context, dom: Domain, deadline: Deadline) -> None:
    while True:
        state, _ = dom.state(deadline.bound(QUERY_BOUND_S))
        if state in EXECUTING_STATES:
            return
        if state in (DomainState.SHUTOFF, DomainState.CRASHED):
            raise AgentError(f"domain {dom.name} stopped right after it was started "
                             f"(state: {state.value})")
        if deadline.remaining() < STATE_POLL_S:
            raise AgentError(f"domain {dom.name} not running before the start timeout "
                             f"(state: {state.value})")
        ctx.sleep(STATE_POLL_S)


def _create(ctx: Context, hv: Hypervisor, xml: str, path: str, deadline: Deadline,
            target: Target) -> Domain:
    # Keep time to clean up after a create that does not return (hung libvirtd).
    cleanup_s = min(3.0, deadline.total * 0.2)
    try:
        return Domain.create_transient(hv, xml, max(0.1, deadline.remaining() - cleanup_s))
    except (InvalidDomainXML, InvalidArgument) as f:
        # A value the XML gives that libvirt cannot take is wrong on every node.
        raise ConfigError(f"libvirt rejects config {path}: {f.message}") from None
    except UnsupportedOperation as f:
        raise NotInstalled(f"this host cannot run the domain in {path}: {f.message}") from None
    except HypervisorTimeout as f:
        # libvirt may still finish the create once it answers again: leave no half-started
        # guest behind on this host (stop, which Pacemaker runs next, will not say it is
        # stopped unless libvirt confirms it).
        if is_local_uri(target.uri):
            try:
                kill_emulator(ctx, target, deadline, "start abandoned")
            except AgentError as cleanup:
                ctx.log.warning(cleanup.reason)
        raise AgentError(f"starting the domain: {f.message}") from None
    except CallTimedOut as f:
        # libvirtd answers, but its create (hooks, storage, lock manager) has not returned:
        # it may still start the guest. stop must run, and finds it.
        raise AgentError(f"start of {target.ident.name} did not finish in time; libvirt may "
                         f"still be starting it ({f.message})") from None
    except (HypervisorUnavailable, OperationFailed, OperationInvalid, GuestNotResponding) as f:
        raise AgentError(f"libvirt failed to start the domain in {path}: {f.message}") from None


def _existing(ctx: Context, dom: Domain, deadline: Deadline) -> bool:
    """A domain of this identity is already on the host. True when it runs now (start is
    done); otherwise clears the way for a new start (destroys a half-dead one, removes a
    leftover shut-off one) after checking it is no persistent hazard."""
    name = dom.name
    state, _ = dom.state(deadline.bound(QUERY_BOUND_S))
    if state in EXECUTING_STATES:
        ctx.log.info(f"domain {name} is already running")
        persistent_hazard(ctx, dom, deadline)
        return True
    if state in SUSPENDED_STATES:
        ctx.log.info(f"domain {name} is {state.value}: resuming it")
        dom.resume(deadline.bound(QUERY_BOUND_S))
        _wait_running(ctx, dom, deadline)
        return True
    if state in (DomainState.SHUTDOWN, DomainState.CRASHED) or (
            state == DomainState.NOSTATE and dom.is_active(deadline.bound(QUERY_BOUND_S))):
        ctx.log.info(f"domain {name} is {state.value}: destroying it first")
        try:
            dom.destroy(deadline.bound(deadline.remaining() / 2))
        except (OperationInvalid, DomainNotFound):
            pass
    if not (state == DomainState.SHUTOFF and remove_leftover(ctx, dom, deadline)):
        persistent_hazard(ctx, dom, deadline)
    return False


def _watchdog_action(ctx: Context, data: bytes, path: str) -> str | None:
    """Recorded so that a monitor knows to look for the dump of a watchdog that fired."""
    if not ctx.profile.guest_devices:
        return None
    from ..virt.devices import guest_devices

    return guest_devices(data, path).watchdog_action


def start(ctx: Context) -> None:
    require_valid_params(ctx)
    cfg, ident, uri, _ = read_start_config(ctx)
    stamp = ConfigStamp(cfg.path, cfg.mtime_ns, cfg.size)
    p = ctx.params
    deadline = ctx.deadline("start")
    watchdog = _watchdog_action(ctx, cfg.data, cfg.path)
    hv: Hypervisor | None = None
    try:
        hv = connect(ctx, uri, deadline, retry_for_s=min(5.0, deadline.total / 10))
        pinned_uuid: str | None = None
        try:
            dom = Domain.lookup(hv, ident, deadline.bound(QUERY_BOUND_S))
        except DomainNotFound:
            pass
        else:
            if _existing(ctx, dom, deadline):
                record_running(ctx, dom, ident, uri, stamp, ident.uuid, deadline,
                               watchdog=watchdog)
                return
            if ident.uuid is None:
                pinned_uuid = dom.uuid()
        # The owner tag travels with the domain (live migration included): a node without
        # the config or the record still finds it (core/ownership.py).
        xml = prepared_xml(cfg.data, cfg.path, uuid=pinned_uuid, owner=resource_owner(ctx))
        if p.start_resources:
            from ..features.start_resources import start_resources

            start_resources(ctx, hv, cfg.data, cfg.path, deadline)
        restored = False
        if p.snapshot:
            from ..features.snapshot import restore_snapshot

            restored = restore_snapshot(ctx, hv, ident, deadline)
        if restored:
            dom = Domain.lookup(hv, ident, deadline.bound(QUERY_BOUND_S))
        else:
            if p.backingfile:
                from ..features.backing import prepare_backing

                prepare_backing(ctx, deadline)
            if p.snapshot:
                from ..features.snapshot import record_cold_start

                record_cold_start(ctx, ident)
            ctx.log.info(f"starting domain {ident.name} from {cfg.path} on {uri}")
            dom = _create(ctx, hv, xml, cfg.path, deadline, Target(ident, uri, "config"))
        _wait_running(ctx, dom, deadline)
        # A restored domain carries the tag it was saved with (if any): recorded untagged,
        # it is tagged like any domain this agent adopts.
        record_running(ctx, dom, ident, uri, stamp, ident.uuid, deadline, watchdog=watchdog,
                       tagged=not restored)
        if p.monitor_scripts.strip():
            from ..features.monitor_scripts import wait_monitor_scripts

            wait_monitor_scripts(ctx, ident.name, deadline)
        ctx.log.info(f"domain {ident.name} is running")
    except LibvirtFact as f:
        raise fact_to_error(f, uri, f"cannot start {ident.name}") from None
    except ImportError:
        raise libvirt_python_missing() from None
    finally:
        close(hv)
