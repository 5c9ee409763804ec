"""A small per-resource record of the domain this agent started on this host.

It lives in the resource-agents state directory (HA_RSCTMP, a tmpfs under /run that a reboot
empties, as a reboot empties the host of guests). Stop and probe use it to find the domain
when the config file is unreadable; monitor uses it to skip re-parsing an unchanged config.

The format is ``key=value`` lines (backslash escapes for backslash, newline and carriage
return), readable with ``cat`` and parsed without importing ``json``, which a monitor would
otherwise pay for on every run. Records written as JSON by earlier versions are still read.
"""

from __future__ import annotations

import os
import time

from ..fileio import atomic_write, dump_fields, parse_fields
from ..tuples import NamedTuple
from ..virt.domxml import DomainIdentity


class ConfigStamp(NamedTuple):
    """The config file a record was made from, as it was then: a monitor that finds the same
    path, mtime and size trusts the record instead of parsing the file."""

    path: str
    mtime_ns: int
    size: int


class DomainRecord(NamedTuple):
    name: str
    uuid: str | None
    virt_type: str
    emulator: str | None
    uri: str
    config: str
    config_mtime_ns: int
    config_size: int
    started_at: float
    # The uuid the config file itself names; None when it names none (libvirt then chose
    # ``uuid``, and a domain re-created from the same config gets another one).
    config_uuid: str | None = None
    # The action of the domain's watchdog device when it has one (a monitor looks for the
    # core dump that action "dump" leaves); None: none, or not known.
    watchdog: str | None = None

    @property
    def stamp(self) -> ConfigStamp:
        return ConfigStamp(self.config, self.config_mtime_ns, self.config_size)

    @property
    def identity(self) -> DomainIdentity:
        return DomainIdentity(self.name, self.uuid, self.virt_type, self.emulator)


def _safe_instance(instance: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.:" else "_" for c in instance) or "resource"


RECORD_SUFFIX = ".state"


LEGACY_SUFFIX = ".json"


def record_path(state_dir: str, agent: str, instance: str) -> str:
    return os.path.join(state_dir, f"{agent}-{_safe_instance(instance)}{RECORD_SUFFIX}")


def sibling(path: str, suffix: str) -> str:
    """A file beside the record ``path`` (the legacy record, the utilization cache)."""
    stem = path[: -len(RECORD_SUFFIX)] if path.endswith(RECORD_SUFFIX) else path
    return stem + suffix


def _read_raw(path: str) -> dict[str, str | None]:
    try:
        with open(path, "rb") as f:
            return {k: v or None for k, v in parse_fields(f.read(65536)).items()}
    except FileNotFoundError:
        if not path.endswith(RECORD_SUFFIX):
            raise
    import json  # a record an earlier version wrote before an upgrade

    with open(sibling(path, LEGACY_SUFFIX), "rb") as f:
        raw = json.loads(f.read(65536))
    if not isinstance(raw, dict):
        raise ValueError("not a record")
    return {str(k): None if v is None else str(v) for k, v in raw.items()}


def _required(raw: dict[str, str | None], key: str) -> str:
    value = raw[key]
    if value is None:
        raise ValueError(f"record has no {key}")
    return value


def load(path: str) -> DomainRecord | None:
    """The record, or None when there is none or it cannot be used (never raises)."""
    try:
        raw = _read_raw(path)
        return DomainRecord(
            name=_required(raw, "name"), uuid=raw.get("uuid"),
            virt_type=_required(raw, "virt_type"), emulator=raw.get("emulator"),
            uri=_required(raw, "uri"), config=_required(raw, "config"),
            config_mtime_ns=int(_required(raw, "config_mtime_ns")),
            config_size=int(_required(raw, "config_size")),
            started_at=float(_required(raw, "started_at")),
            # A record from before the config's own uuid was recorded (no such key at all)
            # is pinned to the uuid it names: an old record never lets a domain of the same
            # name under another uuid pass for this one.
            config_uuid=raw.get("config_uuid") if "config_uuid" in raw else raw.get("uuid"),
            watchdog=raw.get("watchdog"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(path: str, record: DomainRecord) -> None:
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    fields = {k: "" if v is None else str(v) for k, v in record._asdict().items()}
    atomic_write(path, dump_fields(fields), mode=0o644)


# Files the agent keeps beside the record, removed with it (the utilization cache has its
# own life: features/utilization.py).
AGENT_MISSES_SUFFIX = ".agent-misses"


def remove(path: str) -> list[str]:
    """Remove the record and the files beside it; the problems, as messages (a record that
    cannot be removed, HA_RSCTMP read-only, must not fail the stop that already stopped the
    domain; a stale record only makes later actions look for a domain that is gone)."""
    paths = [path]
    if path.endswith(RECORD_SUFFIX):
        paths += [sibling(path, LEGACY_SUFFIX), sibling(path, AGENT_MISSES_SUFFIX)]
    problems = []
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
        except OSError as exc:
            problems.append(f"cannot remove {p}: {exc.strerror}")
    return problems


def new_record(ident: DomainIdentity, uuid: str | None, uri: str, stamp: ConfigStamp,
               config_uuid: str | None, watchdog: str | None = None) -> DomainRecord:
    return DomainRecord(ident.name, uuid or ident.uuid, ident.virt_type, ident.emulator, uri,
                        stamp.path, stamp.mtime_ns, stamp.size, time.time(), config_uuid,
                        watchdog)
