"""Policy: what each OCF action does and which exit code it ends with.

The wrappers (connection, domain, procs, domxml) report facts; this module decides. Every wait
is derived from one monotonic deadline per action (deadline.py).
"""

from __future__ import annotations

import time
from typing import Callable, Mapping, NamedTuple

from . import state as staterec
from .connection import Hypervisor, default_uri, is_local_uri, open_hypervisor, uri_problem
from .deadline import Clock, Deadline, for_action
from .domain import Domain, DomainState, create_transient, lookup
from .domxml import DomainIdentity, load_domain, parse_identity, read_config, with_uuid
from .errors import (
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
from .log import Log
from .metadata import AgentSchema
from .ocf import OCFEnv, OCFExit
from .params import Params
from .profiles import Profile

# Pacing of the stop and start loops (seconds).
POLL_S = 0.2
# A shutdown request sent before the guest's OS listens (early boot) is lost: re-send it.
SHUTDOWN_RESEND_S = 3.0
# How often the graceful stop checks (by its processes) whether the domain restarted instead.
RESTART_CHECK_S = 1.0
# Most any single query of a healthy libvirtd may take before we call the daemon hung.
QUERY_BOUND_S = 5.0
# Safety margin kept back from the op timeout (at most 10% of it) for interpreter start-up,
# the last process scans and writes, and our exit on a loaded host.
ACTION_MARGIN_S = 2.0

RUNNING_STATES = frozenset({DomainState.RUNNING, DomainState.BLOCKED, DomainState.PAUSED,
                            DomainState.SHUTDOWN, DomainState.PMSUSPENDED})


class Result(NamedTuple):
    rc: OCFExit
    reason: str = ""


class Context:
    """Everything an action needs, passed in (environment, clock, sleep) so tests can."""

    def __init__(self, *, env: OCFEnv, profile: Profile, schema: AgentSchema, params: Params,
                 log: Log, environ: Mapping[str, str], clock: Clock = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.env = env
        self.profile = profile
        self.schema = schema
        self.params = params
        self.log = log
        self.environ = environ
        self.clock = clock
        self.sleep = sleep
        self.record_path = staterec.record_path(env.state_dir, profile.agent_name, env.instance)

    def deadline(self, action: str) -> Deadline:
        return for_action(self.env.meta_timeout_ms, self.schema.timeout_s(action),
                          ACTION_MARGIN_S, self.clock)

    def uri_for(self, ident: DomainIdentity) -> str:
        if self.params.hypervisor:
            return self.params.hypervisor
        if self.profile.fixed_default_uri:
            return self.profile.fixed_default_uri
        return default_uri(ident.virt_type, self.environ)


class Target(NamedTuple):
    """A domain to act on, with the hypervisor it lives on."""

    ident: DomainIdentity
    uri: str
    source: str  # "config" or "record": where the identity came from
    # (path, mtime_ns, size) of a config read with no state record on this host: a monitor
    # that finds the domain running records it, so later monitors skip the XML parse.
    unrecorded: tuple[str, int, int] | None = None
    # False when ident.uuid is only what libvirt chose at the last start (the config names
    # no uuid): a domain of the same name re-created from the config is then this domain.
    uuid_from_config: bool = True


# ---------------------------------------------------------------------------------------------
# shared helpers


def _require_valid_params(ctx: Context) -> None:
    if ctx.params.problems:
        raise ConfigError("; ".join(ctx.params.problems))


def _warn_params(ctx: Context) -> None:
    for problem in ctx.params.problems:
        ctx.log.warning(f"{problem} (using the default)")


def _check_virt_type(ctx: Context, ident: DomainIdentity, path: str) -> None:
    allowed = ctx.profile.virt_types
    if allowed is not None and ident.virt_type not in allowed:
        raise ConfigError(
            f"config {path}: domain type {ident.virt_type!r} is not handled by "
            f"{ctx.profile.agent_name} (expects {', '.join(sorted(allowed))})"
        )


def _check_uri(ctx: Context, uri: str) -> None:
    problem = uri_problem(uri)
    if problem:
        raise ConfigError(problem)
    if ctx.env.remote_node and not is_local_uri(uri):
        raise ConfigError(
            f"resource is guest node {ctx.env.remote_node} but hypervisor {uri} is remote: "
            "fencing this host would not stop the guest; use a local URI such as qemu:///system"
        )


def _identify(ctx: Context) -> tuple[list[Target], AgentError | None]:
    """The domain(s) this resource refers to, for stop and monitor.

    From the config file, and from the record of what this agent started on this host: the
    record stands in when the config is unreadable, and is added when the config has since
    been edited to name another domain (that one may still run)."""
    record = staterec.load(ctx.record_path)
    problem: AgentError | None = None
    ident: DomainIdentity | None = None
    try:
        cfg = read_config(ctx.params.config)
        if (record is not None and record.config == cfg.path
                and record.config_mtime_ns == cfg.mtime_ns and record.config_size == cfg.size):
            return [Target(record.identity, record.uri, "record",
                           uuid_from_config=record.config_uuid is not None)], None
        ident = parse_identity(cfg.data, cfg.path)
    except AgentError as exc:
        problem = exc

    targets: list[Target] = []
    same = record is not None and ident is not None and record.name == ident.name and (
        ident.uuid is None or record.uuid is None or record.uuid == ident.uuid)
    if ident is not None:
        pinned = ident.uuid is not None
        if record is not None and record.name == ident.name and ident.uuid is None:
            ident = DomainIdentity(ident.name, record.uuid, ident.virt_type, ident.emulator)
        # No record, or one for this same domain from before the config was edited: a
        # monitor that finds the domain running (re)records it.
        unrecorded = (cfg.path, cfg.mtime_ns, cfg.size) if record is None or same else None
        targets.append(Target(ident, ctx.uri_for(ident), "config", unrecorded, pinned))
    if record is not None:
        if not same:
            if problem is not None:
                ctx.log.warning(f"{problem.reason}; using domain {record.name} "
                                f"(uuid {record.uuid}) recorded when this agent started it")
            else:
                ctx.log.warning(f"config now names domain {targets[0].ident.name}, but this "
                                f"agent started {record.name}: checking both")
            targets.append(Target(record.identity, record.uri, "record",
                                  uuid_from_config=record.config_uuid is not None))
    return targets, problem


def _connect(ctx: Context, uri: str, deadline: Deadline, retry_for_s: float) -> Hypervisor:
    attempt_s = max(0.5, min(QUERY_BOUND_S, deadline.total / 3))
    return open_hypervisor(uri, deadline, retry_for_s=retry_for_s, attempt_s=attempt_s)


def _close(hv: Hypervisor | None) -> None:
    if hv is not None:
        hv.close()


def _emulator_pids(ident: DomainIdentity) -> list[int] | None:
    """Running emulator pids of the domain on this host, None when they cannot be looked up."""
    try:
        from . import procs

        return procs.running_emulator_pids(ident)
    except ImportError:
        return None


# ---------------------------------------------------------------------------------------------
# monitor / status


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
        dom = lookup(hv, target.ident, deadline.bound(QUERY_BOUND_S),
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
        from .parity import run_monitor_scripts

        failed = run_monitor_scripts(ctx, dom.name, deadline)
        if failed is not None:
            return failed
    if ctx.env.under_pacemaker and not ctx.env.is_probe:
        from . import utilization

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


# ---------------------------------------------------------------------------------------------
# validate-all


def validate_all(ctx: Context) -> Result:
    _require_valid_params(ctx)
    cfg, ident = load_domain(ctx.params.config)
    _check_virt_type(ctx, ident, cfg.path)
    uri = ctx.uri_for(ident)
    _check_uri(ctx, uri)
    try:
        cfg.data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config {cfg.path} is not UTF-8 text") from None
    if ident.emulator and is_local_uri(uri):
        import os

        if not os.access(ident.emulator, os.X_OK):
            raise NotInstalled(f"emulator {ident.emulator} named in {cfg.path} is not "
                               "installed (or not executable) on this node")
    import importlib.util

    # Found is enough: importing libvirt would triple validate-all's cost for nothing.
    if importlib.util.find_spec("libvirt") is None:
        raise NotInstalled("libvirt-python is not installed for this interpreter")
    if ctx.params.snapshot or ctx.params.monitor_scripts or ctx.params.backingfile:
        from .parity import check_backing, check_monitor_scripts, check_snapshot

        check_snapshot(ctx)
        check_backing(ctx)
        missing = check_monitor_scripts(ctx.params.monitor_scripts)
        if missing:
            raise NotInstalled("; ".join(missing))
    if ctx.env.check_level >= 10:
        return _validate_deep(ctx, ident, uri)
    return Result(OCFExit.SUCCESS)


AUTHKEY = "/etc/pacemaker/authkey"
REMOTE_PORT = 3121


def _validate_deep(ctx: Context, ident: DomainIdentity, uri: str) -> Result:
    """OCF_CHECK_LEVEL >= 10: ask the hypervisor about hazards to fencing (a persistent
    definition, autostart) and, for a guest node, whether Pacemaker Remote can be reached."""
    deadline = ctx.deadline("validate-all")
    guest_node = ctx.env.remote_node
    hv: Hypervisor | None = None
    running = False
    try:
        hv = _connect(ctx, uri, deadline, retry_for_s=0.0)
        try:
            dom = lookup(hv, ident, deadline.bound(QUERY_BOUND_S))
        except DomainNotFound:
            dom = None
        if dom is not None:
            state, _ = dom.state(deadline.bound(QUERY_BOUND_S))
            running = state in RUNNING_STATES
            _persistent_hazard(ctx, dom, deadline)
    except AgentError:
        raise
    except (LibvirtFact, ImportError) as f:
        why = f.message if isinstance(f, LibvirtFact) else str(f)
        raise AgentError(f"cannot check the domain on {uri}: {why}") from None
    finally:
        _close(hv)
    if guest_node is None:
        return Result(OCFExit.SUCCESS)
    import os

    if not os.path.isfile(AUTHKEY):
        raise NotInstalled(f"guest node {guest_node}: {AUTHKEY} does not exist on this node "
                           "(Pacemaker Remote needs the same key on hosts and guests)")
    addr = ctx.env.meta.get("remote_addr", "").strip() or guest_node
    try:
        port = int(ctx.env.meta.get("remote_port", "").strip() or REMOTE_PORT)
    except ValueError:
        raise ConfigError(f"meta remote-port={ctx.env.meta.get('remote_port')!r} is not a "
                          "port number") from None
    if not running:
        ctx.log.info(f"guest node {guest_node}: domain not running, {addr}:{port} not checked")
        return Result(OCFExit.SUCCESS)
    import socket

    try:
        with socket.create_connection((addr, port), timeout=deadline.bound(2.0)):
            pass
    except OSError as exc:
        return Result(OCFExit.ERR_GENERIC, f"guest node {guest_node}: pacemaker-remoted at "
                      f"{addr}:{port} does not accept TCP connections: {exc.strerror or exc}")
    ctx.log.info(f"guest node {guest_node}: {addr}:{port} accepts connections")
    return Result(OCFExit.SUCCESS)


# ---------------------------------------------------------------------------------------------
# start


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


def _persistent_hazard(ctx: Context, dom: Domain, deadline: Deadline) -> None:
    """A persistent definition of the domain on this host is never used silently nor
    deleted: libvirt could start it outside the cluster's control."""
    if not dom.is_persistent(deadline.bound(QUERY_BOUND_S)):
        return
    name = dom.name
    fix = (f"remove the host's definition with 'virsh undefine {name}' (the cluster's config "
           "file is not touched) and let the cluster run the domain")
    if dom.autostart(deadline.bound(QUERY_BOUND_S)):
        raise NotInstalled(f"domain {name} is also defined on this host with autostart: libvirt "
                           f"would start it outside the cluster after a reboot; {fix}")
    if ctx.env.remote_node:
        raise NotInstalled(f"guest node {ctx.env.remote_node}: domain {name} is also defined "
                           f"persistently on this host; {fix}")
    ctx.log.warning(f"domain {name} is also defined persistently on this host; the cluster "
                    f"runs it from its config file. Recommended: {fix}")


def _create(ctx: Context, hv: Hypervisor, xml: str, path: str, deadline: Deadline,
            target: Target) -> Domain:
    # Keep time to clean up after a create that does not return (hung libvirtd).
    cleanup_s = min(3.0, deadline.total * 0.2)
    try:
        return create_transient(hv, xml, max(0.1, deadline.remaining() - cleanup_s))
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
            dom = lookup(hv, ident, deadline.bound(QUERY_BOUND_S))
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
            from .parity import start_resources

            start_resources(ctx, hv, cfg.data, cfg.path, deadline)
        from .parity import restore_snapshot, wait_monitor_scripts

        if restore_snapshot(ctx, hv, ident.name, deadline):
            dom = lookup(hv, ident, deadline.bound(QUERY_BOUND_S))
        else:
            if ctx.params.backingfile:
                from .parity import prepare_backing

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


def _remove_leftover(ctx: Context, dom: Domain, deadline: Deadline) -> bool:
    """libvirt drops a transient domain when it stops; one still listed as shut off is a
    leftover that makes every new start of its name fail ("already being started"). libvirt-lxc
    9.0 leaves one when a restarted libvirtd finds the container died while it was down.
    Destroying it removes it (libvirt answers that it was not running). True when removed."""
    try:
        if dom.is_persistent(deadline.bound(QUERY_BOUND_S)):
            return False
        ctx.log.info(f"removing the leftover shut-off transient domain {dom.name}")
        dom.destroy(deadline.bound(QUERY_BOUND_S))
    except (DomainNotRunning, DomainNotFound):
        pass
    except LibvirtFact as f:
        ctx.log.warning(f"cannot remove the shut-off transient domain {dom.name}: {f.message}")
        return False
    return True


def _uuid_of(dom: Domain) -> str | None:
    try:
        return dom.uuid()
    except Exception:  # noqa: BLE001 - the record is a convenience; the XML's uuid will do
        return None


def _rerecord_uuid(ctx: Context, dom: Domain, target: Target) -> None:
    """The recorded domain was found by name under another UUID (re-created from the same
    config, which names no uuid): record the one that runs."""
    record = staterec.load(ctx.record_path)
    uuid = _uuid_of(dom)
    if record is None or uuid is None:
        return
    ctx.log.warning(f"domain {target.ident.name} runs with uuid {uuid}, not the recorded "
                    f"{target.ident.uuid} (re-created outside the cluster?): recording it")
    try:
        staterec.save(ctx.record_path, record._replace(uuid=uuid))
    except OSError as exc:
        ctx.log.debug(f"cannot write state file {ctx.record_path}: {exc.strerror}")


def _save_record(ctx: Context, dom: Domain, ident: DomainIdentity, uri: str, path: str,
                 mtime_ns: int, size: int, config_uuid: str | None,
                 quiet: bool = False) -> None:
    uuid = _uuid_of(dom) or ident.uuid
    try:
        staterec.save(ctx.record_path,
                      staterec.new_record(ident, uuid, uri, path, mtime_ns, size, config_uuid))
    except OSError as exc:
        (ctx.log.debug if quiet else ctx.log.warning)(
            f"cannot write state file {ctx.record_path}: {exc.strerror}")


# ---------------------------------------------------------------------------------------------
# stop


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


def _kill_emulator(ctx: Context, target: Target, deadline: Deadline, why: str) -> Result:
    """The last resort when libvirt cannot (or will not) stop the domain."""
    name = target.ident.name
    if not is_local_uri(target.uri):
        return Result(OCFExit.ERR_GENERIC, f"{name} may still run on remote hypervisor "
                                           f"{target.uri} ({why})")
    try:
        from . import procs
    except ImportError:
        return Result(OCFExit.ERR_GENERIC, f"psutil is not installed, cannot check whether "
                                           f"{name} still runs ({why})")
    pids = procs.running_emulator_pids(target.ident)
    if not pids:
        ctx.log.info(f"{why}; no emulator process of {name} runs on this host")
        return Result(OCFExit.SUCCESS)
    ctx.log.warning(f"{why}; killing the emulator of {name} (pid {', '.join(map(str, pids))})")
    term_s = min(ctx.profile.kill_term_grace_s, deadline.remaining() / 3)
    _, alive = procs.kill_emulators(target.ident, term_s, max(0.2, deadline.remaining() - 0.2))
    if alive:
        return Result(OCFExit.ERR_GENERIC, f"emulator of {name} (pid "
                                           f"{', '.join(map(str, alive))}) survived SIGKILL "
                                           f"({why})")
    ctx.log.info(f"emulator of {name} killed")
    return Result(OCFExit.SUCCESS)


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
            dom = lookup(hv, target.ident, deadline.bound(QUERY_BOUND_S),
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
            from .parity import save_config, save_snapshot

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


def _confirm_gone(ctx: Context, target: Target, what: str, deadline: Deadline) -> Result:
    """libvirt says the domain is gone; on a local hypervisor, make sure no emulator lingers
    (an emulator libvirt lost track of still runs the guest)."""
    if is_local_uri(target.uri):
        try:
            from . import procs
        except ImportError:
            ctx.log.info(f"{what} (psutil missing: emulator processes not checked)")
            return Result(OCFExit.SUCCESS)
        pids = procs.wait_gone(target.ident, deadline.bound(2.0))
        if pids:
            return _kill_emulator(ctx, target, deadline, f"{what}, but its emulator (pid "
                                  f"{', '.join(map(str, pids))}) still runs")
    ctx.log.info(what)
    return Result(OCFExit.SUCCESS)


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
            from . import utilization

            utilization.forget(ctx)
    return result


def migrate_to(ctx: Context) -> Result:
    from .migrate import migrate_to as run  # only migrations load the migration code

    return run(ctx)


def migrate_from(ctx: Context) -> Result:
    from .migrate import migrate_from as run

    return run(ctx)


# Every action an agent implements; an agent offers those its metadata lists (cli.py).
ACTIONS: dict[str, Callable[[Context], Result]] = {
    "start": start,
    "stop": stop,
    "monitor": monitor,
    "status": monitor,
    "validate-all": validate_all,
    "migrate_to": migrate_to,
    "migrate_from": migrate_from,
}
