"""A watchdog that fired. With action pause, libvirt shows it in the domain's state (paused
by its watchdog: actions/monitor.py). With action dump, libvirt writes a core dump to its
auto_dump_path and lets the guest run on, hung: the dump file, newer than the start, is the
only trace a monitor can find. With action none nothing is left at all: validate-all says so
(the guest agent check at OCF_CHECK_LEVEL=20 catches the hung guest)."""

from __future__ import annotations

import os
import re

from ..core.context import Context
from ..errors import AgentError
from ..uri import LibvirtConfError, parse_libvirt_conf

QEMU_CONF = "/etc/libvirt/qemu.conf"
DEFAULT_AUTO_DUMP_PATH = "/var/lib/libvirt/qemu/dump"
# libvirt names a dump <id>-<the first 20 characters of the name>-<time>.
SHORT_NAME = 20
DUMP_TIME = re.compile(r"\d{4}-\d{2}-\d{2}-\d{2}:\d{2}:\d{2}")


def auto_dump_path(qemu_conf: str = QEMU_CONF) -> str:
    try:
        with open(qemu_conf, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return DEFAULT_AUTO_DUMP_PATH
    if "auto_dump_path" not in text:
        return DEFAULT_AUTO_DUMP_PATH
    try:
        value = parse_libvirt_conf(text, qemu_conf).get("auto_dump_path")
    except LibvirtConfError:
        return DEFAULT_AUTO_DUMP_PATH
    return value if isinstance(value, str) and value else DEFAULT_AUTO_DUMP_PATH


def dump_file_prefix(domain_id: int, name: str) -> str:
    """How libvirt's dump of the running domain ``domain_id`` named ``name`` begins."""
    return f"{domain_id}-{name[:SHORT_NAME]}-"


def check_watchdog_dump(ctx: Context, name: str, domain_id: int, started_at: float,
                        directory: str | None = None) -> None:
    """Raise when libvirt dumped this domain (into ``directory``, by default its
    auto_dump_path) for its watchdog since it was started. A dump is this domain's only when
    it carries the running domain's id and short name exactly, followed by libvirt's time
    stamp: another domain sharing the first characters of the name has another id."""
    directory = directory or auto_dump_path()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    prefix = dump_file_prefix(domain_id, name)
    for entry in entries:
        if not entry.name.startswith(prefix) or not DUMP_TIME.fullmatch(
                entry.name[len(prefix):]):
            continue
        try:
            if entry.stat().st_mtime > started_at:
                raise AgentError(f"domain {name}'s watchdog fired (action dump): libvirt "
                                 f"dumped it to {entry.path} and the guest is hung")
        except OSError:
            continue
