"""migrate_to and migrate_from (PyVirtualDomain only). The decisions (steer a migration that
will not converge in time, judge where the guest ended) are pure functions in
migration_decisions.py; this module polls libvirt and applies them."""

from __future__ import annotations

import os
from typing import Callable

from ..core.context import QUERY_BOUND_S, Context
from ..core.outcomes import fact_to_error, libvirt_python_missing
from ..core.record import ConfigStamp
from ..core.recording import forget_record, record_running
from ..core.target import Target, close, config_target, connect, identify
from ..deadline import Deadline
from ..errors import (
    AgentError,
    ArgsError,
    CallTimedOut,
    DomainBusy,
    DomainNotFound,
    HypervisorTimeout,
    LibvirtFact,
)
from ..migration_decisions import (
    STEER_EVERY_S,
    Convergence,
    Verdict,
    judge,
    next_steer,
    step_reserve_s,
)
from ..migration_options import (
    MigrateOptions,
    check_hypervisor,
    destination_uri,
    migration_uri,
    parse_migrate_options,
)
from ..tuples import NamedTuple
from ..virt.connection import Hypervisor, PendingCall, open_hypervisor
from ..virt.domain import (
    Domain,
    DomainState,
    arrived,
    in_postcopy,
    postcopy_failed,
)
from ..virt.domxml import DomainIdentity

# How often the running migration's job statistics are read.
MIGRATION_POLL_S = 1.0
# How often migrate_from looks for the arriving domain.
ARRIVAL_POLL_S = 0.5
# Without config and record, how long migrate_from looks for a domain carrying the
# resource's owner tag: Pacemaker runs it once migrate_to returned, so a migrated domain is
# there already (an incoming one, still paused by the migration, is found too).
OWNER_ARRIVAL_S = 10.0
PROGRESS_LOG_S = 5.0
MIB = 1024 * 1024


def _abort_reserve(total_s: float) -> float:
    """Time kept back to abort the job and check both hosts before the op timeout."""
    return min(10.0, max(3.0, total_s * 0.1))


class Seen(NamedTuple):
    """The domain on one host after the migration call."""

    active: bool | None  # running, or paused by the migration; None: cannot be told
    postcopy: bool = False  # it took part in a post-copy switch-over
    state: str = ""


def _seen_on(hv: Hypervisor | None, ident: DomainIdentity, bound: float) -> Seen:
    if hv is None:
        return Seen(None)
    try:
        _, state, reason = Domain.lookup_state(hv, ident, bound)
    except DomainNotFound:
        return Seen(False, state="absent")
    except LibvirtFact:
        return Seen(None, state="unknown")
    failed = " (post-copy failed)" if postcopy_failed(state, reason) else ""
    return Seen(state not in (DomainState.SHUTOFF, DomainState.CRASHED),
                in_postcopy(state, reason), state.value + failed)


def _start_resources_there(ctx: Context, dom: Domain, dest: Hypervisor | None,
                           target_node: str, until: Deadline) -> None:
    """start_resources on the target, as start does here: the storage pools and networks the
    running domain refers to, before migrating, so that the migration does not fail and fall
    back to stop/start (an outage)."""
    if dest is None:
        ctx.log.warning(f"start_resources: cannot connect to {target_node}'s hypervisor to "
                        "start the domain's pools and networks there")
        return
    from ..features.start_resources import start_resources

    # The inactive form: the live one may show a network's interfaces by what they became
    # (a bridge), no longer by the network's name.
    xml = dom.xml_desc(until.bound(QUERY_BOUND_S), inactive=True)
    start_resources(ctx, dest, xml.encode(), f"the definition of {dom.name}", until)


def _steer(ctx: Context, dom: Domain, step: int, bound: float, why: str) -> int:
    """Apply migration_deadline_action once more; returns the number of steps taken (after
    a post-copy switch, POSTCOPY_STEP)."""
    steer = next_steer(ctx.params.migration_deadline_action, step)
    if steer is None:
        return step
    if steer.postcopy:
        ctx.log.warning(f"migration of {dom.name} will not converge in time ({why}): "
                        "switching to post-copy")
        dom.start_postcopy(bound)
    else:
        ctx.log.warning(f"migration of {dom.name} will not converge in time ({why}): "
                        f"allowing {steer.downtime_ms} ms downtime")
        dom.set_max_downtime(steer.downtime_ms, bound)
    return steer.next_step


