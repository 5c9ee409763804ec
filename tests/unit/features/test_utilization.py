"""Utilization attributes, written only when they change."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .. import inprocess as actions
from ..conftest import drv_xml, make_ctx, vm_params


@pytest.fixture
def cib_file(tmp_path: Path) -> Path:
    if not shutil.which("cibadmin"):
        pytest.fail("cibadmin missing: make deps installs pacemaker-cli-utils")
    cib = tmp_path / "cib.xml"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CIB_file": str(cib)}
    cib.write_text(subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True,
                                  check=True, env=env).stdout)
    subprocess.run(["cibadmin", "-C", "-o", "resources", "-X",
                    '<primitive id="unit" class="ocf" provider="custom" type="PyVirtualDomain"/>'],
                   check=True, env=env, capture_output=True)
    return cib


def test_utilization_written_once_per_change(test_conn, write_config, state_dir, cib_file):
    cfg = write_config(drv_xml("p8"))
    env = {"CIB_file": str(cib_file), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir, environ=env)).rc == 0
    log = io.StringIO()
    ctx = make_ctx("monitor", vm_params(cfg), state_dir, meta={"interval": "10000"},
                   environ=env, stream=log)
    assert actions.monitor(ctx).rc == 0
    cib = cib_file.read_text()
    assert 'name="cpu" value="1"' in cib and 'name="hv_memory" value="8"' in cib
    assert 'name="host_memory" value="8"' in cib
    assert log.getvalue().count("utilization") == 3
    log2 = io.StringIO()
    assert actions.monitor(make_ctx("monitor", vm_params(cfg), state_dir,
                                    meta={"interval": "10000"}, environ=env,
                                    stream=log2)).rc == 0
    assert "utilization" not in log2.getvalue()  # unchanged: no crm_resource call
    # unset: the attribute goes away
    assert actions.monitor(make_ctx("monitor", vm_params(
        cfg, autoset_utilization_cpu="false", unset_utilization_cpu="true"), state_dir,
        meta={"interval": "10000"}, environ=env)).rc == 0
    assert 'name="cpu"' not in cib_file.read_text()


def test_utilization_memory_is_the_maximum_memory(test_conn, write_config, state_dir,
                                                  cib_file):
    """Found by the two-node cluster tests (issue 14): host_memory/hv_memory are the domain's
    maximum memory, as VirtualDomain's ("Max memory" of virsh dominfo), not the memory used
    now. For a container the current memory changes all the time: every monitor rewrote the
    CIB's configuration, aborting Pacemaker's transitions (one aborted a guest node's live
    migration, and Pacemaker fenced the guest)."""
    cfg = write_config("<domain type='test'><name>um1</name><memory>16384</memory>"
                       "<currentMemory>8192</currentMemory><os><type>hvm</type></os></domain>")
    env = {"CIB_file": str(cib_file), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir, environ=env)).rc == 0
    assert actions.monitor(make_ctx("monitor", vm_params(cfg), state_dir,
                                    meta={"interval": "10000"}, environ=env)).rc == 0
    cib = cib_file.read_text()
    assert 'name="host_memory" value="16"' in cib, cib
    assert 'name="hv_memory" value="16"' in cib, cib


def test_pylxcdomain_can_turn_utilization_off(tmp_path):
    """PyLXCDomain wrote the attributes and had no parameter to turn them off (asking for
    one made start answer 6): it has VirtualDomain's six now."""
    from pyvirtualdomain.metadata import load_schema
    from pyvirtualdomain.params import build_params

    schema = load_schema("PyLXCDomain")
    p = build_params({"config": "/ct.xml", "autoset_utilization_host_memory": "false",
                      "autoset_utilization_hv_memory": "false"}, schema, ("initctl", "signal"))
    assert not p.problems and not p.unknown
    assert p.autoset_utilization_cpu and not p.autoset_utilization_host_memory


