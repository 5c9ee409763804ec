"""`make install` without a package (README: Installing): into an environment whose python
has the dependencies (here a venv over Debian's python3 with its python3-libvirt/-lxml/-psutil),
the agents into the OCF directory naming that interpreter, the man pages below /usr/local where
man finds them, the systemd drop-in below /usr/local where systemd finds it; `make uninstall`
takes it all away again. Runs under the machine-wide harness lock (it writes the same system
paths the other tests and the package use) and leaves every path as it found it."""

from __future__ import annotations

import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.common import CLEAN_PATH, REPO_ROOT, HostLock

pytestmark = pytest.mark.integration

AGENTS = ("PyVirtualDomain", "PyLXCDomain")
OCF_DIR = Path("/usr/lib/ocf/resource.d/custom")
MAN7 = Path("/usr/local/share/man/man7")
MAN8 = Path("/usr/local/share/man/man8")
UNIT_DIR = Path("/usr/local/lib/systemd/system")
DROP_IN = UNIT_DIR / "resource-agents-deps.target.d" / "50-pyvirtualdomain.conf"
FILES = [*(OCF_DIR / a for a in AGENTS), *(MAN7 / f"ocf_custom_{a}.7" for a in AGENTS), DROP_IN,
         MAN8 / "pyvd-switch-agent.8"]
# Directories make install may create, deepest first (removed again if it did).
DIRS = [DROP_IN.parent, UNIT_DIR, UNIT_DIR.parent, MAN7, MAN8, OCF_DIR]


def _run(argv: list[str], env: dict[str, str] | None = None, timeout_s: float = 300.0,
         cwd: Path | str = "/") -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, cwd=cwd,
                          env=env if env is not None else {"PATH": CLEAN_PATH, "LANG": "C"},
                          stdin=subprocess.DEVNULL, check=False)


@pytest.fixture(scope="module")
def system_paths() -> Iterator[None]:
    """The lock, and every path make install writes put back as it was afterwards."""
    lock = HostLock()
    lock.acquire()
    saved = {p: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in FILES if p.is_file()}
    existed = {d for d in DIRS if d.exists()}
    try:
        yield
    finally:
        try:
            for p in FILES:
                p.unlink(missing_ok=True)
            for d in DIRS:
                if d not in existed and d.is_dir() and not any(d.iterdir()):
                    d.rmdir()
            for p, (data, mode) in saved.items():
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
                p.chmod(mode)
        finally:
            lock.release()


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv over Debian's python3 that sees its python3-libvirt, -lxml and -psutil."""
    path = tmp_path_factory.mktemp("install") / "venv"
    r = _run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(path)])
    assert r.returncode == 0, r.stderr
    return path / "bin" / "python"


def test_make_install_and_uninstall(system_paths: None, venv: Path) -> None:
    make = ["make", "-s", f"PYTHON={venv}"]
    env = {"PATH": CLEAN_PATH, "LANG": "C", "HOME": "/root"}
    r = _run([*make, "install"], env=env, cwd=REPO_ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    for agent in AGENTS:
        assert (OCF_DIR / agent).read_text().split("\n", 1)[0] == f"#!{venv}"
        # The agent runs from the installed package (not the checkout: it is not beside it).
        md = _run([str(OCF_DIR / agent), "meta-data"], env={})
        assert md.returncode == 0, md.stderr
        assert md.stdout == (REPO_ROOT / "metadata" / f"{agent}.xml").read_text()
        where = _run(["man", "-w", f"ocf_custom_{agent}"])  # /usr/local/man is a symlink
        assert Path(where.stdout.strip()).resolve() == MAN7 / f"ocf_custom_{agent}.7", \
            where.stdout + where.stderr
        page = _run(["man", "--warnings", f"ocf_custom_{agent}"],
                    env={"PATH": CLEAN_PATH, "LC_ALL": "C.UTF-8", "MANWIDTH": "80"})
        assert page.returncode == 0 and page.stderr == "", page.stderr
        # The page names the drop-in where make install put it.
        assert str(DROP_IN) in page.stdout.replace("\n", "").replace(" ", "")
    assert DROP_IN.read_text() == (REPO_ROOT / "systemd" / "50-pyvirtualdomain.conf").read_text()
    # the switch tool's page (lintian: no-manual-page until 2026-12-05)
    page = _run(["man", "--warnings", "pyvd-switch-agent"],
                env={"PATH": CLEAN_PATH, "LC_ALL": "C.UTF-8", "MANWIDTH": "80"})
    assert page.returncode == 0 and page.stderr == "", page.stderr
    text = " ".join(page.stdout.split())
    assert "pyvd-switch-agent - switch a running Pacemaker resource" in text, page.stdout
    origin = _run([str(venv), "-c", "import pyvirtualdomain; print(pyvirtualdomain.__file__)"])
    assert origin.stdout.startswith(str(venv.parent.parent) + "/lib/"), origin.stdout

    r = _run([*make, "uninstall"], env=env, cwd=REPO_ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [p for p in FILES if p.exists()] == []
    assert _run(["man", "-w", "ocf_custom_PyVirtualDomain"]).returncode != 0
    gone = _run([str(venv), "-c", "import pyvirtualdomain"])
    assert gone.returncode != 0
    shutil.rmtree(venv.parent.parent)