class WatchEnd(NamedTuple):
    returned: bool  # the migration call returned on its own
    postcopy: bool  # the agent switched it to post-copy
    suspended: bool = False  # the agent paused the guest (migrate_options --timeout)


class _Steering:
    """What migrate_options asks for while the migration runs (virsh does these itself):
    ``--timeout N`` pauses the guest (or with --timeout-postcopy switches to post-copy) after
    N seconds; ``--postcopy-after-precopy`` switches once the first pass is done."""

    def __init__(self, options: MigrateOptions, started: float) -> None:
        self.options = options
        self.timeout_at = None if options.timeout_s is None else started + options.timeout_s
        self.suspended = False
        self.postcopy = False

    def apply(self, ctx: Context, dom: Domain, iteration: int, now: float,
              bound: float) -> None:
        o = self.options
        if self.postcopy or self.suspended:
            return
        if o.postcopy_after_precopy and iteration >= 2:
            ctx.log.info(f"first pass of {dom.name}'s migration done: switching to post-copy "
                         "(--postcopy-after-precopy)")
            dom.start_postcopy(bound)
            self.postcopy = True
        elif self.timeout_at is not None and now >= self.timeout_at:
            if o.timeout_action == "postcopy":
                ctx.log.warning(f"migration of {dom.name} still running after --timeout "
                                f"{o.timeout_s}s: switching to post-copy")
                dom.start_postcopy(bound)
                self.postcopy = True
            else:
                ctx.log.warning(f"migration of {dom.name} still running after --timeout "
                                f"{o.timeout_s}s: pausing the guest so that it completes")
                dom.suspend(bound)
                self.suspended = True


def _watch(ctx: Context, dom: Domain, run: PendingCall, abort_at: Deadline,
           options: MigrateOptions) -> WatchEnd:
    """Log progress and steer until the migration ends or it is time to abort."""
    params = ctx.params
    downtime_pending = params.migration_downtime > 0
    next_log = abort_at.now() + PROGRESS_LOG_S
    last_steer = abort_at.now()
    steering = _Steering(options, abort_at.now())
    step = 0
    postcopy = False
    trend = Convergence()

    def end(returned: bool) -> WatchEnd:
        return WatchEnd(returned, postcopy or steering.postcopy, steering.suspended)

    while not run.wait(min(MIGRATION_POLL_S, abort_at.remaining())):
        if abort_at.expired():
            return end(False)
        try:
            j = dom.job_stats(abort_at.bound(QUERY_BOUND_S))
        except HypervisorTimeout:
            return end(run.done())
        except LibvirtFact as f:
            ctx.log.debug(f"job statistics unavailable: {f.message}")
            continue
        if not j.active:
            continue
        if downtime_pending:
            try:
                dom.set_max_downtime(params.migration_downtime, abort_at.bound(QUERY_BOUND_S))
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
        try:
            steering.apply(ctx, dom, j.iteration, now, abort_at.bound(QUERY_BOUND_S))
        except LibvirtFact as f:
            ctx.log.warning(f"cannot apply migrate_options to the running migration: "
                            f"{f.message}")
            steering.timeout_at = None
        trend.add(j.iteration, j.remaining_bytes, j.bytes_per_s, j.dirty_bytes_per_s)
        action = ctx.params.migration_deadline_action
        why = None if now - last_steer < STEER_EVERY_S or next_steer(action, step) is None \
            else trend.steer_reason(abort_at.remaining(), step_reserve_s(
                action, step, trend.left_bytes(), trend.bytes_per_s))
        if why:
            try:
                step = _steer(ctx, dom, step, abort_at.bound(QUERY_BOUND_S), why)
                postcopy = postcopy or ctx.params.migration_deadline_action == "postcopy"
            except LibvirtFact as f:
                ctx.log.warning(f"cannot steer the migration: {f.message}")
            last_steer = now
    return end(True)


