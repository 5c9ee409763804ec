"""The agent's metadata file: the single source of truth for parameters and action timeouts.

Parsed with the standard library's expat-based ElementTree: it is a small trusted file and
this keeps lxml off the monitor path.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

from .locate import metadata_path


class ParameterSpec(NamedTuple):
    name: str
    type: str  # string | integer | boolean | time (ra-api-1.dtd)
    default: str | None
    required: bool
    shortdesc: str


class AgentSchema(NamedTuple):
    name: str
    parameters: Mapping[str, ParameterSpec]
    action_timeouts_s: Mapping[str, float]
    actions: tuple[str, ...]

    def timeout_s(self, action: str, fallback: float = 20.0) -> float:
        return self.action_timeouts_s.get(action, fallback)


def parse_duration_s(text: str) -> float:
    """Pacemaker interval/timeout syntax used in metadata: 90, 90s, 500ms, 2min, 1h."""
    value = text.strip().lower()
    units = (("ms", 0.001), ("msec", 0.001), ("min", 60.0), ("m", 60.0), ("h", 3600.0),
             ("hr", 3600.0), ("sec", 1.0), ("s", 1.0), ("us", 1e-6))
    for suffix, factor in sorted(units, key=lambda u: -len(u[0])):
        if value.endswith(suffix):
            return float(value[: -len(suffix)].strip()) * factor
    return float(value)


def load_schema(agent_name: str) -> AgentSchema:
    from xml.etree import ElementTree

    root = ElementTree.parse(metadata_path(agent_name)).getroot()
    params: dict[str, ParameterSpec] = {}
    for p in root.iterfind("parameters/parameter"):
        content = p.find("content")
        shortdesc = p.findtext("shortdesc", default="").strip()
        params[p.attrib["name"]] = ParameterSpec(
            name=p.attrib["name"],
            type=content.attrib.get("type", "string") if content is not None else "string",
            default=content.attrib.get("default") if content is not None else None,
            required=p.attrib.get("required", "0") == "1",
            shortdesc=shortdesc,
        )
    timeouts: dict[str, float] = {}
    actions: list[str] = []
    for a in root.iterfind("actions/action"):
        name = a.attrib["name"]
        if name not in actions:
            actions.append(name)
        if name not in timeouts and "timeout" in a.attrib:
            timeouts[name] = parse_duration_s(a.attrib["timeout"])
    return AgentSchema(root.attrib.get("name", agent_name), params, timeouts, tuple(actions))
