"""The OCF protocol layer: exit codes and the environment an agent is run with.

Everything here is read from a mapping passed in (``os.environ`` in production), so tests
build environments as plain dicts.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Mapping

from .tuples import NamedTuple


class OCFExit(IntEnum):
    SUCCESS = 0
    ERR_GENERIC = 1
    ERR_ARGS = 2
    ERR_UNIMPLEMENTED = 3
    ERR_PERM = 4
    ERR_INSTALLED = 5
    ERR_CONFIGURED = 6
    NOT_RUNNING = 7


RESKEY_PREFIX = "OCF_RESKEY_"
META_PREFIX = "OCF_RESKEY_CRM_meta_"
# Set by Pacemaker for every action; not a parameter of the agent.
PACEMAKER_INTERNAL_KEYS = frozenset({"crm_feature_set"})
# Read by resource-agents' framework for any agent (crm resource trace, pcs ... trace_ra=1):
# not parameters of the agent either, and never "unknown".
FRAMEWORK_KEYS = frozenset({"trace_ra", "trace_file", "trace_dir"})
DEFAULT_STATE_DIR = "/run/resource-agents"
# What resource-agents' ocf_is_true takes as true, exactly (case included); anything else is
# false. Every boolean a resource-agents agent reads is read so.
OCF_TRUE_WORDS = frozenset({"yes", "true", "1", "YES", "TRUE", "True", "ja", "on", "ON"})


def _int_or_none(value: str | None) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


class OCFEnv(NamedTuple):
    """What Pacemaker (or a person at a terminal) told this run of the agent."""

    action: str
    instance: str
    params: Mapping[str, str]
    meta: Mapping[str, str]
    meta_timeout_ms: int | None
    meta_interval_ms: int
    state_dir: str
    check_level: int
    debug: bool
    log_facility: str | None
    pacemaker: bool = False
    # FRAMEWORK_KEYS given for this resource (without the OCF_RESKEY_ prefix).
    framework: Mapping[str, str] = {}

    @property
    def is_probe(self) -> bool:
        """A probe is a monitor (or status) with interval 0 or none at all."""
        return self.action in ("monitor", "status") and self.meta_interval_ms == 0

    @property
    def under_pacemaker(self) -> bool:
        """Run by Pacemaker's executor (or against a CIB file), so crm_resource can work."""
        return self.pacemaker

    @property
    def remote_node(self) -> str | None:
        value = self.meta.get("remote_node", "").strip()
        return value or None

    @classmethod
    def from_environ(
        cls,
        action: str,
        environ: Mapping[str, str],
        overrides: Mapping[str, str] | None = None,
        agent_name: str = "PyVirtualDomain",
    ) -> OCFEnv:
        params: dict[str, str] = {}
        meta: dict[str, str] = {}
        framework: dict[str, str] = {}
        for key, value in environ.items():
            if key.startswith(META_PREFIX):
                meta[key[len(META_PREFIX):]] = value
            elif key.startswith(RESKEY_PREFIX):
                name = key[len(RESKEY_PREFIX):]
                if name in FRAMEWORK_KEYS:
                    framework[name] = value
                elif name not in PACEMAKER_INTERNAL_KEYS:
                    params[name] = value
        for name, value in (overrides or {}).items():
            (framework if name in FRAMEWORK_KEYS else params)[name] = value
        instance = environ.get("OCF_RESOURCE_INSTANCE") or agent_name
        check_level = _int_or_none(environ.get("OCF_CHECK_LEVEL")) or 0
        return cls(
            action=action,
            instance=instance,
            params=params,
            meta=meta,
            meta_timeout_ms=_int_or_none(meta.get("timeout")),
            meta_interval_ms=_int_or_none(meta.get("interval")) or 0,
            state_dir=environ.get("HA_RSCTMP") or DEFAULT_STATE_DIR,
            check_level=check_level,
            debug=environ.get("HA_debug", "0") not in ("", "0"),
            log_facility=environ.get("HA_LOGFACILITY") or None,
            pacemaker=bool(environ.get("OCF_RESKEY_crm_feature_set") or environ.get("CIB_file")),
            framework=framework,
        )
