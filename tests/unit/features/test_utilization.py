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
