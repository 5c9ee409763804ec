"""migrate_to and migrate_from (PyVirtualDomain only)."""

from __future__ import annotations

from typing import Any

from ..core import record as staterec
from ..core.context import QUERY_BOUND_S, Context, Result, _require_valid_params
from ..core.recording import _save_record
from ..core.target import Target, _close, _connect, _identify
from ..deadline import Deadline
from ..errors import AgentError, ArgsError, DomainNotFound, HypervisorTimeout, LibvirtFact
from ..migration_options import (
    MigrateOptionError,
    destination_uri,
    migration_uri,
    parse_migrate_options,
)
from ..ocf import OCFExit
from ..virt.connection import Hypervisor, open_hypervisor
from ..virt.domain import Domain, DomainState
from ..virt.migration import MigrationRun

POLL_S = 1.0
PROGRESS_LOG_S = 5.0
# Downtime steps (ms) for migration_deadline_action=downtime.
DOWNTIME_STEPS = (300, 1000, 3000, 10000)
MIB = 1024 * 1024


def _abort_reserve(total_s: float) -> float:
    """Time kept back to abort the job and check both hosts before the op timeout."""
    return min(10.0, max(3.0, total_s * 0.1))


def _running_on(hv: Hypervisor | None, ctx_ident: Any, bound: float) -> bool | None:
    """Whether the domain is active (running, or paused by the migration) on ``hv``; None
    when that cannot be told."""
    if hv is None:
        return None
    try:
        dom = Domain.lookup(hv, ctx_ident, bound)
        state, _ = dom.state(bound)
    except DomainNotFound:
        return False
    except LibvirtFact:
        return None
    return state not in (DomainState.SHUTOFF, DomainState.CRASHED)




def _steer(ctx: Context, dom: Domain, action: str, step: int, bound: float) -> int:
    """Apply migration_deadline_action once more; returns the next step number."""
    if action == "postcopy" and step == 0:
        ctx.log.warning(f"migration of {dom.name} will not converge in time: switching to "
                        "post-copy")
        dom.start_postcopy(bound)
        return 1
    if action == "downtime" and step < len(DOWNTIME_STEPS):
        ms = DOWNTIME_STEPS[step]
        ctx.log.warning(f"migration of {dom.name} will not converge in time: allowing "
                        f"{ms} ms downtime")
        dom.set_max_downtime(ms, bound)
        return step + 1
    return step


def _watch(ctx: Context, dom: Domain, run: MigrationRun, abort_at: Deadline) -> bool:
    """Log progress and steer until the migration ends or it is time to abort.
    Returns True when the migration call returned on its own."""
    params = ctx.params
    downtime_pending = params.migration_downtime > 0
    next_log = abort_at.now() + PROGRESS_LOG_S
    last_steer = abort_at.now()
    step = 0
    while not run.wait(min(POLL_S, abort_at.remaining())):
        if abort_at.expired():
            return False
        try:
            j = dom.job_stats(abort_at.bound(QUERY_BOUND_S))
        except HypervisorTimeout:
            return run.done.is_set()
        except LibvirtFact as f:
            ctx.log.debug(f"job statistics unavailable: {f.message}")
            continue
        if not j.active:
            continue
        if downtime_pending:
            try:
                dom.set_max_downtime(params.migration_downtime,
                                     abort_at.bound(QUERY_BOUND_S))
                ctx.log.info(f"max downtime of {dom.name} set to {params.migration_downtime} ms")
            except LibvirtFact as f:
                ctx.log.warning(f"cannot set migration downtime: {f.message}")
            downtime_pending = False
        now = abort_at.now()
        if now >= next_log:
            ctx.log.info(
                f"migrating {dom.name}: {j.processed_bytes / MIB:.0f} of "
                f"{j.total_bytes / MIB:.0f} MiB sent, {j.remaining_bytes / MIB:.0f} MiB left, "
                f"{j.bytes_per_s / MIB:.1f} MiB/s, iteration {j.iteration}")
            next_log = now + PROGRESS_LOG_S
        # Judge convergence as soon as the transfer rate is measured (a slow first pass can
        # alone outlast the timeout), at most every 3 s.
        if j.bytes_per_s > 0 and now - last_steer >= 3.0:
            eta = j.remaining_bytes / j.bytes_per_s
            if eta > abort_at.remaining():
                try:
                    step = _steer(ctx, dom, params.migration_deadline_action, step,
                                  abort_at.bound(QUERY_BOUND_S))
                except LibvirtFact as f:
                    ctx.log.warning(f"cannot steer the migration: {f.message}")
                last_steer = now
    return True


