"""The action context (environment, profile, parameters, log, clock) and the timing policy
every action shares."""

from __future__ import annotations

import time
from typing import Callable, Mapping, NamedTuple

from ..deadline import Clock, Deadline, for_action
from ..errors import ConfigError
from ..log import Log
from ..metadata import AgentSchema
from ..ocf import OCFEnv, OCFExit
from ..params import Params
from ..profiles import Profile
from ..uri import default_uri
from ..virt.domain import DomainState
from ..virt.domxml import DomainIdentity
from . import record as staterec

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


def _require_valid_params(ctx: Context) -> None:
    if ctx.params.problems:
        raise ConfigError("; ".join(ctx.params.problems))


def _warn_params(ctx: Context) -> None:
    for problem in ctx.params.problems:
        ctx.log.warning(f"{problem} (using the default)")
