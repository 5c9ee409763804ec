"""systemd's own reading of unit files, without a running systemd (these machines have none).

``systemd-analyze verify`` loads units from ``SYSTEMD_UNIT_PATH`` (a trailing ``:`` appends
the system's directories), checks them, builds a start transaction for each named unit (an
ordering cycle fails it) and, at debug log level, dumps each named unit as the manager sees it:
fragment, drop-ins, and every dependency (``After: X``, ``Wants: Y``). That dump is parsed
here, so a test asks systemd, not a parser of ours, what a drop-in does.

The libvirt units are Debian's, of the installed libvirt version, read without installing
anything (installing libvirt-daemon-system would start daemons and rewrite /etc/libvirt under
the tests' libvirtd): Debian 12 ships them all in libvirt-daemon-system; Debian 13 made that an
empty package depending on the packages that now ship them (libvirtd in libvirt-daemon,
virtlogd in libvirt-daemon-log, libvirt-guests and virt-guest-shutdown.target in
libvirt-daemon-common, virtlockd in libvirt-daemon-lock, which libvirt-daemon recommends). So
the units are collected from libvirt-daemon-system and the libvirt-daemon* packages of the
same version it and libvirt-daemon depend on or recommend: from the system where such a
package is installed, else from the package downloaded (``apt-get download``, cached under
build/; ``python -m tests.harness prefetch`` fetches them ahead, for runs without a network).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .common import CLEAN_PATH, DEFAULT_CACHE_DIR, HarnessError

LIBVIRT_UNITS_PACKAGE = "libvirt-daemon-system"
DEB_CACHE = DEFAULT_CACHE_DIR.parent / "debs"


@dataclass
class UnitDump:
    name: str
    fragment: str | None = None
    drop_ins: list[str] = field(default_factory=list)
    deps: dict[str, set[str]] = field(default_factory=dict)  # "After" -> {"x.service", ...}

    def dep(self, kind: str) -> set[str]:
        return self.deps.get(kind, set())


@dataclass(frozen=True)
class Verification:
    returncode: int
    output: str  # everything verify printed (warnings, errors) at the default log level
    units: Mapping[str, UnitDump]


def _run(argv: Sequence[str], env: Mapping[str, str], timeout_s: float = 60.0,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s,
                          env=dict(env), stdin=subprocess.DEVNULL, check=False, cwd=cwd)


def parse_dumps(text: str) -> dict[str, UnitDump]:
    units: dict[str, UnitDump] = {}
    current: UnitDump | None = None
    for line in text.splitlines():
        m = re.match(r"^\t-> Unit (\S+):$", line)
        if m:
            current = units.setdefault(m.group(1), UnitDump(m.group(1)))
            continue
        if current is None:
            continue
        m = re.match(r"^\t\t([A-Za-z -]+): (.*)$", line)
        if not m:
            if not line.startswith("\t\t"):
                current = None
            continue
        key, value = m.group(1), m.group(2)
        if key == "Fragment Path":
            current.fragment = value
        elif key == "DropIn Path":
            current.drop_ins.append(value)
        else:
            dm = re.match(r"^(\S+) \((origin|destination)-", value)
            if dm:
                current.deps.setdefault(key, set()).add(dm.group(1))
    return units


def verify(units: Iterable[str], unit_dirs: Sequence[Path], system_dirs: bool = True
           ) -> Verification:
    """``systemd-analyze verify UNITS`` with ``unit_dirs`` first in the search path (and the
    system's unit directories after them when ``system_dirs``)."""
    tool = shutil.which("systemd-analyze", path=CLEAN_PATH)
    if tool is None:
        raise HarnessError("systemd-analyze is not installed (Debian package systemd)")
    path = ":".join(str(d) for d in unit_dirs) + (":" if system_dirs else "")
    env = {"PATH": CLEAN_PATH, "LANG": "C", "SYSTEMD_UNIT_PATH": path,
           "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
    names = list(units)
    plain = _run([tool, "verify", "--man=no", *names], env)
    debug = _run([tool, "verify", "--man=no", *names], {**env, "SYSTEMD_LOG_LEVEL": "debug"})
    return Verification(plain.returncode, plain.stdout + plain.stderr,
                        parse_dumps(debug.stdout + debug.stderr))


def ordered_after(units: Mapping[str, UnitDump], later: str, earlier: str) -> bool:
    """Whether ``later`` is ordered after ``earlier`` through the After=/Before= edges of the
    dumped units (so at shutdown ``later`` stops before ``earlier``)."""
    after: dict[str, set[str]] = {}
    for dump in units.values():
        after.setdefault(dump.name, set()).update(dump.dep("After"))
        for other in dump.dep("Before"):
            after.setdefault(other, set()).add(dump.name)
    seen: set[str] = set()
    todo = [later]
    while todo:
        unit = todo.pop()
        for dep in after.get(unit, ()):
            if dep == earlier:
                return True
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return False


def installed_version(package: str) -> str:
    r = _run(["dpkg-query", "-W", "-f=${Version}", package], {"PATH": CLEAN_PATH})
    if r.returncode != 0 or not r.stdout:
        raise HarnessError(f"{package} is not installed: {r.stderr.strip()}")
    return r.stdout


def _apt_show_field(package: str, version: str, fld: str) -> str:
    r = _run(["apt-cache", "show", f"{package}={version}"], {"PATH": CLEAN_PATH, "LANG": "C"})
    if r.returncode != 0:
        raise HarnessError(f"apt-cache show {package}={version}: {r.stderr.strip()} (apt-get "
                           "update?)")
    # The first stanza (one per archive the version is in): "Field: value" + continuations.
    m = re.search(rf"^{fld}: (.*(?:\n .*)*)", r.stdout.split("\n\n")[0], re.M)
    return m.group(1).replace("\n", " ") if m else ""


def libvirt_unit_packages(version: str) -> list[str]:
    """libvirt-daemon-system and the libvirt-daemon* packages of ``version`` that it or
    libvirt-daemon depend on or recommend (see the module docstring)."""
    found = [LIBVIRT_UNITS_PACKAGE]
    for parent in (LIBVIRT_UNITS_PACKAGE, "libvirt-daemon"):
        for fld in ("Depends", "Recommends"):
            for alt in _apt_show_field(parent, version, fld).split(","):
                for choice in alt.split("|"):
                    m = re.match(r"^\s*(libvirt-daemon[a-z0-9.+-]*)\s*\(=\s*([^)\s]+)\)", choice)
                    if m and m.group(2) == version and m.group(1) not in found:
                        found.append(m.group(1))
    return found


def _unit_files_of_installed(package: str) -> list[Path]:
    r = _run(["dpkg", "-L", package], {"PATH": CLEAN_PATH, "LANG": "C"})
    return [Path(f) for f in r.stdout.splitlines() if "/systemd/system/" in f
            and Path(f).is_file()]


def _downloaded(package: str, version: str, cache: Path) -> Path:
    pattern = f"{package}_*.deb"
    debs = [d for d in cache.glob(pattern) if _deb_version(d) == version]
    if not debs:
        # apt-get download writes into its working directory.
        r = _run(["apt-get", "download", f"{package}={version}"],
                 {"PATH": CLEAN_PATH, "LANG": "C"}, 300, cwd=cache)
        debs = [d for d in cache.glob(pattern) if _deb_version(d) == version]
        if r.returncode != 0 or not debs:
            raise HarnessError(f"apt-get download {package}={version} failed "
                               f"(rc {r.returncode}): {r.stderr.strip()}")
    return debs[0]


def libvirt_unit_files(dest: Path, cache: Path = DEB_CACHE) -> Path:
    """The systemd units of Debian's libvirt of the installed version (see the module
    docstring), copied into one unit directory below ``dest``; returns it."""
    version = installed_version("libvirt-daemon")
    cache.mkdir(parents=True, exist_ok=True)
    units = dest / "libvirt-units"
    units.mkdir(parents=True, exist_ok=True)
    for package in libvirt_unit_packages(version):
        if _installed_version_or_none(package) == version:
            files = _unit_files_of_installed(package)
        else:
            deb = _downloaded(package, version, cache)
            root = dest / "unpacked" / package
            root.parent.mkdir(parents=True, exist_ok=True)
            r = _run(["dpkg-deb", "-x", str(deb), str(root)], {"PATH": CLEAN_PATH})
            if r.returncode != 0:
                raise HarnessError(f"dpkg-deb -x {deb}: {r.stderr.strip()}")
            files = [p for p in root.rglob("*") if "/systemd/system/" in str(p) and p.is_file()]
        for f in files:
            rel = str(f).split("/systemd/system/", 1)[1]
            (units / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, units / rel)
    if not (units / "libvirtd.service").is_file():
        raise HarnessError(f"no libvirtd.service in {libvirt_unit_packages(version)}")
    return units


def _installed_version_or_none(package: str) -> str | None:
    r = _run(["dpkg-query", "-W", "-f=${Status} ${Version}", package], {"PATH": CLEAN_PATH})
    words = r.stdout.split()
    return words[-1] if r.returncode == 0 and words[:3] == ["install", "ok", "installed"] \
        else None


def _deb_version(deb: Path) -> str:
    r = _run(["dpkg-deb", "-f", str(deb), "Version"], {"PATH": CLEAN_PATH})
    return r.stdout.strip()


def unit_dir_with(dest: Path, drop_ins: Mapping[str, str]) -> Path:
    """A unit directory holding only the given drop-ins ("x.target.d/y.conf" -> text)."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel, text in drop_ins.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return dest