def _the_target(ctx: Context) -> Target:
    """The domain to migrate: the one in the config (or, unreadable, the recorded one)."""
    targets, problem = _identify(ctx)
    if not targets:
        assert problem is not None
        raise AgentError(problem.reason, problem.rc)
    return targets[0]


def migrate_to(ctx: Context) -> Result:
    _require_valid_params(ctx)
    p = ctx.params
    target_node = ctx.env.meta.get("migrate_target", "").strip()
    if not target_node:
        raise ArgsError("migrate_to needs the target node (OCF_RESKEY_CRM_meta_migrate_target, "
                        "set by Pacemaker)")
    target = _the_target(ctx)
    ident = target.ident
    try:
        options = parse_migrate_options(p.migrate_options)
    except MigrateOptionError as exc:
        raise AgentError(str(exc), OCFExit.ERR_CONFIGURED) from None
    dest_uri = destination_uri(target.uri, target_node, remoteuri=p.remoteuri,
                               transport=p.migration_transport, user=p.migration_user,
                               network_suffix=p.migration_network_suffix)
    data_uri = migration_uri(target.uri, target_node, options, migrateuri=p.migrateuri,
                             network_suffix=p.migration_network_suffix,
                             migrateport=p.migrateport)
    deadline = ctx.deadline("migrate_to")
    abort_at = deadline.before(_abort_reserve(deadline.total))
    hv: Hypervisor | None = None
    dest: Hypervisor | None = None
    try:
        hv = _connect(ctx, target.uri, deadline, retry_for_s=min(3.0, deadline.total / 10))
        try:
            dom = Domain.lookup(hv, ident, deadline.bound(QUERY_BOUND_S))
            state, _ = dom.state(deadline.bound(QUERY_BOUND_S))
        except DomainNotFound:
            raise AgentError(f"domain {ident.name} is not running here: nothing to migrate "
                             f"to {target_node}") from None
        if state not in (DomainState.RUNNING, DomainState.BLOCKED, DomainState.PAUSED):
            raise AgentError(f"domain {ident.name} is {state.value} here: cannot migrate it")
        try:
            dest = open_hypervisor(dest_uri, abort_at, attempt_s=min(10.0, abort_at.total / 2))
        except LibvirtFact as f:
            if not options.p2p:
                raise AgentError(f"cannot connect to {target_node}'s hypervisor {dest_uri}: "
                                 f"{f.message}") from None
            ctx.log.warning(f"cannot check the target {dest_uri}: {f.message}")
        flag_names = list(options.flag_names)
        if "VIR_MIGRATE_OFFLINE" not in flag_names:
            flag_names.append("VIR_MIGRATE_LIVE")
        if p.migration_deadline_action == "postcopy":
            flag_names.append("VIR_MIGRATE_POSTCOPY")
        mparams: dict[str, str | int] = dict(options.param_values)
        if data_uri:
            mparams["VIR_MIGRATE_PARAM_URI"] = data_uri
        if p.migration_speed > 0:
            mparams.setdefault("VIR_MIGRATE_PARAM_BANDWIDTH", p.migration_speed)
        ctx.log.info(f"live-migrating {ident.name} to {target_node}: hypervisor {dest_uri}, "
                     f"data {data_uri or 'by libvirt default'}"
                     f"{', peer-to-peer' if options.p2p else ''}")
        to = None if options.p2p else dest
        run = MigrationRun(lambda: dom.migrate(to, dest_uri, flag_names, mparams))
        if p.save_config_on_stop or p.sync_config_on_stop:
            from ..features.config_save import save_config

            save_config(ctx, dom, abort_at)
        t0 = deadline.now()
        run.start()
        if not _watch(ctx, dom, run, abort_at):
            ctx.log.warning(f"migration of {ident.name} did not finish in time: aborting it")
            try:
                dom.abort_job(deadline.bound(QUERY_BOUND_S))
            except LibvirtFact as f:
                ctx.log.warning(f"abort of the migration job failed: {f.message}")
            run.wait(max(0.0, deadline.remaining() - 1.0))
        took = deadline.now() - t0
        return _outcome(ctx, hv, dest, run, ident, target_node, took, deadline)
    except (HypervisorTimeout, LibvirtFact) as f:
        msg = f.message if isinstance(f, LibvirtFact) else str(f)
        raise AgentError(f"migration of {ident.name} to {target_node} failed: {msg}") from None
    finally:
        _close(dest)
        _close(hv)


