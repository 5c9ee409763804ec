"""Which domain a resource means, and on which hypervisor: from the config file, or from the
record of what this agent recorded running on this host (started, adopted, or arrived by
migration) when the config is unreadable or now names another domain. Also opening and
closing the hypervisor for an action."""

from __future__ import annotations

from ..deadline import Deadline
from ..errors import AgentError, ConfigError, NotInstalled
from ..tuples import NamedTuple
from ..virt.connection import Hypervisor, open_hypervisor
from ..virt.domxml import DomainIdentity, parse_identity, read_config
from . import record as staterec
from .context import QUERY_BOUND_S, Context, HypervisorChoice
from .record import ConfigStamp, DomainRecord


class Target(NamedTuple):
    """A domain to act on, with the hypervisor it lives on."""

    ident: DomainIdentity
    uri: str
    source: str  # "config" or "record": where the identity came from
    # The config read with no state record on this host (or a record of the same domain made
    # before the config was edited): a monitor that finds the domain running records it, so
    # later monitors skip the XML parse.
    unrecorded: ConfigStamp | None = None
    # False when ident.uuid is only what libvirt chose at the last start (the config names
    # no uuid): a domain of the same name re-created from the config is then this domain.
    uuid_from_config: bool = True
    # Why ``uri`` cannot be used (None when it can), and whether it came from the resource's
    # own parameters (wrong everywhere) or from this node (LIBVIRT_DEFAULT_URI, libvirt.conf).
    uri_problem: str | None = None
    uri_explicit: bool = True
    # The state record, when the identity came from it (read once per action).
    record: DomainRecord | None = None


def check_virt_type(ctx: Context, ident: DomainIdentity, path: str) -> None:
    allowed = ctx.profile.virt_types
    if allowed is not None and ident.virt_type not in allowed:
        raise ConfigError(
            f"config {path}: domain type {ident.virt_type!r} is not handled by "
            f"{ctx.profile.agent_name} (expects {', '.join(sorted(allowed))})"
        )


def unusable_uri(problem: str, choice_explicit: bool, origin: str) -> AgentError:
    """How an action that needs the URI ends when it cannot be used: wrong everywhere when
    the resource's parameters name it (6), a node-local problem otherwise (5)."""
    if choice_explicit:
        return ConfigError(problem)
    return NotInstalled(f"default hypervisor URI unusable on this node: {problem}"
                        f"{f' ({origin})' if origin else ''}")


def check_uri(ctx: Context, choice: HypervisorChoice) -> None:
    if choice.problem:
        raise unusable_uri(choice.problem, choice.explicit, choice.origin)
    from ..uri import is_local_uri

    uri = choice.uri
    if ctx.env.remote_node and not is_local_uri(uri):
        raise ConfigError(
            f"resource is guest node {ctx.env.remote_node} but hypervisor {uri} is remote: "
            "fencing this host would not stop the guest; use a local URI such as qemu:///system"
        )


def _recorded(record: DomainRecord) -> Target:
    """The domain the state record names, on the hypervisor this agent started it through."""
    return Target(record.identity, record.uri, "record",
                  uuid_from_config=record.config_uuid is not None, record=record)


def identify(ctx: Context) -> tuple[list[Target], AgentError | None]:
    """The domain(s) this resource refers to, for stop and monitor.

    From the config file, and from the record of what this agent started on this host: the
    record stands in when the config is unreadable, and is added when the config has since
    been edited to name another domain (that one may still run)."""
    record = staterec.load(ctx.record_path)
    problem: AgentError | None = None
    ident: DomainIdentity | None = None
    try:
        cfg = read_config(ctx.params.config)
        stamp = ConfigStamp(cfg.path, cfg.mtime_ns, cfg.size)
        if record is not None and record.stamp == stamp and (
                not ctx.params.hypervisor or ctx.params.hypervisor == record.uri):
            return [_recorded(record)], None
        ident = parse_identity(cfg.data, cfg.path)
    except AgentError as exc:
        problem = exc

    targets: list[Target] = []
    same = record is not None and ident is not None and record.name == ident.name and (
        ident.uuid is None or record.uuid is None or record.uuid == ident.uuid)
    record_covered = False
    if ident is not None:
        pinned = ident.uuid is not None
        if record is not None and same and ident.uuid is None:
            ident = DomainIdentity(ident.name, record.uuid, ident.virt_type, ident.emulator)
        choice = ctx.hypervisor_for(ident)
        uri, problem_of_uri = choice.uri, choice.problem
        if problem_of_uri and not choice.explicit:
            problem_of_uri = f"{problem_of_uri} ({choice.origin})"
        if record is not None and same and (choice.problem or choice.uri == record.uri):
            # This very domain was started through the recorded URI: that is where to look,
            # whatever the URI computed now (libvirt.conf may have been broken since).
            if choice.problem:
                ctx.log.warning(f"{choice.problem} ({choice.origin}): using {record.uri}, "
                                f"where this agent recorded {record.name} running")
            uri, problem_of_uri = record.uri, None
            record_covered = True
        # No record, or one for this same domain from before the config was edited: a
        # monitor that finds the domain running (re)records it.
        unrecorded = stamp if record is None or same else None
        targets.append(Target(ident, uri, "config", unrecorded, pinned, problem_of_uri,
                              choice.explicit))
    if record is not None and not record_covered:
        # The record says where this agent found (started, adopted or received) the domain
        # running; it never claims a start it did not make.
        if problem is not None:
            ctx.log.warning(f"{problem.reason}; using domain {record.name} "
                            f"(uuid {record.uuid}) that this agent recorded running here")
        elif same:
            ctx.log.warning(f"hypervisor is {targets[0].uri}, but this agent recorded "
                            f"{record.name} running through {record.uri}: checking both")
        else:
            ctx.log.warning(f"config now names domain {targets[0].ident.name}, but this "
                            f"agent recorded {record.name} running here: checking both")
        targets.append(_recorded(record))
    return targets, problem


def config_target(ctx: Context) -> Target:
    """The one domain a migration acts on: the config's (or, unreadable, the recorded one)."""
    targets, problem = identify(ctx)
    if not targets:
        assert problem is not None
        raise problem
    return targets[0]


def connect(ctx: Context, uri: str, deadline: Deadline, retry_for_s: float) -> Hypervisor:
    """Open ``uri`` for this action: each attempt bounded, retried while libvirtd is
    unreachable for up to ``retry_for_s`` (it may be restarting)."""
    attempt_s = max(0.5, min(QUERY_BOUND_S, deadline.total / 3))
    return open_hypervisor(uri, deadline, retry_for_s=retry_for_s, attempt_s=attempt_s)


def close(hv: Hypervisor | None) -> None:
    """Close what connect opened (nothing is sent to a daemon that stopped answering)."""
    if hv is not None:
        hv.close()