def _may_switch_to_postcopy(ctx: Context, options: MigrateOptions) -> bool:
    """Whether this migration may enter post-copy (the agent switches it)."""
    return (ctx.params.migration_deadline_action == "postcopy" or options.postcopy_after_precopy
            or (options.timeout_s is not None and options.timeout_action == "postcopy"))


def _refuse_migration(ctx: Context, target_node: str) -> None:
    """A value that matters only to migration fails the migration (1: Pacemaker then stops
    and starts the guest instead), never with 6, which would stop the resource everywhere."""
    problems = ctx.params.problems + ctx.params.migration_problems(ctx.env.remote_node)
    for warning in ctx.params.notes + tuple(f"{u}: ignored" for u in ctx.params.unknown):
        ctx.log.warning(warning)
    if problems:
        raise AgentError(f"cannot migrate to {target_node}: {'; '.join(problems)}")
    if ctx.params.migration_settings:
        from ..migration_options import migration_warnings

        for warning in migration_warnings(ctx.params):
            ctx.log.warning(warning)


def _read_xml_files(options: MigrateOptions) -> dict[str, str]:
    """--xml / --persistent-xml: the files' content, read here as virsh reads them."""
    out = {}
    for param, path in options.xml_files.items():
        try:
            with open(path, encoding="utf-8") as f:
                out[param] = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise AgentError(f"cannot migrate: migrate_options names {path}, which cannot be "
                             f"read on this node ({getattr(exc, 'strerror', None) or exc})"
                             ) from None
    return out