def _outcome(ctx: Context, hv: Hypervisor, dest: Hypervisor | None, run: MigrationRun,
             ident: Any, target_node: str, took: float, deadline: Deadline) -> Result:
    """Judge by where the guest runs now, not only by what the API call said."""
    bound = deadline.bound(QUERY_BOUND_S)
    here = _running_on(hv, ident, bound)
    there = _running_on(dest, ident, bound)
    if not run.done.is_set():
        return Result(OCFExit.ERR_GENERIC, f"migration of {ident.name} to {target_node} did "
                      f"not end after abort; guest here: {here}, on target: {there}")
    if run.error is None or (here is False and there is True):
        if run.error is not None:
            ctx.log.warning(f"migration call reported {run.error}, but {ident.name} now runs "
                            f"on {target_node} only")
        if here:
            return Result(OCFExit.ERR_GENERIC, f"migration of {ident.name} reported success "
                          "but the guest still runs here")
        staterec.remove(ctx.record_path)
        ctx.log.info(f"{ident.name} migrated to {target_node} in {took:.1f}s")
        return Result(OCFExit.SUCCESS)
    err = run.error
    why = LibvirtFact(str(err)).message if err is not None else "unknown error"
    if here:
        if there:
            # An incoming domain left behind on the target after an abort must not linger.
            _remove_incoming(ctx, dest, ident, bound)
        return Result(OCFExit.ERR_GENERIC, f"migration of {ident.name} to {target_node} "
                      f"failed after {took:.1f}s ({why}); it keeps running here")
    return Result(OCFExit.ERR_GENERIC, f"migration of {ident.name} to {target_node} failed "
                  f"({why}); guest here: {here}, on target: {there}")


def _remove_incoming(ctx: Context, dest: Hypervisor | None, ident: Any, bound: float) -> None:
    if dest is None:
        return
    try:
        dom = Domain.lookup(dest, ident, bound)
        state, _ = dom.state(bound)
        if state == DomainState.PAUSED:
            ctx.log.warning(f"destroying the unfinished incoming copy of {ident.name} on the "
                            "target")
            dom.destroy(bound)
    except LibvirtFact:
        pass


def migrate_from(ctx: Context) -> Result:
    source = ctx.env.meta.get("migrate_source", "").strip() or "the source"
    target = _the_target(ctx)
    ident = target.ident
    deadline = ctx.deadline("migrate_from")
    hv: Hypervisor | None = None
    try:
        hv = _connect(ctx, target.uri, deadline, retry_for_s=min(3.0, deadline.total / 10))
        last = "not here"
        while True:
            try:
                dom = Domain.lookup(hv, ident, deadline.bound(QUERY_BOUND_S))
                state, _ = dom.state(deadline.bound(QUERY_BOUND_S))
                if state in (DomainState.RUNNING, DomainState.BLOCKED):
                    cfg_mtime, cfg_size = _config_facts(ctx)
                    _save_record(ctx, dom, ident, target.uri, ctx.params.config, cfg_mtime,
                                 cfg_size,
                                 ident.uuid if target.uuid_from_config else None)
                    from ..features.monitor_scripts import wait_monitor_scripts

                    wait_monitor_scripts(ctx, ident.name, deadline)
                    ctx.log.info(f"{ident.name} arrived from {source} and runs here")
                    return Result(OCFExit.SUCCESS)
                last = state.value
            except DomainNotFound:
                last = "not here"
            if deadline.remaining() <= 0.5:
                return Result(OCFExit.ERR_GENERIC, f"domain {ident.name} did not arrive from "
                              f"{source} within {deadline.total:.0f}s (state: {last})")
            ctx.sleep(0.5)
    except (HypervisorTimeout, LibvirtFact) as f:
        msg = f.message if isinstance(f, LibvirtFact) else str(f)
        raise AgentError(f"migrate_from of {ident.name}: {msg}") from None
    finally:
        _close(hv)


def _config_facts(ctx: Context) -> tuple[int, int]:
    import os

    try:
        st = os.stat(ctx.params.config)
        return st.st_mtime_ns, st.st_size
    except OSError:
        return 0, -1
