"""The last resort: the emulator process found and killed without libvirt. A stand-in
process whose argv is a qemu command line (python, renamed) plays the emulator; the real
qemu is killed in tests/integration/test_libvirtd_down.py."""

from __future__ import annotations

import io
import subprocess
import sys
import uuid

import pytest

from pyvirtualdomain.core.last_resort import emulator_pids, kill_emulator
from pyvirtualdomain.core.target import Target
from pyvirtualdomain.errors import AgentError
from pyvirtualdomain.virt.domxml import DomainIdentity

from ..conftest import make_ctx


@pytest.fixture
def fake_qemu():
    ident = DomainIdentity(f"pyvd-unit-{uuid.uuid4().hex[:6]}", str(uuid.uuid4()), "kvm")
    proc = subprocess.Popen(["qemu-system-x86_64", "-c", "import time; time.sleep(120)",
                             "-name", f"guest={ident.name},debug-threads=on",
                             "-uuid", ident.uuid or ""], executable=sys.executable)
    yield ident, proc
    proc.kill()
    proc.wait()


def test_kill_emulator_kills_the_domains_process(fake_qemu, state_dir):
    ident, proc = fake_qemu
    log = io.StringIO()
    ctx = make_ctx("stop", {"config": "/x.xml"}, state_dir, stream=log)
    assert emulator_pids(ident) == [proc.pid]
    kill_emulator(ctx, Target(ident, "qemu:///system", "config"), ctx.deadline("stop"),
                  "libvirt at qemu:///system unreachable")
    assert proc.wait(timeout=5) is not None
    assert emulator_pids(ident) == []
    assert f"killing the emulator of {ident.name} (pid {proc.pid})" in log.getvalue()


def test_no_emulator_is_success(state_dir):
    ident = DomainIdentity("pyvd-unit-none", str(uuid.uuid4()), "kvm")
    ctx = make_ctx("stop", {"config": "/x.xml"}, state_dir)
    kill_emulator(ctx, Target(ident, "qemu:///system", "config"), ctx.deadline("stop"), "why")


def test_a_remote_hypervisor_is_never_proof(fake_qemu, state_dir):
    ident, proc = fake_qemu
    ctx = make_ctx("stop", {"config": "/x.xml"}, state_dir)
    with pytest.raises(AgentError, match="may still run on remote hypervisor"):
        kill_emulator(ctx, Target(ident, "qemu+ssh://h2/system", "config"),
                      ctx.deadline("stop"), "unreachable")
    assert proc.poll() is None  # a local process of that name is not the remote domain
