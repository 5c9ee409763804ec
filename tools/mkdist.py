"""Write the source tarball the packages are built from: build/dist/pyvirtualdomain-VERSION.tar.gz.

It holds the work tree's files that git tracks or would track (so uncommitted work is
packaged too; ignored files never are) under pyvirtualdomain-VERSION/, plus two files made
from the one version setup.cfg defines (tools/version.py):

- debian/changelog, which dpkg-buildpackage takes the .deb's version from;
- pyvirtualdomain.spec, from rpm/pyvirtualdomain.spec.in, so that `rpmbuild -tb` works on
  the tarball as it is (here with --nodeps, on an RPM platform as usual).

Reproducible: sorted entries, root ownership, and every time stamp (also the changelog's)
from SOURCE_DATE_EPOCH, else from the last commit. Standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import email.utils
import gzip
import io
import os
import subprocess
import sys
import tarfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
sys.path.insert(0, os.path.join(ROOT, "tools"))

from version import project_version  # noqa: E402

NAME = "pyvirtualdomain"
SPEC_TEMPLATE = "rpm/pyvirtualdomain.spec.in"


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", ROOT, *args], check=True, capture_output=True,
                          text=True).stdout


def tree_files() -> list[str]:
    listed = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    return sorted({f for f in listed if f and os.path.isfile(os.path.join(ROOT, f))})


def describe_commit() -> str:
    commit = _git("rev-parse", "--short=12", "HEAD").strip()
    dirty = _git("status", "--porcelain", "--untracked-files=no").strip()
    return f"git commit {commit}" + (" with local changes" if dirty else "")


def source_date_epoch() -> int:
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    return int(_git("log", "-1", "--format=%ct").strip())


def maintainer() -> str:
    with open(os.path.join(ROOT, "debian", "control"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("Maintainer:"):
                return line.split(":", 1)[1].strip()
    raise SystemExit("debian/control names no Maintainer")


def debian_changelog(version: str, epoch: int, origin: str) -> str:
    date = email.utils.format_datetime(
        datetime.datetime.fromtimestamp(epoch, datetime.UTC))
    return (f"{NAME} ({version}) unstable; urgency=medium\n\n"
            f"  * Version {version}, built from {origin}.\n\n"
            f" -- {maintainer()}  {date}\n")


def rpm_spec(version: str, epoch: int, origin: str) -> str:
    import time

    with open(os.path.join(ROOT, SPEC_TEMPLATE), encoding="utf-8") as f:
        text = f.read()
    day = time.strftime("%a %b %d %Y", time.gmtime(epoch))
    return (text.replace("@VERSION@", version)
            .replace("@CHANGELOG@",
                     f"* {day} {maintainer()} - {version}-1\n- Version {version}, built from "
                     f"{origin}."))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--outdir", default=os.path.join(ROOT, "build", "dist"))
    args = ap.parse_args(argv)
    version = project_version()
    epoch = source_date_epoch()
    origin = describe_commit()
    prefix = f"{NAME}-{version}"
    generated = {"debian/changelog": debian_changelog(version, epoch, origin),
                 f"{NAME}.spec": rpm_spec(version, epoch, origin)}

    def info(name: str, size: int, mode: int) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(f"{prefix}/{name}")
        ti.size, ti.mode, ti.mtime = size, mode, epoch
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        return ti

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(set(tree_files()) | set(generated)):
            if name in generated:
                data = generated[name].encode("utf-8")
                tar.addfile(info(name, len(data), 0o644), io.BytesIO(data))
                continue
            path = os.path.join(ROOT, name)
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            with open(path, "rb") as f:
                data = f.read()
            tar.addfile(info(name, len(data), mode), io.BytesIO(data))
    os.makedirs(args.outdir, exist_ok=True)
    target = os.path.join(args.outdir, f"{prefix}.tar.gz")
    with open(target + ".tmp", "wb") as out:
        with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=epoch) as gz:
            gz.write(raw.getvalue())
    os.replace(target + ".tmp", target)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
