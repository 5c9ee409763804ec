"""VirtualDomain's extras against libvirt's test:/// driver (in-process) and a CIB file."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from pyvirtualdomain.ocf import OCFExit

from . import actions
from .conftest import TEST_URI, drv_xml, make_ctx


def _params(cfg: Path, **extra: str) -> dict[str, str]:
    return {"config": str(cfg), "hypervisor": TEST_URI, **extra}


def _script(tmp_path: Path, name: str, rc: int, text: str = "") -> Path:
    p = tmp_path / name
    p.write_text(f"#!/bin/sh\necho '{text}'\nexit {rc}\n")
    p.chmod(0o755)
    return p


def test_monitor_scripts_pass_and_fail(test_conn, write_config, state_dir, tmp_path):
    cfg = write_config(drv_xml("p1"))
    ok = _script(tmp_path, "ok.sh", 0)
    bad = _script(tmp_path, "bad.sh", 3, "service down")
    assert actions.start(make_ctx("start", _params(cfg, monitor_scripts=str(ok)),
                                  state_dir)).rc == 0
    r = actions.monitor(make_ctx("monitor", _params(cfg, monitor_scripts=f"{ok} {bad}"),
                                 state_dir, meta={"interval": "10000"}))
    assert r.rc == OCFExit.ERR_GENERIC
    assert "bad.sh" in r.reason and "returned 3" in r.reason and "service down" in r.reason
    r = actions.monitor(make_ctx("monitor", _params(cfg, monitor_scripts=str(ok)), state_dir,
                                 meta={"interval": "10000"}))
    assert r.rc == OCFExit.SUCCESS


def test_start_waits_for_monitor_scripts_and_fails_in_time(test_conn, write_config, state_dir,
                                                           tmp_path):
    cfg = write_config(drv_xml("p2"))
    bad = _script(tmp_path, "never.sh", 1)
    ctx = make_ctx("start", _params(cfg, monitor_scripts=str(bad)), state_dir,
                   meta={"timeout": "4000"})
    r = actions.start(ctx)
    assert r.rc != OCFExit.SUCCESS and "never.sh" in r.reason, r


def test_validate_reports_missing_script(write_config, state_dir, tmp_path):
    cfg = write_config(drv_xml("p3"))
    r = actions.validate_all(make_ctx("validate-all", _params(
        cfg, monitor_scripts=str(tmp_path / "nope.sh")), state_dir))
    assert r.rc == OCFExit.ERR_INSTALLED and "nope.sh" in r.reason, r


def test_save_config_on_stop_is_atomic_and_keeps_mode(test_conn, write_config, state_dir):
    cfg = write_config(drv_xml("p4"))
    cfg.chmod(0o640)
    before = cfg.read_text()
    assert "<uuid>" not in before
    assert actions.start(make_ctx("start", _params(cfg), state_dir)).rc == 0
    uuid = test_conn.lookupByName("p4").UUIDString()
    assert actions.stop(make_ctx("stop", _params(cfg, save_config_on_stop="true"),
                                 state_dir)).rc == 0
    after = cfg.read_text()
    assert f"<uuid>{uuid}</uuid>" in after and "<name>p4</name>" in after
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o640
    assert not [p for p in cfg.parent.iterdir() if p.name.startswith(".vm.xml.")]


def test_sync_config_without_csync2_warns_and_stop_succeeds(test_conn, write_config,
                                                            state_dir, tmp_path):
    cfg = write_config(drv_xml("p4s"))
    assert actions.start(make_ctx("start", _params(cfg), state_dir)).rc == 0
    log = io.StringIO()
    ctx = make_ctx("stop", _params(cfg, save_config_on_stop="true", sync_config_on_stop="true"),
                   state_dir, environ={"PATH": str(tmp_path / "no-csync2-here")}, stream=log)
    assert actions.stop(ctx).rc == 0
    assert "csync2 is not installed" in log.getvalue()
    assert "<uuid>" in cfg.read_text()  # saved all the same
    assert all(d.name() != "p4s" for d in test_conn.listAllDomains(1))


def test_snapshot_saves_on_stop_and_restores_on_start(test_conn, write_config, state_dir,
                                                      tmp_path):
    snap = tmp_path / "snap"
    snap.mkdir()
    cfg = write_config(drv_xml("p5"))
    params = _params(cfg, snapshot=str(snap))
    assert actions.start(make_ctx("start", params, state_dir)).rc == 0
    assert actions.stop(make_ctx("stop", params, state_dir)).rc == 0
    state_file = snap / "p5.state"
    assert state_file.exists() and stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert "p5" not in {d.name() for d in test_conn.listAllDomains() if d.isActive()}
    log = io.StringIO()
    assert actions.start(make_ctx("start", params, state_dir, stream=log)).rc == 0
    assert "restoring p5" in log.getvalue()
    assert not state_file.exists()
    assert test_conn.lookupByName("p5").isActive()


def test_snapshot_with_force_stop_is_misconfigured(write_config, state_dir, tmp_path):
    cfg = write_config(drv_xml("p6"))
    info = actions.validate_all(make_ctx("validate-all", _params(
        cfg, snapshot=str(tmp_path), force_stop="true"), state_dir))
    assert info.rc == OCFExit.ERR_CONFIGURED


def test_start_resources_starts_the_network(test_conn, write_config, state_dir):
    net = test_conn.networkLookupByName("default")
    if net.isActive():
        net.destroy()
    xml = drv_xml("p7").replace(
        "</domain>", "<devices><interface type='network'><source network='default'/>"
                     "</interface></devices></domain>")
    cfg = write_config(xml)
    assert actions.start(make_ctx("start", _params(cfg, start_resources="true"),
                                  state_dir)).rc == 0
    assert test_conn.networkLookupByName("default").isActive()


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
    assert actions.start(make_ctx("start", _params(cfg), state_dir, environ=env)).rc == 0
    log = io.StringIO()
    ctx = make_ctx("monitor", _params(cfg), state_dir, meta={"interval": "10000"},
                   environ=env, stream=log)
    assert actions.monitor(ctx).rc == 0
    cib = cib_file.read_text()
    assert 'name="cpu" value="1"' in cib and 'name="hv_memory" value="8"' in cib
    assert 'name="host_memory" value="8"' in cib
    assert log.getvalue().count("utilization") == 3
    log2 = io.StringIO()
    assert actions.monitor(make_ctx("monitor", _params(cfg), state_dir,
                                    meta={"interval": "10000"}, environ=env,
                                    stream=log2)).rc == 0
    assert "utilization" not in log2.getvalue()  # unchanged: no crm_resource call
    # unset: the attribute goes away
    assert actions.monitor(make_ctx("monitor", _params(
        cfg, autoset_utilization_cpu="false", unset_utilization_cpu="true"), state_dir,
        meta={"interval": "10000"}, environ=env)).rc == 0
    assert 'name="cpu"' not in cib_file.read_text()


def test_backingfile_overlay_created_and_stateless_recreates(test_conn, write_config,
                                                             state_dir, tmp_path):
    if not shutil.which("qemu-img"):
        pytest.fail("qemu-img missing: make deps installs qemu-utils")
    backing = tmp_path / "base.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(backing), "4M"], check=True)
    before = backing.read_bytes()
    cfg = write_config(drv_xml("p9"), name="web.v1.xml")
    overlay = tmp_path / "web.v1.qcow2"
    params = _params(cfg, backingfile=str(backing))
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
    ctx = make_ctx("validate-all", _params(cfg, backingfile=str(backing),
                                           copyindirs=str(tmp_path)), state_dir,
                   environ={"PATH": str(only_qemu_img)})
    r = actions.validate_all(ctx)
    assert r.rc == OCFExit.ERR_INSTALLED and "virt-copy-in" in r.reason, r
