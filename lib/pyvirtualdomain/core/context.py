"""The action context (environment, profile, parameters, log, clock) and the timing policy
every action shares.

How an action ends (one rule): an action function returns None when it succeeded and raises
an ``errors.AgentError`` (exit code + one-line reason) for every other end, NOT_RUNNING
included; helpers below it do the same. Only cli.py turns that into an exit code.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping

from ..deadline import Clock, Deadline, for_action
from ..errors import ConfigError
from ..log import Log
from ..metadata import AgentSchema
from ..ocf import OCFEnv
from ..params import Params
from ..profiles import Profile
from ..virt.domxml import DomainIdentity
from . import record

# Pacing of the loops that wait for a domain's state to change (seconds).
STATE_POLL_S = 0.2
# Most any single query of a healthy libvirtd may take before we call the daemon hung.
QUERY_BOUND_S = 5.0
# Safety margin kept back from the op timeout (at most 10% of it) for interpreter start-up,
# the last process scans and writes, and our exit on a loaded host.
ACTION_MARGIN_S = 2.0


class HypervisorChoice:
    """The hypervisor URI for a domain and where it came from. (A plain class: a NamedTuple
    costs every monitor a tenth of a millisecond to define.)"""

    __slots__ = ("uri", "origin", "explicit", "problem")

    def __init__(self, uri: str, origin: str, explicit: bool, problem: str | None) -> None:
        self.uri = uri
        self.origin = origin  # the hypervisor parameter, LIBVIRT_DEFAULT_URI, uri_default in ...
        # From the resource's own parameters (or the agent's fixed default): a problem with
        # it is wrong on every node. Else it came from this node's environment/libvirt.conf.
        self.explicit = explicit
        self.problem = problem  # why the URI cannot be used; None when it can


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
        self.record_path = record.record_path(env.state_dir, profile.agent_name, env.instance)

    def deadline(self, action: str) -> Deadline:
        return for_action(self.env.meta_timeout_ms, self.schema.timeout_s(action),
                          ACTION_MARGIN_S, self.clock)

    def hypervisor_for(self, ident: DomainIdentity) -> HypervisorChoice:
        """The hypervisor URI for the domain, where it came from, and why it cannot be used
        (None when it can)."""
        from ..uri import LibvirtConfError, default_uri, uri_problem  # not on the hot path
        if self.params.hypervisor:
            uri, origin, explicit = self.params.hypervisor, "the hypervisor parameter", True
        elif self.profile.fixed_default_uri:
            uri, origin, explicit = self.profile.fixed_default_uri, "the agent's default", True
        else:
            try:
                uri, origin = default_uri(ident.virt_type, self.environ)
            except LibvirtConfError as exc:
                return HypervisorChoice("", "libvirt.conf", False,
                                        f"libvirt.conf cannot be parsed: {exc}")
            explicit = False
        return HypervisorChoice(uri, origin, explicit, uri_problem(uri))


def require_valid_params(ctx: Context) -> None:
    """validate-all and start refuse to go on with a wrong parameter value (validate-all also
    with an unknown parameter, which the others only warn about). A problem of a value that
    matters only to migration never stops a guest from starting: validate-all refuses it,
    start warns (migrate_to fails on it: require_migration_params)."""
    for note in ctx.params.notes + ctx.params.ignored:
        ctx.log.warning(note)
    problems = ctx.params.problems
    if ctx.env.action == "validate-all":
        problems += ctx.params.unknown + ctx.params.migration_problems(ctx.env.remote_node)
    else:
        for unknown in ctx.params.unknown:
            ctx.log.warning(f"{unknown}: ignored")
    if problems:
        raise ConfigError("; ".join(problems))
    if ctx.env.action != "validate-all":
        warn_migration_params(ctx)
    elif ctx.params.migration_settings:
        from ..migration_options import migration_warnings

        for warning in migration_warnings(ctx.params):
            ctx.log.warning(warning)


def warn_migration_params(ctx: Context) -> None:
    """What is wrong or unwise in the migration settings, as warnings (start, probes)."""
    if not ctx.params.migration_settings:
        return
    from ..migration_options import migration_warnings

    for problem in ctx.params.migration_problems(ctx.env.remote_node):
        ctx.log.warning(f"{problem}: a live migration of this resource will fail (Pacemaker "
                        "then stops and starts it instead); validate-all refuses it")
    for warning in migration_warnings(ctx.params):
        ctx.log.warning(warning)


def warn_params(ctx: Context) -> None:
    """stop and monitor go on with the defaults: a typo must not leave a guest unmanaged."""
    for note in ctx.params.notes:
        ctx.log.warning(note)
    for problem in ctx.params.problems:
        ctx.log.warning(f"{problem} (using the default)")
    for unknown in ctx.params.unknown:
        ctx.log.warning(f"{unknown}: ignored")
