"""Hand control of the harness daemons: ``python -m tests.harness libvirtd start|stop|status``
(from the repository root). stop ends only daemons recorded in the harness's pidfiles.

``python -m tests.harness prefetch`` downloads (into build/, once) what some tests take from the
Debian archive at run time: the pacemaker-remote package of the installed Pacemaker and the
libvirt packages holding its systemd units. ``make check-trixie`` runs it while the Debian 13
root still has a network; its tests then run in a network namespace of their own."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from .libvirtd import Libvirtd

USAGE = "usage: python -m tests.harness libvirtd start|stop|status | prefetch"


def prefetch() -> None:
    from .cluster import pacemaker_remoted
    from .systemd_units import libvirt_unit_files

    print(f"pacemaker-remoted: {pacemaker_remoted()}")
    with tempfile.TemporaryDirectory() as tmp:
        units = libvirt_unit_files(Path(tmp))
        print(f"libvirt units: {len(list(units.rglob('*.*')))} files")


def main(argv: list[str]) -> int:
    if argv == ["prefetch"]:
        prefetch()
        return 0
    if len(argv) != 2 or argv[0] != "libvirtd" or argv[1] not in ("start", "stop", "status"):
        print(USAGE, file=sys.stderr)
        return 2
    daemon = Libvirtd()
    daemon.adopt()
    if argv[1] == "start":
        daemon.start()
    elif argv[1] == "stop":
        daemon.stop()
    print(f"libvirtd pid {daemon.pid}, virtlogd pid {daemon.virtlogd_pid}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