def migrate_to(ctx: Context) -> None:
    p = ctx.params
    target_node = ctx.env.meta.get("migrate_target", "").strip()
    if not target_node:
        raise ArgsError("migrate_to needs the target node (OCF_RESKEY_CRM_meta_migrate_target, "
                        "set by Pacemaker)")
    _refuse_migration(ctx, target_node)
    target = config_target(ctx)
    ident = target.ident
    options = parse_migrate_options(p.migrate_options)
    if p.hypervisor and target.uri != p.hypervisor:
        ctx.log.info(f"migrating through {target.uri}, where this agent recorded {ident.name} "
                     "running")
    dest_uri = destination_uri(target.uri, target_node, remoteuri=p.remoteuri,
                               transport=p.migration_transport, user=p.migration_user,
                               network_suffix=p.migration_network_suffix)
    data_uri = migration_uri(target.uri, target_node, options, migrateuri=p.migrateuri,
                             network_suffix=p.migration_network_suffix,
                             migrateport=p.migrateport, remoteuri=p.remoteuri,
                             user=p.migration_user)
    deadline = ctx.deadline("migrate_to")
    abort_at = deadline.before(_abort_reserve(deadline.total))
    hv: Hypervisor | None = None
    dest: Hypervisor | None = None
    try:
        hv = connect(ctx, target.uri, deadline, retry_for_s=min(3.0, deadline.total / 10))
        try:
            dom, state, _ = Domain.lookup_state(hv, ident, deadline.bound(QUERY_BOUND_S))
        except DomainNotFound:
            raise AgentError(f"domain {ident.name} is not running here: nothing to migrate "
                             f"to {target_node}") from None
        if state not in (DomainState.RUNNING, DomainState.BLOCKED, DomainState.PAUSED):
            raise AgentError(f"domain {ident.name} is {state.value} here: cannot migrate it")
        try:
            version = hv.hypervisor_version(deadline.bound(QUERY_BOUND_S))
        except CallTimedOut as slow:
            # Asked only to refuse options this qemu lacks, which libvirt refuses too: a
            # daemon too busy to say in time must not cost the migration its whole budget.
            ctx.log.warning(f"qemu version unknown ({slow.message}): migrating without "
                            "checking the options against it")
            version = None
        version_problems = check_hypervisor(options, version)
        if version_problems:
            raise AgentError(f"cannot migrate to {target_node}: {'; '.join(version_problems)}")
        flag_names = list(options.flag_names)
        flag_names.append("VIR_MIGRATE_LIVE")
        if p.migration_deadline_action == "postcopy" and "VIR_MIGRATE_POSTCOPY" not in \
                flag_names:
            flag_names.append("VIR_MIGRATE_POSTCOPY")
        p2p = options.p2p
        if _may_switch_to_postcopy(ctx, options) and not p2p:
            # A post-copy phase may outlast this action. Driven by this process (a managed
            # migration), it would fail the moment the process exits (libvirt cannot finish
            # it without its client: the source pauses, post-copy failed, and the guest's
            # memory is split). Driven by the source's libvirtd (peer to peer) it finishes.
            flag_names.append("VIR_MIGRATE_PEER2PEER")
            p2p = True
        try:
            dest = open_hypervisor(dest_uri, abort_at, attempt_s=min(10.0, abort_at.total / 2))
        except LibvirtFact as f:
            if not p2p:
                raise AgentError(f"cannot connect to {target_node}'s hypervisor {dest_uri}: "
                                 f"{f.message}") from None
            ctx.log.warning(f"cannot check the target {dest_uri}: {f.message}")
        mparams: dict[str, str | int | list[str]] = dict(options.param_values)
        mparams.update(_read_xml_files(options))
        if data_uri:
            mparams["VIR_MIGRATE_PARAM_URI"] = data_uri
        if p.migration_speed > 0:
            mparams.setdefault("VIR_MIGRATE_PARAM_BANDWIDTH", p.migration_speed)
        ctx.log.info(f"live-migrating {ident.name} to {target_node}: hypervisor {dest_uri}, "
                     f"data {data_uri or 'by libvirt default'}"
                     f"{', peer-to-peer' if p2p else ''}; options: "
                     f"{options.describe()}"
                     f"{f', speed {p.migration_speed} MiB/s' if p.migration_speed else ''}")
        if p.start_resources:
            _start_resources_there(ctx, dom, dest, target_node, abort_at)
        to = None if p2p else dest
        if p.save_config_on_stop or p.sync_config_on_stop:
            from ..features.config_save import save_config

            save_config(ctx, dom, abort_at)
        t0 = deadline.now()
        run = dom.start_migration(to, dest_uri, flag_names, mparams)
        watched = _watch(ctx, dom, run, abort_at, options)
        if not watched.returned and watched.postcopy:
            # Past the switch-over a migration cannot be aborted (the target runs the guest):
            # it can only finish.
            ctx.log.warning(f"post-copy migration of {ident.name} still running at the "
                            "deadline: waiting for it")
            run.wait(max(0.0, deadline.remaining() - _abort_reserve(deadline.total) / 2))
        elif not watched.returned:
            ctx.log.warning(f"migration of {ident.name} did not finish in time: aborting it")
            try:
                dom.abort_job(deadline.bound(QUERY_BOUND_S))
            except LibvirtFact as f:
                ctx.log.warning(f"abort of the migration job failed: {f.message}")
            run.wait(max(0.0, deadline.remaining() - 1.0))
        if watched.suspended:
            _resume_after_timeout(ctx, hv, dest, ident, deadline)
        took = deadline.now() - t0

        def recover() -> PendingCall:
            return dom.start_migration(to, dest_uri, [*flag_names, "VIR_MIGRATE_POSTCOPY_RESUME"],
                                       mparams)

        _outcome(ctx, hv, dest, run, ident, target_node, took, deadline, watched.postcopy,
                 recover)
    except LibvirtFact as f:
        raise fact_to_error(f, target.uri, f"migration of {ident.name} to {target_node} "
                            "failed") from None
    except ImportError:
        raise libvirt_python_missing() from None
    finally:
        close(dest)
        close(hv)


