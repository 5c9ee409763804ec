"""Typed, frozen resource parameters built from OCF_RESKEY_* and the metadata's defaults."""

from __future__ import annotations

from typing import Mapping

from .metadata import AgentSchema, ParameterSpec, parse_duration_s
from .ocf import OCF_TRUE_WORDS
from .tuples import NamedTuple

# VirtualDomain reads every boolean with ocf_is_true: a resource keeps meaning what it meant.
TRUE_WORDS = OCF_TRUE_WORDS
# Values that plainly mean false (any case); others are false too, with a warning.
FALSE_WORDS = frozenset({"0", "false", "no", "off", "n", "nein", ""})
SHUTDOWN_MODES = ("acpi", "agent", "initctl", "signal", "paravirt")

Value = str | bool | int | float
BOOLEAN_EXTRAS = ("autoset_utilization_cpu", "autoset_utilization_host_memory",
                  "autoset_utilization_hv_memory", "unset_utilization_cpu",
                  "unset_utilization_host_memory", "unset_utilization_hv_memory",
                  "save_config_on_stop", "sync_config_on_stop", "start_resources",
                  "stateless", "fail_on_io_error")
# ocf:heartbeat:VirtualDomain's parameters. One an agent of ours lacks (PyLXCDomain has no
# migration, snapshot, ...) is not "unknown" on a resource switched from VirtualDomain: it is
# ignored, with a warning at start and validate-all only (never on every monitor).
VIRTUALDOMAIN_PARAMETERS = frozenset({
    "config", "hypervisor", "force_stop", "migration_transport", "migration_user",
    "migration_downtime", "migration_speed", "migration_network_suffix", "migrateuri",
    "migrate_options", "monitor_scripts", "autoset_utilization_cpu",
    "autoset_utilization_host_memory", "autoset_utilization_hv_memory",
    "unset_utilization_cpu", "unset_utilization_host_memory", "unset_utilization_hv_memory",
    "migrateport", "remoteuri", "save_config_on_stop", "sync_config_on_stop", "snapshot",
    "backingfile", "stateless", "copyindirs", "shutdown_mode", "start_resources"})
MIGRATION_PARAMETERS = ("migration_transport", "migration_user", "migration_downtime",
                        "migration_speed", "migration_network_suffix", "migrateuri",
                        "migrate_options", "migrateport", "remoteuri",
                        "migration_deadline_action")


class Params(NamedTuple):
    config: str
    hypervisor: str
    force_stop: bool
    shutdown_mode: tuple[str, ...]
    # Live migration (VirtualDomain's names and meanings); defaults where an agent lacks them.
    migration_transport: str = ""
    migration_user: str = ""
    migration_downtime: int = 0
    migration_speed: int = 0
    migration_network_suffix: str = ""
    migrateuri: str = ""
    migrate_options: str = ""
    migrateport: int | None = None
    remoteuri: str = ""
    migration_deadline_action: str = "downtime"
    # VirtualDomain's extras (parity.py).
    autoset_utilization_cpu: bool = True
    autoset_utilization_host_memory: bool = True
    autoset_utilization_hv_memory: bool = True
    unset_utilization_cpu: bool = False
    unset_utilization_host_memory: bool = False
    unset_utilization_hv_memory: bool = False
    monitor_scripts: str = ""
    save_config_on_stop: bool = False
    sync_config_on_stop: bool = False
    snapshot: str = ""
    start_resources: bool = False
    backingfile: str = ""
    stateless: bool = False
    copyindirs: str = ""
    # Guest health (ours).
    guest_agent_misses: int = 3
    fail_on_io_error: bool = True
    # Problems found while building: wrong types, unknown names, missing required values.
    # validate-all and start refuse to go on with any; stop and monitor warn and use defaults.
    problems: tuple[str, ...] = ()
    # Names the metadata does not know, as messages: validate-all refuses them; every other
    # action warns and goes on (a typo must not ban a running guest's resource cluster-wide).
    unknown: tuple[str, ...] = ()
    # VirtualDomain's parameters this agent does not have, as messages (start and
    # validate-all warn; a resource switched from VirtualDomain keeps working).
    ignored: tuple[str, ...] = ()
    # Values taken in a way that may surprise (a boolean that is neither true nor false as
    # ocf_is_true reads it): every action warns.
    notes: tuple[str, ...] = ()
    # Whether any migration parameter was given: their own checks (migration_options.py)
    # run only in the actions that refuse problems, so a monitor never loads that code.
    migration_settings: bool = False

    def migration_problems(self, guest_node: str | None = None,
                           hypervisor_version: int | None = None) -> tuple[str, ...]:
        """Problems of the migration settings (``guest_node``: the resource's meta
        remote-node, which rules out some): they matter to migrate_to only."""
        if not self.migration_settings:
            return ()
        from .migration_options import check_parameters

        return tuple(check_parameters(self, guest_node, hypervisor_version))


