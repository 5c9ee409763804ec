"""Pacemaker's own tools against the installed agent: ocf-tester and crm_resource --validate,
and the agent run as an unprivileged user."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import GuestResource, Libvirtd
from tests.harness.common import CLEAN_PATH, REPO_ROOT, VENV_PYTHON

pytestmark = pytest.mark.integration

OCF_DIR = Path("/usr/lib/ocf/resource.d/custom")
AGENTS = ("PyVirtualDomain", "PyLXCDomain")


@pytest.fixture(scope="module")
def installed_agents() -> Iterator[Path]:
    """`make install-agents` into the real OCF directory (Pacemaker's tools look nowhere
    else); what was there before is put back afterwards."""
    before = {a: (OCF_DIR / a).read_bytes() for a in AGENTS if (OCF_DIR / a).exists()}
    dir_existed = OCF_DIR.exists()
    r = subprocess.run(["make", "-s", "install-agents"], cwd=REPO_ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (OCF_DIR / "PyVirtualDomain").read_text().startswith(f"#!{VENV_PYTHON}\n")
    yield OCF_DIR / "PyVirtualDomain"
    for a in AGENTS:
        if a in before:
            (OCF_DIR / a).write_bytes(before[a])
        else:
            (OCF_DIR / a).unlink(missing_ok=True)
    if not dir_existed:
        shutil.rmtree(OCF_DIR, ignore_errors=True)


def test_ocf_tester_passes_on_a_real_guest(installed_agents: Path, guest: GuestResource) -> None:
    assert shutil.which("ocf-tester"), "ocf-tester missing: make deps installs resource-agents"
    r = subprocess.run(["ocf-tester", "-n", "pyvd-ocf-tester", "-o", f"config={guest.config}",
                        "-o", "hypervisor=qemu:///system", str(installed_agents)],
                       capture_output=True, text=True, timeout=300,
                       env={"PATH": CLEAN_PATH})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "passed all tests" in r.stdout
    # It started and stopped the guest for real, and left nothing behind.
    assert "HARNESS-INIT-MARKER" in guest.console()
    assert guest.state() is None


def _crm_validate(config: Path | str, *options: str) -> subprocess.CompletedProcess[str]:
    args = ["crm_resource", "--validate", "--class", "ocf", "--provider", "custom",
            "--agent", "PyVirtualDomain", "--option", f"config={config}"]
    for opt in options:
        args += ["--option", opt]
    return subprocess.run(args, capture_output=True, text=True, timeout=60,
                          env={"PATH": CLEAN_PATH})


def test_crm_resource_validate(installed_agents: Path, guest: GuestResource,
                               tmp_path: Path) -> None:
    assert shutil.which("crm_resource"), "crm_resource missing: make deps installs it"
    ok = _crm_validate(guest.config, "hypervisor=qemu:///system")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    missing = _crm_validate(tmp_path / "absent.xml")
    assert missing.returncode == 5, missing.stdout + missing.stderr
    assert "does not exist on this node" in missing.stdout + missing.stderr
    bad = tmp_path / "bad.xml"
    bad.write_text("<domain type='qemu'><name>x</name>")
    malformed = _crm_validate(bad)
    assert malformed.returncode == 6 and "not well-formed" in malformed.stdout + malformed.stderr
    # Issue 21 #6: a boolean VirtualDomain would take as false is false here too (a warning).
    loose = _crm_validate(guest.config, "force_stop=perhaps")
    assert loose.returncode == 0 and "force_stop='perhaps' is taken as false" in \
        loose.stdout + loose.stderr, loose.stdout + loose.stderr
    wrong_type = _crm_validate(guest.config, "migration_speed=fast")
    assert wrong_type.returncode == 6 and "migration_speed" in wrong_type.stdout + \
        wrong_type.stderr, wrong_type.stdout + wrong_type.stderr


def test_unprivileged_monitor_is_a_permission_error(libvirtd: Libvirtd, guest: GuestResource,
                                                    tmp_path: Path) -> None:
    assert guest.run("start", timeout_ms=30000).rc == 0
    # A copy of the config that user nobody can read (pytest's tmp tree is root-only).
    import tempfile

    public = Path(tempfile.mkdtemp(prefix="pyvd-nobody-"))
    public.chmod(0o755)
    config = public / "vm.xml"
    shutil.copy(guest.config, config)
    config.chmod(0o644)
    r = subprocess.run([str(VENV_PYTHON), str(REPO_ROOT / "agents" / "PyVirtualDomain"),
                        "monitor"], capture_output=True, text=True, timeout=60, user=65534,
                       group=65534, extra_groups=[],
                       env={"PATH": CLEAN_PATH, "OCF_RESKEY_config": str(config),
                            "OCF_RESKEY_hypervisor": "qemu:///system",
                            "OCF_RESKEY_CRM_meta_interval": "10000",
                            "HA_RSCTMP": str(public / "state")})
    shutil.rmtree(public)
    assert r.returncode == 4, r.stderr
    assert "ocf-exit-reason:cannot connect to qemu:///system" in r.stderr
    # meta-data works for the same user
    md = subprocess.run([str(VENV_PYTHON), str(REPO_ROOT / "agents" / "PyVirtualDomain"),
                         "meta-data"], capture_output=True, text=True, timeout=60, user=65534,
                        group=65534, extra_groups=[], env={"PATH": CLEAN_PATH})
    assert md.returncode == 0 and "<resource-agent" in md.stdout
    assert guest.state() == "running"