def _resume_after_timeout(ctx: Context, hv: Hypervisor, dest: Hypervisor | None,
                          ident: DomainIdentity, deadline: Deadline) -> None:
    """The agent paused the guest (--timeout) so that its migration completes: it runs on
    wherever it ended (the target after a success, the source after an abort)."""
    for side in (dest, hv):
        if side is None:
            continue
        try:
            dom, state, _ = Domain.lookup_state(side, ident, deadline.bound(QUERY_BOUND_S))
            if state == DomainState.PAUSED:
                dom.resume(deadline.bound(QUERY_BOUND_S))
                ctx.log.info(f"{ident.name} resumed on {side.uri} after the migration")
        except LibvirtFact:
            continue


def _outcome(ctx: Context, hv: Hypervisor, dest: Hypervisor | None, run: PendingCall,
             ident: DomainIdentity, target_node: str, took: float, deadline: Deadline,
             postcopy: bool, recover: Callable[[], PendingCall]) -> None:
    """Judge by where the guest runs now, not only by what the API call said."""
    bound = deadline.bound(QUERY_BOUND_S)
    here, there = _seen_on(hv, ident, bound), _seen_on(dest, ident, bound)
    postcopy = postcopy or here.postcopy or there.postcopy
    if not run.done() and postcopy:
        # Past the switch-over the target runs the guest and pulls the rest of its memory from
        # the source here: ending now would end the client that drives the migration, and a
        # stop of the source would take memory the guest needs. Not a success yet.
        raise AgentError(f"post-copy migration of {ident.name} to {target_node} still moving "
                         f"memory after {took:.1f}s: the guest runs there; a stop here waits "
                         "for the migration to end")
    judgement = judge(run.done(), run.error is not None, here.active, there.active,
                      postcopy)
    why = str(run.error) if run.error is not None else "unknown error"
    what = f"migration of {ident.name} to {target_node}"
    if judgement.recover:
        ctx.log.warning(f"post-copy {what} failed ({why}): asking libvirt to recover it")
        resume = recover()
        resume.wait(max(0.0, deadline.remaining() - 1.0))
        bound = deadline.bound(QUERY_BOUND_S)
        here, there = _seen_on(hv, ident, bound), _seen_on(dest, ident, bound)
        if resume.done() and resume.error is None and here.active is False \
                and there.active:
            judgement = judge(True, False, False, True, postcopy=True)
        elif resume.error is not None:
            why = f"{why}; recovery failed: {resume.error}"
    verdict = judgement.verdict
    if verdict == Verdict.MIGRATED:
        if judgement.error_overruled:
            ctx.log.warning(f"migration call reported {why}, but {ident.name} now runs on "
                            f"{target_node} only")
        forget_record(ctx)
        if ctx.env.under_pacemaker:
            from ..features import utilization

            utilization.forget(ctx)
        ctx.log.info(f"{ident.name} migrated to {target_node} in {took:.1f}s")
        return
    if verdict == Verdict.POSTCOPY_FAILED:
        # Never destroy either side here: each holds part of the guest's memory. Pacemaker
        # stops the resource next; it must not believe the guest runs anywhere.
        raise AgentError(f"post-copy {what} failed after the switch-over: the guest cannot run "
                         f"on either host (here: {here.state}, on {target_node}: "
                         f"{there.state or 'unknown'}) ({why})")
    if verdict == Verdict.NOT_ENDED:
        raise AgentError(f"{what} did not end after abort; guest here: {here.active}, on "
                         f"target: {there.active}")
    if verdict == Verdict.STILL_HERE:
        raise AgentError(f"{what} reported success but the guest still runs here")
    if judgement.remove_incoming:
        # An incoming domain left behind on the target after an abort must not linger.
        _remove_incoming(ctx, dest, ident, bound)
    if verdict == Verdict.KEPT_HERE:
        raise AgentError(f"{what} failed after {took:.1f}s ({why}); it keeps running here")
    raise AgentError(f"{what} failed ({why}); guest here: {here.active}, on target: "
                     f"{there.active}")