def _boolean(spec: ParameterSpec, raw: str, notes: list[str]) -> bool:
    text = raw.strip()
    if text in TRUE_WORDS:
        return True
    if text.lower() not in FALSE_WORDS:
        notes.append(f"parameter {spec.name}={raw!r} is taken as false (true is one of "
                     "yes, true, 1, on, ja as resource-agents reads them)")
    return False


def _convert(spec: ParameterSpec, raw: str) -> Value:
    text = raw.strip()
    if spec.type == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"parameter {spec.name}={raw!r} is not an integer") from None
    if spec.type == "time":
        try:
            return parse_duration_s(text)
        except ValueError:
            raise ValueError(f"parameter {spec.name}={raw!r} is not a time value") from None
    return raw


def _unknown(name: str, schema: AgentSchema) -> str:
    """The message for a parameter the metadata does not know, with the likely intended one."""
    from difflib import get_close_matches  # only when a parameter is unknown

    close = get_close_matches(name, list(schema.parameters), n=1, cutoff=0.75)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"unknown parameter {name} (not supported by {schema.name}){hint}"


def _shutdown_modes(raw: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    modes = tuple(m.strip().lower() for m in raw.replace(" ", ",").split(",") if m.strip())
    bad = [m for m in modes if m not in allowed]
    if bad:
        raise ValueError(
            f"shutdown_mode={raw!r}: unknown mode {', '.join(bad)}"
            f" (use one or more of {', '.join(allowed)})"
        )
    return modes


def build_params(raw: Mapping[str, str], schema: AgentSchema,
                 shutdown_modes: tuple[str, ...] = SHUTDOWN_MODES) -> Params:
    problems: list[str] = []
    notes: list[str] = []
    values: dict[str, Value] = {}
    for name, spec in schema.parameters.items():
        default = spec.default if spec.default is not None else ""
        text = raw.get(name)
        if text is None or (text.strip() == "" and spec.type != "string"):
            text = default
        if spec.required and not text.strip():
            problems.append(f"required parameter {name} is not set")
        if not text.strip() and spec.type != "string":
            continue  # unset number without a default: the Params field's default applies
        if spec.type == "boolean":
            values[name] = _boolean(spec, text, notes)
            continue
        try:
            values[name] = _convert(spec, text)
        except ValueError as exc:
            problems.append(str(exc))
            if default.strip() or spec.type == "string":
                values[name] = _convert(spec, default)
    extra = set(raw) - set(schema.parameters)
    unknown = tuple(_unknown(name, schema) for name in sorted(extra - VIRTUALDOMAIN_PARAMETERS))
    ignored = tuple(f"parameter {name} of VirtualDomain does nothing in {schema.name}: ignored"
                    for name in sorted(extra & VIRTUALDOMAIN_PARAMETERS))

    misses = values.get("guest_agent_misses")
    if isinstance(misses, int) and not isinstance(misses, bool) and misses < 1:
        problems.append(f"guest_agent_misses={misses} must be 1 or more")
        values["guest_agent_misses"] = 3
    modes: tuple[str, ...] = ()
    try:
        modes = _shutdown_modes(str(values.get("shutdown_mode", "")), shutdown_modes)
    except ValueError as exc:
        problems.append(str(exc))

    def text_of(name: str, default: str = "") -> str:
        return str(values.get(name, default)).strip()

    def number(name: str) -> int:
        value = values.get(name, 0)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    port_raw = raw.get("migrateport", "").strip()
    params = Params(
        config=text_of("config"),
        hypervisor=text_of("hypervisor"),
        force_stop=bool(values.get("force_stop", False)),
        shutdown_mode=modes,
        migration_transport=text_of("migration_transport"),
        migration_user=text_of("migration_user"),
        migration_downtime=number("migration_downtime"),
        migration_speed=number("migration_speed"),
        migration_network_suffix=text_of("migration_network_suffix"),
        migrateuri=text_of("migrateuri"),
        migrate_options=text_of("migrate_options"),
        migrateport=number("migrateport") if port_raw and "migrateport" in values else None,
        remoteuri=text_of("remoteuri"),
        migration_deadline_action=(text_of("migration_deadline_action", "downtime").lower()
                                   or "downtime"),
        **{name: bool(values[name]) for name in BOOLEAN_EXTRAS if name in values},
        monitor_scripts=text_of("monitor_scripts"),
        snapshot=text_of("snapshot"),
        backingfile=text_of("backingfile"),
        copyindirs=text_of("copyindirs"),
        guest_agent_misses=number("guest_agent_misses") if "guest_agent_misses" in values
        else 3,
        problems=tuple(problems),
        unknown=unknown,
        ignored=ignored,
        notes=tuple(notes),
        migration_settings=any(name in raw for name in MIGRATION_PARAMETERS
                               if name in schema.parameters),
    )
    return params
