"""The agent's metadata file: the single source of truth for parameters and action timeouts.

Every action needs the schema, and a monitor runs every few seconds, so the XML is not parsed
on every run: `_schemas.py` holds the schema compiled from each metadata file (``make
schemas`` writes it; a unit test and ``make metadata-check`` fail when it is stale) together
with the CRC-32 of the file it came from. At run time the installed file is read and its CRC
compared; only a file that differs from the compiled one (edited on a node) is parsed, with
the standard library's expat-based ElementTree (a small trusted file; keeps lxml off this
path).
"""

from __future__ import annotations

from typing import Mapping

from .locate import metadata_path
from .tuples import NamedTuple


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


# What _schemas.py stores per agent: (crc32 of the XML, agent name, parameters as
# (name, type, default, required, shortdesc) tuples, action timeouts, actions).
CompiledSchema = tuple[int, str, tuple[tuple[str, str, "str | None", bool, str], ...],
                       dict[str, float], tuple[str, ...]]


def load_schema(agent_name: str) -> AgentSchema:
    from zlib import crc32  # built into CPython on Debian; cheap everywhere

    with open(metadata_path(agent_name), "rb") as f:
        data = f.read()
    try:
        from ._schemas import SCHEMAS
    except ImportError:
        SCHEMAS = {}
    compiled = SCHEMAS.get(agent_name)
    if compiled is not None and compiled[0] == crc32(data):
        return from_compiled(compiled)
    return parse_schema(data, agent_name)


def from_compiled(compiled: CompiledSchema) -> AgentSchema:
    _, name, params, timeouts, actions = compiled
    return AgentSchema(name, {p[0]: ParameterSpec(*p) for p in params}, dict(timeouts),
                       actions)


def to_compiled(schema: AgentSchema, data: bytes) -> CompiledSchema:
    from zlib import crc32

    params = tuple((p.name, p.type, p.default, p.required, p.shortdesc)
                   for p in schema.parameters.values())
    return (crc32(data), schema.name, params, dict(schema.action_timeouts_s), schema.actions)


def parse_schema(data: bytes, agent_name: str) -> AgentSchema:
    from xml.etree import ElementTree

    root = ElementTree.fromstring(data)
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
