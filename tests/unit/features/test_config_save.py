"""save_config_on_stop / sync_config_on_stop."""

from __future__ import annotations

import io
import os
import stat

from .. import inprocess as actions
from ..conftest import GOLDEN, drv_xml, golden, make_ctx, vm_params


def test_save_config_on_stop_is_atomic_and_keeps_mode(test_conn, write_config, state_dir):
    cfg = write_config(drv_xml("p4"))
    cfg.chmod(0o640)
    before = cfg.read_text()
    assert "<uuid>" not in before
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    uuid = test_conn.lookupByName("p4").UUIDString()
    assert actions.stop(make_ctx("stop", vm_params(cfg, save_config_on_stop="true"),
                                 state_dir)).rc == 0
    after = cfg.read_text()
    assert f"<uuid>{uuid}</uuid>" in after and "<name>p4</name>" in after
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o640
    assert not [p for p in cfg.parent.iterdir() if p.name.startswith(".vm.xml.")]


def test_sync_config_without_csync2_warns_and_stop_succeeds(test_conn, write_config,
                                                            state_dir, tmp_path):
    cfg = write_config(drv_xml("p4s"))
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    log = io.StringIO()
    ctx = make_ctx("stop", vm_params(cfg, save_config_on_stop="true", sync_config_on_stop="true"),
                   state_dir, environ={"PATH": str(tmp_path / "no-csync2-here")}, stream=log)
    assert actions.stop(ctx).rc == 0
    assert "csync2 is not installed" in log.getvalue()
    assert "<uuid>" in cfg.read_text()  # saved all the same
    assert all(d.name() != "p4s" for d in test_conn.listAllDomains(1))


def test_config_save_golden(test_conn, tmp_path, state_dir):
    """What save_config_on_stop writes into the config file: libvirt's inactive definition
    (test:/// driver, libvirt 9.0), nothing of ours added."""
    cfg = tmp_path / "golden-save.xml"
    cfg.write_bytes((GOLDEN / "config_save.in.xml").read_bytes())
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    assert actions.stop(make_ctx("stop", vm_params(cfg, save_config_on_stop="true"),
                                 state_dir)).rc == 0
    written = cfg.read_text()
    assert written == golden("config_save.out.xml", written)


def test_a_symlinked_config_is_written_through_the_link(test_conn, tmp_path, state_dir):
    """Issue 13 #6: configs commonly link to shared storage; the saved definition goes into
    the link's target (atomically, mode and owner kept) and the link stays a link."""
    shared = tmp_path / "shared"
    shared.mkdir()
    target = shared / "p7.xml"
    target.write_text(drv_xml("p7"))
    target.chmod(0o640)
    link = tmp_path / "etc" / "p7.xml"
    link.parent.mkdir()
    link.symlink_to(target)
    assert actions.start(make_ctx("start", vm_params(link), state_dir)).rc == 0
    uuid = test_conn.lookupByName("p7").UUIDString()
    assert actions.stop(make_ctx("stop", vm_params(link, save_config_on_stop="true"),
                                 state_dir)).rc == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert f"<uuid>{uuid}</uuid>" in target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in shared.iterdir()) == ["p7.xml"]
    assert sorted(p.name for p in link.parent.iterdir()) == ["p7.xml"]
