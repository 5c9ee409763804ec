"""A watchdog that fired. With action pause, libvirt shows it in the domain's state (paused
by its watchdog: actions/monitor.py). With action dump, libvirt writes a core dump to its
auto_dump_path and lets the guest run on, hung: the dump file, newer than the start, is the
only trace a monitor can find. With action none nothing is left at all: validate-all says so
(the guest agent check at OCF_CHECK_LEVEL=20 catches the hung guest)."""

from __future__ import annotations

import os

from ..core.context import Context
from ..errors import AgentError
from ..uri import LibvirtConfError, parse_libvirt_conf

QEMU_CONF = "/etc/libvirt/qemu.conf"
DEFAULT_AUTO_DUMP_PATH = "/var/lib/libvirt/qemu/dump"
# libvirt names a dump <id>-<the first 20 characters of the name>-<time>.
SHORT_NAME = 20


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


def check_watchdog_dump(ctx: Context, name: str, started_at: float,
                        directory: str | None = None) -> None:
    """Raise when libvirt dumped the domain (into ``directory``, by default its
    auto_dump_path) for its watchdog since it was started."""
    directory = directory or auto_dump_path()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    marker = f"-{name[:SHORT_NAME]}-"
    for entry in entries:
        head, sep, _ = entry.name.partition(marker)
        if not sep or not head.isdigit():
            continue
        try:
            if entry.stat().st_mtime > started_at:
                raise AgentError(f"domain {name}'s watchdog fired (action dump): libvirt "
                                 f"dumped it to {entry.path} and the guest is hung")
        except OSError:
            continue
