"""Agent bug found by the two-node cluster tests (tests/cluster/test_two_node.py, issue 14):
the utilization attributes host_memory / hv_memory must be the domain's *maximum* memory, as
VirtualDomain's autoset_utilization_* document it ("the number of *Max memory* from virsh",
`virsh dominfo`'s "Max memory"), not the memory it uses right now.

Our agents write ``info()[2]`` (current memory). For a libvirt-lxc container that is the
container's actual memory use, which changes all the time (2, 3, ... MiB for a 256 MiB
container), so its recurring monitor keeps rewriting the resource's utilization in the CIB's
configuration section. Each write is a configuration change that aborts the cluster's running
transition; in the two-node cluster one such write (PyLXCDomain's vm-guest2 monitor:
"utilization host_memory=3") aborted the transition of guest1's live migration between
migrate_to and migrate_from, and Pacemaker 2.1.5 then fenced guest1 ("Guest node guest1 will
be fenced (by recovering its guest resource vm-guest1): dummy-g1a is thought to be active
there", "Forcing recovery of vm-guest1 because it can no longer migrate") instead of
finishing the migration. Evidence: build/cluster/state/test_two_node/pcmk-2/log-pacemaker/
pacemaker.log of that run, quoted in docs/cluster-tests.md.

xfail(strict): remove the marker with the fix in lib/ (an XPASS fails the run)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pyvirtualdomain import actions

from .conftest import TEST_URI, make_ctx

# 16 MiB maximum, 8 MiB current: virsh dominfo says "Max memory: 16384 KiB",
# "Used memory: 8192 KiB".
XML = ("<domain type='test'><name>um1</name><memory>16384</memory>"
       "<currentMemory>8192</currentMemory><os><type>hvm</type></os></domain>")


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


@pytest.mark.xfail(strict=True, reason="agent bug: utilization memory is the current, not "
                                       "the maximum memory (see the module docstring)")
def test_utilization_memory_is_the_maximum_memory(test_conn, write_config, state_dir,
                                                  cib_file):
    cfg = write_config(XML)
    env = {"CIB_file": str(cib_file), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    params = {"config": str(cfg), "hypervisor": TEST_URI}
    assert actions.start(make_ctx("start", params, state_dir, environ=env)).rc == 0
    assert actions.monitor(make_ctx("monitor", params, state_dir, meta={"interval": "10000"},
                                    environ=env)).rc == 0
    cib = cib_file.read_text()
    assert 'name="host_memory" value="16"' in cib, cib
    assert 'name="hv_memory" value="16"' in cib, cib