def _remove_incoming(ctx: Context, dest: Hypervisor | None, ident: DomainIdentity,
                     bound: float) -> None:
    if dest is None:
        return
    try:
        dom, state, _ = Domain.lookup_state(dest, ident, bound)
        if state == DomainState.PAUSED:
            ctx.log.warning(f"destroying the unfinished incoming copy of {ident.name} on the "
                            "target")
            dom.destroy(bound)
    except LibvirtFact:
        pass


def _arriving_by_owner(ctx: Context, problem: AgentError, source: str,
                       deadline: Deadline) -> Target:
    """No readable config and no state record here: the arriving domain is the one that
    carries the resource's owner tag (it travels with the migration)."""
    from ..core.ownership import find_owned

    give_up = deadline.before(max(0.0, deadline.remaining() - OWNER_ARRIVAL_S))
    while True:
        search = find_owned(ctx, deadline)
        if search.targets:
            return search.targets[0]
        if give_up.expired() or deadline.remaining() <= ARRIVAL_POLL_S:
            raise AgentError(f"{problem.reason}; no domain of this resource arrived from "
                             f"{source} ({search.how})", problem.rc)
        ctx.sleep(ARRIVAL_POLL_S)


def migrate_from(ctx: Context) -> None:
    source = ctx.env.meta.get("migrate_source", "").strip() or "the source"
    deadline = ctx.deadline("migrate_from")
    targets, problem = identify(ctx)
    target = targets[0] if targets else _arriving_by_owner(ctx, problem or AgentError(
        "no config"), source, deadline)
    ident = target.ident
    hv: Hypervisor | None = None
    try:
        hv = connect(ctx, target.uri, deadline, retry_for_s=min(3.0, deadline.total / 10))
        last = "not here"
        while True:
            try:
                dom, state, reason = Domain.lookup_state(hv, ident,
                                                         deadline.bound(QUERY_BOUND_S))
                if arrived(state, reason):
                    _arrived(ctx, dom, target, problem, source, deadline)
                    return
                last = state.value
            except DomainNotFound:
                last = "not here"
            except (CallTimedOut, DomainBusy) as slow:
                # libvirtd answers, but holds the arriving domain (the incoming migration)
                last = f"held by libvirt ({slow.message})"
            if deadline.remaining() <= ARRIVAL_POLL_S:
                raise AgentError(f"domain {ident.name} did not arrive from {source} within "
                                 f"{deadline.total:.0f}s (state: {last})")
            ctx.sleep(ARRIVAL_POLL_S)
    except LibvirtFact as f:
        raise fact_to_error(f, target.uri, f"migrate_from of {ident.name}") from None
    except ImportError:
        raise libvirt_python_missing() from None
    finally:
        close(hv)


def _arrived(ctx: Context, dom: Domain, target: Target, problem: AgentError | None,
             source: str, deadline: Deadline) -> None:
    """The domain arrived (running, or paused as it was on the source): record it. Without a
    readable config here the migration still fails (the node could not start the guest
    again), but the record lets the stop Pacemaker runs next find it and stop it for real."""
    ident = target.ident
    stamp = target.unrecorded if target.unrecorded is not None else _config_stamp(ctx)
    record_running(ctx, dom, ident, target.uri, stamp,
                   ident.uuid if target.uuid_from_config else None, deadline)
    if problem is not None:
        raise AgentError(f"{problem.reason}; {ident.name} arrived from {source} and is "
                         "recorded here, so that stop finds it", problem.rc)
    if ctx.params.monitor_scripts.strip():
        from ..features.monitor_scripts import wait_monitor_scripts

        wait_monitor_scripts(ctx, ident.name, deadline)
    if ctx.params.save_config_on_stop or ctx.params.sync_config_on_stop:
        from ..features.config_save import save_config

        save_config(ctx, dom, deadline)
    ctx.log.info(f"{ident.name} arrived from {source} and runs here")


def _config_stamp(ctx: Context) -> ConfigStamp:
    path = ctx.params.config
    try:
        st = os.stat(path)
        return ConfigStamp(path, st.st_mtime_ns, st.st_size)
    except OSError:
        return ConfigStamp(path, 0, -1)
