"""Install a wheel into a package build root with explicit paths (the RPM spec's %install).

    python3 tools/install_wheel.py --destdir BUILDROOT --prefix /usr \
        --sitelib /usr/lib/python3.12/site-packages dist/pyvirtualdomain-*.whl

``python -m installer`` takes its paths from the interpreter's default install scheme, which
differs between distributions (Debian's puts a /usr prefix under /usr/local); the spec names
the RPM platform's python3_sitelib instead, so the package lands where that platform's python3
looks, and the data files (the metadata) in PREFIX/share/pyvirtualdomain, where the package
looks for them. No byte-compilation: the RPM platform's build root policy does it.
"""

from __future__ import annotations

import argparse
import os
import sys

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--destdir", required=True)
    ap.add_argument("--prefix", default="/usr")
    ap.add_argument("--sitelib", required=True)
    ap.add_argument("--interpreter", default="/usr/bin/python3")
    ap.add_argument("wheel")
    args = ap.parse_args(argv)
    scheme = {
        "purelib": args.sitelib,
        "platlib": args.sitelib,
        "headers": os.path.join(args.prefix, "include"),
        "scripts": os.path.join(args.prefix, "bin"),
        "data": args.prefix,
    }
    destination = SchemeDictionaryDestination(
        {k: os.path.join(args.destdir, v.lstrip("/")) for k, v in scheme.items()},
        interpreter=args.interpreter, script_kind="posix", bytecode_optimization_levels=())
    with WheelFile.open(args.wheel) as source:
        install(source, destination, {"INSTALLER": b"rpm\n"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
