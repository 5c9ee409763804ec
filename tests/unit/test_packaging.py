"""Packaging files that need no build to check: one version everywhere, the dependencies the
Debian package and the RPM declare, and the source tarball both are built from."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from version import project_version  # noqa: E402

RUNTIME = ("python3-libvirt", "python3-lxml", "python3-psutil")


def _control_field(text: str, package: str, field: str) -> list[str]:
    stanza = text.split(f"\nPackage: {package}\n", 1)[1].split("\n\n", 1)[0]
    m = re.search(rf"^{field}:(.*(?:\n .*)*)", stanza, re.M)
    assert m, field
    return [re.sub(r"\s*\(.*\)", "", d).strip() for d in m.group(1).split(",") if d.strip()]


def test_one_version() -> None:
    import pyvirtualdomain

    version = project_version()
    assert version == pyvirtualdomain.__version__
    for agent in ("PyVirtualDomain", "PyLXCDomain"):
        root = ET.parse(ROOT / "metadata" / f"{agent}.xml").getroot()
        assert root.get("version") == version, f"metadata/{agent}.xml says {root.get('version')}"


def test_debian_control_dependencies() -> None:
    control = (ROOT / "debian" / "control").read_text()
    depends = _control_field(control, "pyvirtualdomain", "Depends")
    for dep in RUNTIME:
        assert dep in depends
    assert _control_field(control, "pyvirtualdomain", "Recommends") == ["resource-agents"]
    assert _control_field(control, "pyvirtualdomain", "Architecture") == ["all"]


def test_rpm_spec_dependencies() -> None:
    spec = (ROOT / "rpm" / "pyvirtualdomain.spec.in").read_text()
    requires = re.findall(r"^Requires:\s*(\S+)", spec, re.M)
    for dep in RUNTIME:
        assert dep in requires
    assert re.search(r"^BuildArch:\s*noarch$", spec, re.M)
    assert re.search(r"^Version:\s*@VERSION@$", spec, re.M)


def _mkdist(outdir: Path) -> Path:
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "mkdist.py"), "--outdir",
                        str(outdir)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return Path(r.stdout.strip())


def test_source_tarball(tmp_path: Path) -> None:
    version = project_version()
    first = _mkdist(tmp_path / "a")
    assert first.name == f"pyvirtualdomain-{version}.tar.gz"
    # Reproducible: the same tree gives the same bytes.
    assert _mkdist(tmp_path / "b").read_bytes() == first.read_bytes()
    prefix = f"pyvirtualdomain-{version}/"
    with tarfile.open(first) as tar:
        names = tar.getnames()
        assert all(n.startswith(prefix) for n in names)
        rel = {n[len(prefix):] for n in names}
        changelog = tar.extractfile(prefix + "debian/changelog")
        spec = tar.extractfile(prefix + "pyvirtualdomain.spec")
        assert changelog is not None and spec is not None
        changelog_text = changelog.read().decode()
        spec_text = spec.read().decode()
    for needed in ("setup.cfg", "pyproject.toml", "Makefile", "debian/rules", "debian/control",
                   "lib/pyvirtualdomain/cli.py", "agents/PyVirtualDomain",
                   "metadata/PyLXCDomain.xml", "systemd/50-pyvirtualdomain.conf",
                   "tools/gen_manpages.py"):
        assert needed in rel, needed
    # Nothing git ignores (the venv, build output, caches).
    assert not any(r.startswith((".venv/", "build/")) or "__pycache__" in r for r in rel)
    assert changelog_text.startswith(f"pyvirtualdomain ({version}) unstable; urgency=medium\n")
    assert re.search(r"^ -- .+ <.+>  \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0000$",
                     changelog_text, re.M), changelog_text
    assert re.search(rf"^Version:\s*{re.escape(version)}$", spec_text, re.M)
    assert "@" + "VERSION@" not in spec_text and "@" + "CHANGELOG@" not in spec_text
