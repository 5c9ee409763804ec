"""backingfile / stateless / copyindirs. The qemu-img and virt-copy-in here are stand-in
scripts that record their argv; the real tools run in
tests/integration/test_parity_copyindirs.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pyvirtualdomain.ocf import OCFExit

from .. import inprocess as actions
from ..conftest import TEST_URI, drv_xml, make_ctx, vm_params


def test_backingfile_overlay_created_and_stateless_recreates(test_conn, write_config,
                                                             state_dir, tmp_path):
    if not shutil.which("qemu-img"):
        pytest.fail("qemu-img missing: make deps installs qemu-utils")
    backing = tmp_path / "base.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(backing), "4M"], check=True)
    before = backing.read_bytes()
    cfg = write_config(drv_xml("p9"), name="web.v1.xml")
    overlay = tmp_path / "web.qcow2"  # VirtualDomain's rule: cut at the first dot
    params = vm_params(cfg, backingfile=str(backing))
    assert actions.start(make_ctx("start", params, state_dir)).rc == 0
    info = subprocess.run(["qemu-img", "info", "--output=json", "-U", str(overlay)],
                          capture_output=True, text=True, check=True).stdout
    assert '"format": "qcow2"' in info and str(backing) in info
    ino = overlay.stat().st_ino
    assert actions.stop(make_ctx("stop", params, state_dir)).rc == 0
    assert actions.start(make_ctx("start", params, state_dir)).rc == 0
    assert overlay.stat().st_ino == ino  # kept: not stateless
    assert actions.stop(make_ctx("stop", params, state_dir)).rc == 0
    stateless = {**params, "stateless": "true"}
    assert actions.start(make_ctx("start", stateless, state_dir)).rc == 0
    assert overlay.stat().st_ino != ino  # re-created
    assert backing.read_bytes() == before  # the backing file is never written


def test_copyindirs_without_virt_copy_in_is_not_installed(write_config, state_dir, tmp_path):
    backing = tmp_path / "base.raw"
    backing.write_bytes(b"\0" * 1024)
    cfg = write_config(drv_xml("p10"))
    only_qemu_img = tmp_path / "bin"  # qemu-img is there, virt-copy-in is not
    only_qemu_img.mkdir()
    qemu_img = shutil.which("qemu-img")
    assert qemu_img, "qemu-img missing: make deps installs qemu-utils"
    (only_qemu_img / "qemu-img").symlink_to(qemu_img)
    ctx = make_ctx("validate-all", vm_params(cfg, backingfile=str(backing),
                                           copyindirs=str(tmp_path)), state_dir,
                   environ={"PATH": str(only_qemu_img)})
    r = actions.validate_all(ctx)
    assert r.rc == OCFExit.ERR_INSTALLED and "virt-copy-in" in r.reason, r


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    """A PATH directory with the real qemu-img and a virt-copy-in stand-in: it writes its
    arguments and LIBGUESTFS_BACKEND_SETTINGS to files, then exits with $FAKE_RC after
    printing $FAKE_ERR on stderr."""
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        pytest.fail("qemu-img missing: make deps installs qemu-utils")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "qemu-img").symlink_to(qemu_img)
    fake = bin_dir / "virt-copy-in"
    fake.write_text("#!/bin/sh\n"
                    f"printf '%s\\n' \"$@\" > '{tmp_path}/argv'\n"
                    f"printf '%s' \"$LIBGUESTFS_BACKEND_SETTINGS\" > '{tmp_path}/settings'\n"
                    "[ -n \"$FAKE_ERR\" ] && printf '%b' \"$FAKE_ERR\" >&2\n"
                    "exit ${FAKE_RC:-0}\n")
    fake.chmod(0o755)
    return bin_dir


def _setup(tmp_path: Path, write_config: Any, copyindirs: str,
           name: str) -> tuple[dict[str, str], Path, Path]:
    backing = tmp_path / "base.raw"
    backing.write_bytes(b"\0" * 65536)
    cfg = write_config(drv_xml(name), name=f"{name}.xml")
    params = {"config": str(cfg), "hypervisor": TEST_URI, "backingfile": str(backing),
              "copyindirs": copyindirs}
    return params, backing, tmp_path / f"{name}.qcow2"


def _env(tools: Path, **extra: str) -> dict[str, str]:
    return {"PATH": f"{tools}:/usr/bin:/bin", **extra}


def test_missing_copyindirs_path_is_not_installed(test_conn: Any, write_config: Any,
                                                  state_dir: Path, tmp_path: Path,
                                                  tools: Path) -> None:
    missing = tmp_path / "no-such-dir"
    params, _, overlay = _setup(tmp_path, write_config, f"{tmp_path} {missing}", "c1")
    v = actions.validate_all(make_ctx("validate-all", params, state_dir, environ=_env(tools)))
    assert v.rc == OCFExit.ERR_INSTALLED and str(missing) in v.reason
    assert "\n" not in v.reason
    # start is not preceded by validate-all: it checks too, before creating anything
    s = actions.start(make_ctx("start", params, state_dir, environ=_env(tools)))
    assert s.rc == OCFExit.ERR_INSTALLED and str(missing) in s.reason
    assert not overlay.exists() and not (tmp_path / "argv").exists()
    assert all(d.name() != "c1" for d in test_conn.listAllDomains(1))


def test_virt_copy_in_gets_the_agents_environment_and_the_new_overlay(
        test_conn: Any, write_config: Any, state_dir: Path, tmp_path: Path,
        tools: Path) -> None:
    src = tmp_path / "inject"
    src.mkdir()
    params, _, overlay = _setup(tmp_path, write_config, str(src), "c2")
    # Only in the agent's environment mapping, not in this process's os.environ.
    env = _env(tools, LIBGUESTFS_BACKEND_SETTINGS="force_tcg")
    assert actions.start(make_ctx("start", params, state_dir, environ=env)).rc == 0
    assert (tmp_path / "settings").read_text() == "force_tcg"
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[:2] == ["--format=qcow2", "-a"]
    assert argv[2].startswith(f"{overlay}.new-") and argv[3:] == [str(src), "/"]
    assert overlay.exists() and not list(tmp_path.glob("c2.qcow2.new-*"))


def test_virt_copy_in_failure_is_rc1_naming_it_and_leaves_no_overlay(
        test_conn: Any, write_config: Any, state_dir: Path, tmp_path: Path,
        tools: Path) -> None:
    src = tmp_path / "inject"
    src.mkdir()
    params, backing, overlay = _setup(tmp_path, write_config, str(src), "c3")
    before = backing.read_bytes()
    hints = "If using guestfish -i option, remove this option and instead use run.\\n" * 8
    env = _env(tools, FAKE_RC="1",
               FAKE_ERR=f"virt-copy-in: no operating system was found on this disk\\n\\n{hints}")
    e = actions.start(make_ctx("start", params, state_dir, environ=env))
    assert e.rc == OCFExit.ERR_GENERIC
    prefix, suffix = "virt-copy-in failed (1): ", f" (overlay {overlay})"
    assert e.reason.startswith(prefix) and "\n" not in e.reason
    assert e.reason.endswith(suffix)
    told = e.reason[len(prefix):-len(suffix)]
    # the first line (the error) survives the cut to 300 characters, and the end of the rest
    assert told.startswith("virt-copy-in: no operating system was found on this disk ... ")
    assert len(told) <= 300 and told.endswith("instead use run.")
    assert not overlay.exists() and not list(tmp_path.glob("c3.qcow2.new-*"))
    assert backing.read_bytes() == before
    assert all(d.name() != "c3" for d in test_conn.listAllDomains(1))


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def test_a_temp_overlay_left_by_a_killed_start_is_removed_not_one_being_built(
        test_conn: Any, write_config: Any, state_dir: Path, tmp_path: Path,
        tools: Path) -> None:
    src = tmp_path / "inject"
    src.mkdir()
    params, _, overlay = _setup(tmp_path, write_config, str(src), "c4")
    stale = tmp_path / f"c4.qcow2.new-{_dead_pid()}"
    busy = tmp_path / f"c4.qcow2.new-{os.getppid()}"  # its builder (our parent) is alive
    stale.write_bytes(b"half")
    busy.write_bytes(b"half")
    assert actions.start(make_ctx("start", params, state_dir, environ=_env(tools))).rc == 0
    assert overlay.exists() and not stale.exists() and busy.exists()


def test_the_overlay_is_where_virtualdomain_puts_it():
    """Issue 21 #8: the agent cut only the config's extension; VirtualDomain cuts the path at
    its first dot, and the domain XML of a switched resource names that file as its disk."""
    from pyvirtualdomain.features.backing import overlay_path

    assert overlay_path("/etc/vms/web1.xml") == "/etc/vms/web1.qcow2"
    assert overlay_path("/srv/cluster.d/vm1.xml") == "/srv/cluster.qcow2"
    assert overlay_path("/etc/vms/web1") == "/etc/vms/web1.qcow2"

