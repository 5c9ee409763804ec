"""A small per-resource record of the domain this agent started on this host.

It lives in the resource-agents state directory (HA_RSCTMP, a tmpfs under /run that a reboot
empties, as a reboot empties the host of guests). Stop and probe use it to find the domain
when the config file is unreadable; monitor uses it to skip re-parsing an unchanged config.
"""

from __future__ import annotations

import json
import os
import time
from typing import NamedTuple

from .domxml import DomainIdentity


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

    @property
    def identity(self) -> DomainIdentity:
        return DomainIdentity(self.name, self.uuid, self.virt_type, self.emulator)


def _safe_instance(instance: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.:" else "_" for c in instance) or "resource"


def record_path(state_dir: str, agent: str, instance: str) -> str:
    return os.path.join(state_dir, f"{agent}-{_safe_instance(instance)}.json")


def load(path: str) -> DomainRecord | None:
    """The record, or None when there is none or it cannot be used (never raises)."""
    try:
        with open(path, "rb") as f:
            raw = json.loads(f.read(65536))
        return DomainRecord(
            name=str(raw["name"]), uuid=raw.get("uuid"), virt_type=str(raw["virt_type"]),
            emulator=raw.get("emulator"), uri=str(raw["uri"]), config=str(raw["config"]),
            config_mtime_ns=int(raw["config_mtime_ns"]), config_size=int(raw["config_size"]),
            started_at=float(raw["started_at"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def atomic_write(path: str, data: bytes, *, mode: int | None = None,
                 owner: tuple[int, int] | None = None) -> None:
    """Replace ``path`` with ``data`` atomically: a temp file in the same directory, fsync,
    optional mode/owner, rename. Readers see the old or the new content, never a mix."""
    import tempfile  # only writers need it: keep it off the monitor's import path

    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        if owner is not None:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save(path: str, record: DomainRecord) -> None:
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    atomic_write(path, json.dumps(record._asdict()).encode(), mode=0o644)


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def new_record(ident: DomainIdentity, uuid: str | None, uri: str, config: str,
               mtime_ns: int, size: int) -> DomainRecord:
    return DomainRecord(ident.name, uuid or ident.uuid, ident.virt_type, ident.emulator, uri,
                        config, mtime_ns, size, time.time())
