"""Typed, frozen resource parameters built from OCF_RESKEY_* and the metadata's defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .metadata import AgentSchema, ParameterSpec, parse_duration_s

TRUE_WORDS = frozenset({"1", "true", "yes", "on", "y", "ja"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "n", "nein", ""})
SHUTDOWN_MODES = ("acpi", "agent", "initctl", "signal", "paravirt")

Value = str | bool | int | float


@dataclass(frozen=True)
class Params:
    config: str
    hypervisor: str
    force_stop: bool
    shutdown_mode: tuple[str, ...]
    # Problems found while building: wrong types, unknown names, missing required values.
    # validate-all and start refuse to go on with any; stop and monitor warn and use defaults.
    problems: tuple[str, ...] = ()


def _convert(spec: ParameterSpec, raw: str) -> Value:
    text = raw.strip()
    if spec.type == "boolean":
        low = text.lower()
        if low in TRUE_WORDS:
            return True
        if low in FALSE_WORDS:
            return False
        raise ValueError(f"parameter {spec.name}={raw!r} is not a boolean (use true or false)")
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
    values: dict[str, Value] = {}
    for name, spec in schema.parameters.items():
        default = spec.default if spec.default is not None else ""
        text = raw.get(name)
        if text is None or (text.strip() == "" and spec.type != "string"):
            text = default
        if spec.required and not text.strip():
            problems.append(f"required parameter {name} is not set")
        try:
            values[name] = _convert(spec, text)
        except ValueError as exc:
            problems.append(str(exc))
            values[name] = _convert(spec, default)
    for name in sorted(set(raw) - set(schema.parameters)):
        problems.append(f"unknown parameter {name} (not supported by {schema.name})")

    modes: tuple[str, ...] = ()
    try:
        modes = _shutdown_modes(str(values.get("shutdown_mode", "")), shutdown_modes)
    except ValueError as exc:
        problems.append(str(exc))

    return Params(
        config=str(values.get("config", "")).strip(),
        hypervisor=str(values.get("hypervisor", "")).strip(),
        force_stop=bool(values.get("force_stop", False)),
        shutdown_mode=modes,
        problems=tuple(problems),
    )
