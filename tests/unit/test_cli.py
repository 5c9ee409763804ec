"""The executable, run as Pacemaker and a person would run it."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "agents" / "PyVirtualDomain"
METADATA = ROOT / "metadata" / "PyVirtualDomain.xml"
DEBIAN_PYTHON = "/usr/bin/python3"
# Debian's python3 without its site directories: neither libvirt nor lxml nor psutil, even
# where python3-libvirt/-lxml/-psutil are installed (the Debian package depends on them).
BARE_PYTHON = [DEBIAN_PYTHON, "-S"]


def run(args: list[str], env: dict[str, str] | None = None,
        python: str | list[str] = sys.executable,
        user: int | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    base.update(env or {})
    kwargs = {}
    if user is not None:
        kwargs = {"user": user, "group": user, "extra_groups": []}
    interpreter = [python] if isinstance(python, str) else python
    return subprocess.run([*interpreter, str(AGENT), *args], env=base, capture_output=True,
                          text=True, timeout=60, **kwargs)


def reasons(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ocf-exit-reason:")]


def test_meta_data_needs_nothing_but_python():
    """meta-data as an unprivileged user, without libvirt, lxml or psutil importable."""
    if not Path(DEBIAN_PYTHON).exists():
        pytest.fail(f"{DEBIAN_PYTHON} missing: this test needs Debian's python3")
    for probe in ("libvirt", "lxml"):
        check = subprocess.run([*BARE_PYTHON, "-c", f"import {probe}"], capture_output=True)
        assert check.returncode != 0, f"{BARE_PYTHON} unexpectedly has {probe}"
    r = run(["meta-data"], python=BARE_PYTHON, user=65534 if os.geteuid() == 0 else None)
    assert r.returncode == 0, r.stderr
    assert r.stdout == METADATA.read_text()


def test_meta_data_does_not_import_libvirt():
    code = (f"import sys; sys.argv=['x','meta-data']; sys.path.insert(0,{str(ROOT/'lib')!r});"
            "import io,contextlib; from pyvirtualdomain.cli import main;"
            "buf=io.StringIO(); main(['meta-data'], {}, out=buf);"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('libvirt','lxml','psutil','threading')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_unknown_action_is_3_with_reason():
    r = run(["frobnicate", "extra", "args"])
    assert r.returncode == 3
    assert reasons(r.stderr) == ["ocf-exit-reason:action 'frobnicate' is not implemented by "
                               "PyVirtualDomain"]


def test_no_action_is_2_and_help_lists_parameters():
    r = run([])
    assert r.returncode == 2 and len(reasons(r.stderr)) == 1
    h = run(["--help"])
    assert h.returncode == 0
    for word in ("config", "hypervisor", "force_stop", "shutdown_mode", "validate-all"):
        assert word in h.stdout


def test_parameters_as_options_and_env(tmp_path):
    cfg = tmp_path / "vm.xml"
    cfg.write_text("<domain type='test'><name>c1</name></domain>")
    for args, env in (
        (["validate-all", "--config", str(cfg), "--hypervisor", "test:///default"], {}),
        (["validate-all", f"--config={cfg}", "-o", "hypervisor=test:///default"], {}),
        (["validate-all"], {"OCF_RESKEY_config": str(cfg),
                            "OCF_RESKEY_hypervisor": "test:///default"}),
    ):
        r = run(args, env)
        assert r.returncode == 0, (args, r.stderr)
        assert reasons(r.stderr) == []


@pytest.mark.parametrize("params,rc,needle", [
    ({"force_stop": "maybe"}, 6, "not a boolean"),
    ({"shutdown_mode": "hibernate"}, 6, "unknown mode"),
    ({"bogus_param": "1"}, 6, "unknown parameter bogus_param"),
    ({"hypervisor": "garbage"}, 6, "not a libvirt URI"),
    ({"hypervisor": "nosuchdriver:///system"}, 6, "names no libvirt driver"),
])
def test_validate_all_bad_parameters(tmp_path, params, rc, needle):
    cfg = tmp_path / "vm.xml"
    cfg.write_text("<domain type='test'><name>c1</name></domain>")
    env = {"OCF_RESKEY_config": str(cfg)}
    env.update({f"OCF_RESKEY_{k}": v for k, v in params.items()})
    r = run(["validate-all"], env)
    assert r.returncode == rc
    (line,) = reasons(r.stderr)
    assert needle in line


def test_validate_all_missing_emulator_is_not_installed(tmp_path):
    cfg = tmp_path / "vm.xml"
    cfg.write_text("<domain type='kvm'><name>c1</name><devices>"
                   "<emulator>/nonexistent/qemu</emulator></devices></domain>")
    r = run(["validate-all", "--config", str(cfg)])
    assert r.returncode == 5 and "/nonexistent/qemu" in reasons(r.stderr)[0]


def test_probe_without_libvirt_installed_is_not_running(tmp_path):
    cfg = tmp_path / "vm.xml"
    cfg.write_text("<domain type='kvm'><name>c1</name></domain>")
    r = run(["monitor", "--config", str(cfg)], {"HA_RSCTMP": str(tmp_path)},
            python=BARE_PYTHON)
    assert r.returncode == 7, r.stderr
    r = run(["start", "--config", str(cfg)], {"HA_RSCTMP": str(tmp_path)},
            python=BARE_PYTHON)
    assert r.returncode == 5, r.stderr


def test_logs_are_tagged_with_the_instance(tmp_path):
    r = run(["monitor", "--config", str(tmp_path / "absent.xml")],
            {"OCF_RESOURCE_INSTANCE": "vm-42", "HA_RSCTMP": str(tmp_path)})
    assert r.returncode == 7
    assert any(line.startswith("PyVirtualDomain(vm-42)[") for line in r.stderr.splitlines())


def _run_on_pty(args: list[str]) -> tuple[int, str]:
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, str(AGENT), *args], stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, env={"PATH": "/usr/bin:/bin"})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=30), b"".join(chunks).decode()


def test_terminal_shows_result_name_and_log_only_with_v(tmp_path):
    args = ["monitor", "--config", str(tmp_path / "absent.xml")]
    rc, text = _run_on_pty(args)
    assert rc == 7
    assert "NOT_RUNNING (rc=7)" in text and "INFO:" not in text
    rc, text = _run_on_pty([*args, "-v"])
    assert rc == 7 and "INFO:" in text and "NOT_RUNNING (rc=7)" in text


LXC_AGENT = ROOT / "agents" / "PyLXCDomain"


def run_lxc(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(LXC_AGENT), *args],
                          env={"PATH": "/usr/bin:/bin", **(env or {})}, capture_output=True,
                          text=True, timeout=60)


def test_lxc_meta_data_has_no_migration():
    r = run_lxc(["meta-data"])
    assert r.returncode == 0
    assert r.stdout == (ROOT / "metadata" / "PyLXCDomain.xml").read_text()
    assert "migrate_to" not in r.stdout and "migrate_from" not in r.stdout
    assert 'name="container"' not in r.stdout  # Pacemaker reserves that meta attribute


def test_lxc_validate_rejects_non_lxc_domain(tmp_path):
    cfg = tmp_path / "vm.xml"
    cfg.write_text("<domain type='kvm'><name>v</name></domain>")
    r = run_lxc(["validate-all", "--config", str(cfg)])
    assert r.returncode == 6
    assert "domain type 'kvm' is not handled by PyLXCDomain" in reasons(r.stderr)[0]


def test_lxc_rejects_vm_only_shutdown_modes(tmp_path):
    cfg = tmp_path / "ct.xml"
    cfg.write_text("<domain type='lxc'><name>c</name></domain>")
    r = run_lxc(["validate-all", "--config", str(cfg), "--shutdown_mode", "acpi"])
    assert r.returncode == 6 and "use one or more of initctl, signal" in reasons(r.stderr)[0]
    ok = run_lxc(["validate-all", "--config", str(cfg), "--shutdown_mode", "signal"])
    assert ok.returncode == 0, ok.stderr


def test_lxc_has_no_migration_actions(tmp_path):
    cfg = tmp_path / "ct.xml"
    cfg.write_text("<domain type='lxc'><name>c</name></domain>")
    for action in ("migrate_to", "migrate_from"):
        r = run_lxc([action, "--config", str(cfg)])
        assert r.returncode == 3, r.stderr


def test_migrate_to_without_target_is_an_argument_error(tmp_path):
    cfg = tmp_path / "vm.xml"
    cfg.write_text("<domain type='test'><name>m</name></domain>")
    r = run(["migrate_to", "--config", str(cfg), "--hypervisor", "test:///default"],
            {"HA_RSCTMP": str(tmp_path)})
    assert r.returncode == 2 and "migrate_target" in reasons(r.stderr)[0]


def test_recurring_monitor_parses_no_xml_and_loads_no_fallbacks(tmp_path):
    """Issue 8: a recurring monitor of a running domain with an unchanged config imports
    neither an XML parser (the metadata comes compiled, the config from the state record)
    nor psutil (only the no-libvirt fallback needs it), and runs no subprocess."""
    cfg = tmp_path / "vm.xml"
    cfg.write_text("<domain type='test'><name>test</name></domain>")
    env = {"OCF_RESKEY_config": str(cfg), "OCF_RESKEY_hypervisor": "test:///default",
           "HA_RSCTMP": str(tmp_path), "OCF_RESOURCE_INSTANCE": "vm1",
           "OCF_RESKEY_CRM_meta_timeout": "20000"}
    r = run(["start"], env)
    assert r.returncode == 0, r.stderr
    assert list(tmp_path.glob("*.state")), "start wrote no state record"
    code = (f"import sys, os; sys.path.insert(0,{str(ROOT/'lib')!r});"
            "from pyvirtualdomain.cli import main;"
            "rc = main(['monitor'], os.environ);"
            "print(rc, sorted(m for m in sys.modules if m.split('.')[0] in "
            "('xml','lxml','psutil','subprocess','pyexpat')))")
    env.update(PATH="/usr/sbin:/usr/bin:/sbin:/bin", OCF_RESKEY_CRM_meta_interval="10000")
    m = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert m.stdout.strip() == "0 []", m.stderr

    # Under Pacemaker (here a CIB file) with the default utilization parameters: the first
    # monitor writes the attributes through crm_resource; the next, nothing having changed,
    # runs no subprocess at all.
    cib = tmp_path / "cib.xml"
    cib_env = {"CIB_file": str(cib), "PATH": env["PATH"]}
    cib.write_text(subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True,
                                  check=True, env=cib_env).stdout)
    subprocess.run(["cibadmin", "-C", "-o", "resources", "-X",
                    '<primitive id="vm1" class="ocf" provider="custom" type="PyVirtualDomain"/>'],
                   check=True, env=cib_env, capture_output=True)
    env.update(cib_env)
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True)
    assert first.stdout.strip() == "0 ['subprocess']", first.stderr
    assert 'name="cpu"' in cib.read_text()
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True)
    assert again.stdout.strip() == "0 []", again.stderr
