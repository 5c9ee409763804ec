"""Hand control of the harness daemons: ``python -m tests.harness libvirtd start|stop|status``
(from the repository root). stop ends only daemons recorded in the harness's pidfiles."""

from __future__ import annotations

import sys

from .libvirtd import Libvirtd

USAGE = "usage: python -m tests.harness libvirtd start|stop|status"


def main(argv: list[str]) -> int:
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
