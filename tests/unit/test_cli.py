"""The executable, run as Pacemaker and a person would run it."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "agents" / "PyVirtualDomain"
METADATA = ROOT / "metadata" / "PyVirtualDomain.xml"
DEBIAN_PYTHON = "/usr/bin/python3"
# Debian's interpreter with no site directories: the standard library only, whatever
# python3-libvirt/-lxml/-psutil the machine has installed.
STDLIB_ONLY = [DEBIAN_PYTHON, "-I", "-S"]


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
    """meta-data as an unprivileged user, with neither libvirt, lxml nor psutil importable."""
    if not Path(DEBIAN_PYTHON).exists():
        pytest.fail(f"{DEBIAN_PYTHON} missing: this test needs Debian's python3")
    for probe in ("libvirt", "lxml", "psutil"):
        check = subprocess.run([*STDLIB_ONLY, "-c", f"import {probe}"], capture_output=True)
        assert check.returncode != 0, f"{STDLIB_ONLY} unexpectedly imports {probe}"
    kwargs = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}
    r = subprocess.run([*STDLIB_ONLY, str(AGENT), "meta-data"], env={"PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, timeout=60, **kwargs)
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
    ({"migrate_options": "--dname x"}, 6, "--dname is not accepted"),
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
            python=STDLIB_ONLY)
    assert r.returncode == 7, r.stderr
    r = run(["start", "--config", str(cfg)], {"HA_RSCTMP": str(tmp_path)},
            python=STDLIB_ONLY)
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


# What a recurring monitor of a running domain never imports: an XML parser (the metadata
# comes compiled, the config from the state record), psutil (only the no-libvirt fallback
# needs it), a subprocess (unless a utilization value changed), and what the migration or
# start-only code would drag in.
MONITOR_FORBIDDEN = ("xml", "lxml", "pyexpat", "psutil", "subprocess", "json", "dataclasses",
                     "inspect", "threading", "shlex", "urllib", "tempfile")
# ... nor the package's modules for recording, the no-libvirt fallback and failures.
MONITOR_FORBIDDEN_OWN = ("pyvirtualdomain.core.recording", "pyvirtualdomain.core.last_resort",
                         "pyvirtualdomain.core.outcomes", "pyvirtualdomain.virt.procs")
# Parameters most resources carry: migration settings and utilization switches.
EVERYDAY_PARAMETERS = {
    "OCF_RESKEY_migration_transport": "ssh", "OCF_RESKEY_migrateuri": "tcp://%n-mig:49152",
    "OCF_RESKEY_migrate_options": "--compressed --auto-converge",
    "OCF_RESKEY_migration_downtime": "500", "OCF_RESKEY_autoset_utilization_cpu": "true",
    "OCF_RESKEY_unset_utilization_hv_memory": "true",
}


def test_recurring_monitor_parses_no_xml_and_loads_no_fallbacks(tmp_path):
    """Issues 8 and 12: a recurring monitor of a running domain with an unchanged config, with
    the migration and utilization parameters most resources have, imports none of
    MONITOR_FORBIDDEN and runs no subprocess."""
    cfg = tmp_path / "vm.xml"
    cfg.write_text("<domain type='test'><name>test</name></domain>")
    env = {"OCF_RESKEY_config": str(cfg), "OCF_RESKEY_hypervisor": "test:///default",
           "HA_RSCTMP": str(tmp_path), "OCF_RESOURCE_INSTANCE": "vm1",
           "OCF_RESKEY_CRM_meta_timeout": "20000", **EVERYDAY_PARAMETERS}
    r = run(["start"], env)
    assert r.returncode == 0, r.stderr
    assert list(tmp_path.glob("*.state")), "start wrote no state record"
    code = (f"import sys, os; sys.path.insert(0,{str(ROOT/'lib')!r});"
            "from pyvirtualdomain.cli import main;"
            "rc = main(['monitor'], os.environ);"
            "print(rc, sorted(m for m in sys.modules if m.split('.')[0] in "
            f"{MONITOR_FORBIDDEN!r} or m in {MONITOR_FORBIDDEN_OWN!r}))")
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
    # (crm_resource runs through subprocess, which loads threading; the cache is rewritten
    # through a temp file)
    assert first.stdout.strip() == "0 ['subprocess', 'tempfile', 'threading']", first.stderr
    assert 'name="cpu"' in cib.read_text()
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True)
    assert again.stdout.strip() == "0 []", again.stderr


def test_after_a_migration_stop_and_probes_load_neither_lxml_nor_psutil(tmp_path):
    """The source's stop after a migration, and a probe where the domain is not, have no
    state record to read the domain from: its identity comes from the config, read with
    expat (lxml's import alone cost such a stop more CPU than the rest of its work)."""
    cfg = tmp_path / "vm.xml"
    cfg.write_text("<domain type='test'><name>gone</name>"
                   "<uuid>6b3f0c39-1c1e-4c1b-9a3e-2f0d6a1b7c11</uuid></domain>")
    env = {"OCF_RESKEY_config": str(cfg), "OCF_RESKEY_hypervisor": "test:///default",
           "HA_RSCTMP": str(tmp_path), "OCF_RESOURCE_INSTANCE": "vm1",
           "OCF_RESKEY_CRM_meta_timeout": "20000", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for action, rc in (("stop", 0), ("monitor", 7)):
        code = (f"import sys, os; sys.path.insert(0,{str(ROOT/'lib')!r});"
                "from pyvirtualdomain.cli import main;"
                f"rc = main([{action!r}], os.environ);"
                "print(rc, sorted(m for m in sys.modules if m.split('.')[0] in "
                "('lxml', 'psutil')))")
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True)
        assert r.stdout.strip() == f"{rc} []", (action, r.stdout, r.stderr)


def _test_vm(tmp_path: Path, name: str) -> dict[str, str]:
    cfg = tmp_path / f"{name}.xml"
    cfg.write_text(f"<domain type='test'><name>{name}</name><memory>8192</memory>"
                   "<os><type>hvm</type></os></domain>")
    return {"OCF_RESKEY_config": str(cfg), "OCF_RESKEY_hypervisor": "test:///default",
            "HA_RSCTMP": str(tmp_path / "state"), "OCF_RESOURCE_INSTANCE": name,
            "OCF_RESOURCE_TYPE": "PyVirtualDomain"}


def test_trace_ra_writes_the_actions_debug_log_to_a_trace_file(tmp_path):
    """Issue 13 #9: crm_resource --trace / pcs trace_ra=1 set trace_ra (and maybe
    trace_file, trace_dir); start answered 6 (fatal cluster-wide). As resource-agents does:
    the action runs and its debug log goes to $HA_VARLIB/trace_ra/<type>/<instance>.<action>
    .<timestamp>, or trace_dir/<type>/..., or trace_file."""
    env = {**_test_vm(tmp_path, "t1"), "OCF_RESKEY_trace_ra": "1",
           "HA_VARLIB": str(tmp_path / "varlib")}
    r = run(["start"], env)
    assert r.returncode == 0, r.stderr
    (trace,) = (tmp_path / "varlib" / "trace_ra" / "PyVirtualDomain").glob("t1.start.*")
    assert re.fullmatch(r"t1\.start\.\d{4}-\d\d-\d\d\.\d\d:\d\d:\d\d", trace.name)
    text = trace.read_text()
    assert "DEBUG:" in text and "OCF_RESKEY_trace_ra=1" in text
    # trace_dir and trace_file move it
    r = run(["monitor"], {**env, "OCF_RESKEY_trace_dir": str(tmp_path / "tdir")})
    assert r.returncode == 7, r.stderr  # a new process: test:///default starts empty
    assert list((tmp_path / "tdir" / "PyVirtualDomain").glob("t1.monitor.*"))
    r = run(["stop"], {**env, "OCF_RESKEY_trace_file": str(tmp_path / "one" / "stop.trace")})
    assert r.returncode == 0, r.stderr
    assert "DEBUG:" in (tmp_path / "one" / "stop.trace").read_text()


def test_an_unknown_parameter_is_refused_by_validate_all_only(tmp_path):
    """Issue 13 #9: a typo must not ban a running guest's resource cluster-wide: start,
    monitor, stop warn and go on; validate-all (what crm_resource --validate shows) refuses."""
    env = {**_test_vm(tmp_path, "t2"), "OCF_RESKEY_shutdwon_mode": "acpi"}
    r = run(["validate-all"], env)
    assert r.returncode == 6 and "unknown parameter shutdwon_mode" in reasons(r.stderr)[0]
    clean = {k: v for k, v in env.items() if k != "OCF_RESKEY_shutdwon_mode"}
    for action in ("start", "monitor", "stop"):
        r = run([action], env)
        # (each run is a new process: test:///default starts empty, so monitor says 7)
        assert r.returncode == run([action], clean).returncode != 6, (action, r.stderr)
        assert "unknown parameter shutdwon_mode" in r.stderr


def _parameter_rows(help_text: str) -> tuple[list[str], list[tuple[str, str, str, str]]]:
    """The parameter table of --help: its header's column names and every row cut at the
    header's column offsets (a long description continues on indented lines)."""
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Parameters"))
    header = lines[start + 1]
    names = header.split()
    offsets = [header.index(n) for n in names]
    rows: list[tuple[str, str, str, str]] = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        if line[:offsets[-1]].strip() == "":  # a description's continuation
            name, kind, default, desc = rows[-1]
            rows[-1] = (name, kind, default, f"{desc} {line.strip()}")
            continue
        cells = [line[a:b].strip() for a, b in zip(offsets, offsets[1:] + [None], strict=True)]
        rows.append((cells[0], cells[1], cells[2], cells[3]))
    return names, rows


@pytest.mark.parametrize("agent", ["PyVirtualDomain", "PyLXCDomain"])
def test_help_lists_every_parameter_in_aligned_columns(agent):
    """Issue 15 #7: long names were glued to their type (migration_transportstring) and an
    unset default read "default None"."""
    from pyvirtualdomain.metadata import load_schema

    r = subprocess.run([sys.executable, str(ROOT / "agents" / agent), "--help"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    names, rows = _parameter_rows(r.stdout)
    assert names == ["NAME", "TYPE", "DEFAULT", "DESCRIPTION"]
    schema = load_schema(agent)
    assert [row[0] for row in rows] == list(schema.parameters)
    for name, kind, default, desc in rows:
        spec = schema.parameters[name]
        assert kind == spec.type, (name, kind)
        assert default == (spec.default or ""), (name, default)
        assert desc == spec.shortdesc, (name, desc)
    assert "None" not in r.stdout
    assert all(len(line) <= 100 for line in r.stdout.splitlines())


def test_exit_reason_prefix_and_log_files(tmp_path):
    """Issue 15 #6, as resource-agents' ocf_exit_reason and ha_log do: the exit reason line
    takes OCF_EXIT_REASON_PREFIX; the log also goes to HA_LOGFILE, and with HA_debug the
    debug lines to HA_DEBUGLOG."""
    env = {"OCF_RESKEY_config": str(tmp_path / "absent.xml"), "HA_RSCTMP": str(tmp_path),
           "OCF_RESOURCE_INSTANCE": "vm7", "OCF_EXIT_REASON_PREFIX": "EXIT-WHY:",
           "HA_LOGFILE": str(tmp_path / "ha.log"), "HA_DEBUGLOG": str(tmp_path / "debug.log"),
           "HA_debug": "1", "OCF_RESKEY_CRM_meta_interval": "10000"}
    r = run(["monitor"], env)
    assert r.returncode == 5
    assert [line for line in r.stderr.splitlines() if "EXIT-WHY:" in line] == [
        "EXIT-WHY:config " + str(tmp_path / "absent.xml") + " does not exist on this node"]
    assert "ocf-exit-reason:" not in r.stderr
    logged = (tmp_path / "ha.log").read_text()
    assert "PyVirtualDomain(vm7)" in logged and "ERROR: config" in logged
    assert "DEBUG:" not in logged
    debug = (tmp_path / "debug.log").read_text()
    assert "DEBUG:" in debug and "ERROR: config" in debug


def test_by_hand_runs_get_an_instance_per_domain(tmp_path):
    """Issue 21 #4: without OCF_RESOURCE_INSTANCE every run by hand shared one state file,
    so `stop --config vm2.xml` after a monitor of vm1 stopped vm1. The instance is now the
    domain's name from the config (else the file's name)."""
    from pyvirtualdomain.cli import by_hand_instance

    cfg = tmp_path / "a.xml"
    cfg.write_text("<domain type='kvm'>\n  <name> web-01 </name>\n  <devices><name>x</name>"
                   "</devices></domain>")
    assert by_hand_instance(str(cfg)) == "web-01"
    cfg.write_text("<not a domain")
    assert by_hand_instance(str(cfg)) == "a"
    assert by_hand_instance("") == ""
    r = run(["monitor", "--config", str(tmp_path / "vm-77.xml")], {"HA_RSCTMP": str(tmp_path)})
    assert any(line.startswith("PyVirtualDomain(vm-77)[") for line in r.stderr.splitlines())