def _recording_path(tmp_path: Path) -> tuple[str, Path]:
    """A PATH whose crm_resource and cibadmin note each call, then run the real tool."""
    shims = tmp_path / "shims"
    shims.mkdir()
    calls = tmp_path / "calls.log"
    for tool in ("crm_resource", "cibadmin"):
        real = shutil.which(tool)
        assert real, f"{tool} missing: make deps installs pacemaker-cli-utils"
        shim = shims / tool
        shim.write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\nexec {real} "$@"\n')
        shim.chmod(0o755)
    return f"{shims}:{os.environ.get('PATH', '/usr/bin:/bin')}", calls


def _start_then_monitor(cfg: Path, state_dir: Path, env: dict[str, str]) -> str:
    """Start, then one recurring monitor; the monitor's log."""
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir, environ=env)).rc == 0
    log = io.StringIO()
    assert actions.monitor(make_ctx("monitor", vm_params(cfg), state_dir,
                                    meta={"interval": "10000"}, environ=env,
                                    stream=log)).rc == 0
    return log.getvalue()


def _set_in_cib(cib_file: Path, **values: str) -> None:
    env = {"CIB_file": str(cib_file), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for name, value in values.items():
        subprocess.run(["crm_resource", "--resource", "unit", "--utilization",
                        "--set-parameter", name, "--parameter-value", value],
                       check=True, env=env, capture_output=True)


def test_values_the_cib_holds_already_are_not_written_again(test_conn, write_config,
                                                            state_dir, cib_file, tmp_path):
    """After a live migration the target's agent remembers nothing, and the source's agent
    wrote the same values: its first monitor, which Pacemaker waits for before the next
    migration to this node, wrote all three again (three crm_resource calls). One cibadmin
    query now, and nothing written; from the next monitor on, not even that."""
    cfg = write_config(drv_xml("p9"))
    _set_in_cib(cib_file, cpu="1", hv_memory="8", host_memory="8")
    before = cib_file.read_text()
    path, calls = _recording_path(tmp_path)
    env = {"CIB_file": str(cib_file), "PATH": path}
    log = _start_then_monitor(cfg, state_dir, env)
    made = calls.read_text().splitlines() if calls.exists() else []
    assert [c.split()[0] for c in made] == ["cibadmin"], made
    assert "utilization" not in log
    assert cib_file.read_text() == before
    assert actions.monitor(make_ctx("monitor", vm_params(cfg), state_dir,
                                    meta={"interval": "10000"}, environ=env)).rc == 0
    assert len(calls.read_text().splitlines()) == 1, "the second monitor asked again"


def test_only_the_value_that_differs_is_written(test_conn, write_config, state_dir, cib_file,
                                               tmp_path):
    cfg = write_config(drv_xml("p10"))
    _set_in_cib(cib_file, cpu="4", hv_memory="8", host_memory="8", hv_extra="1")
    path, calls = _recording_path(tmp_path)
    env = {"CIB_file": str(cib_file), "PATH": path}
    _start_then_monitor(cfg, state_dir, env)
    writes = [c for c in calls.read_text().splitlines() if c.startswith("crm_resource")]
    assert len(writes) == 1 and "--set-parameter cpu --parameter-value 1" in writes[0], writes
    assert 'name="cpu" value="1"' in cib_file.read_text()
    assert 'name="hv_extra" value="1"' in cib_file.read_text()  # not ours: left alone


def test_when_the_cib_cannot_say_for_sure_every_value_is_written(test_conn, write_config,
                                                                state_dir, cib_file,
                                                                tmp_path):
    """Two utilization sets (one may hold a rule): which value counts is Pacemaker's to
    decide, so the agent writes its values as it always did."""
    env0 = {"CIB_file": str(cib_file), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    subprocess.run(["cibadmin", "-M", "-o", "resources", "-X",
                    '<primitive id="unit"><utilization id="u1"><nvpair id="u1-cpu" name="cpu" '
                    'value="1"/></utilization><utilization id="u2"><nvpair id="u2-cpu" '
                    'name="cpu" value="2"/></utilization></primitive>'],
                   check=True, env=env0, capture_output=True)
    cfg = write_config(drv_xml("p11"))
    path, calls = _recording_path(tmp_path)
    env = {"CIB_file": str(cib_file), "PATH": path}
    _start_then_monitor(cfg, state_dir, env)
    writes = [c for c in calls.read_text().splitlines() if c.startswith("crm_resource")]
    assert len(writes) == 3, writes
