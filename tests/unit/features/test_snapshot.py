"""snapshot: RAM state saved on stop and restored on start."""

from __future__ import annotations

import io
import os
import stat
import time

from pyvirtualdomain.ocf import OCFExit

from .. import inprocess as actions
from ..conftest import drv_xml, make_ctx, vm_params


def test_snapshot_saves_on_stop_and_restores_on_start(test_conn, write_config, state_dir,
                                                      tmp_path):
    snap = tmp_path / "snap"
    snap.mkdir()
    cfg = write_config(drv_xml("p5"))
    params = vm_params(cfg, snapshot=str(snap))
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
    info = actions.validate_all(make_ctx("validate-all", vm_params(
        cfg, snapshot=str(tmp_path), force_stop="true"), state_dir))
    assert info.rc == OCFExit.ERR_CONFIGURED


def _saved_state_of(test_conn, name: str, uuid: str, snap) -> None:
    """A state file as stop writes it, of domain ``name`` with ``uuid``."""
    dom = test_conn.createXML(drv_xml(name, uuid), 0)
    dom.save(str(snap / f"{name}.state"))


def test_a_state_file_of_another_domain_is_set_aside_not_restored(test_conn, write_config,
                                                                  state_dir, tmp_path):
    """Issue 13 #5: restoring a state saved by a domain with another uuid made start fail
    and the next stop return 0 while it ran."""
    snap = tmp_path / "snap"
    snap.mkdir()
    _saved_state_of(test_conn, "p8", "11111111-2222-4333-8444-555555555555", snap)
    cfg = write_config(drv_xml("p8", "99999999-2222-4333-8444-555555555555"))
    params = vm_params(cfg, snapshot=str(snap))
    log = io.StringIO()
    assert actions.start(make_ctx("start", params, state_dir, stream=log)).rc == 0
    dom = test_conn.lookupByName("p8")
    assert dom.UUIDString() == "99999999-2222-4333-8444-555555555555"  # a cold start
    assert "belongs to another domain" in log.getvalue()
    assert not (snap / "p8.state").exists()
    assert [p.name for p in snap.glob("p8.state.foreign-*")]  # kept, never deleted
    assert actions.stop(make_ctx("stop", vm_params(cfg), state_dir)).rc == 0
    assert "p8" not in {d.name() for d in test_conn.listAllDomains() if d.isActive()}


def test_a_cold_start_supersedes_older_saved_states(test_conn, write_config, state_dir,
                                                    tmp_path):
    """Issue 13 #5: a state saved days ago, after which the guest was cold-started (and
    ran on), must never be restored over a disk that moved on."""
    snap = tmp_path / "snap"
    snap.mkdir()
    uuid = "abababab-2222-4333-8444-555555555555"
    cfg = write_config(drv_xml("p9", uuid))
    params = vm_params(cfg, snapshot=str(snap))
    _saved_state_of(test_conn, "p9", uuid, snap)  # saved "days ago"
    old = snap / "p9.state"
    os.utime(old, (time.time() - 3 * 86400,) * 2)
    # the guest was cold-started since (the state file was not visible then)
    hidden = old.rename(snap / "hidden")
    assert actions.start(make_ctx("start", params, state_dir)).rc == 0
    assert actions.stop(make_ctx("stop", vm_params(cfg), state_dir)).rc == 0  # shut down
    hidden.rename(old)
    log = io.StringIO()
    assert actions.start(make_ctx("start", params, state_dir, stream=log)).rc == 0
    assert "restoring" not in log.getvalue() and "superseded" in log.getvalue()
    assert [p.name for p in snap.glob("p9.state.superseded-*")]


def test_start_refuses_when_the_snapshot_directory_is_missing(test_conn, write_config,
                                                              state_dir, tmp_path):
    """Issue 13 #5: with the (shared) directory not mounted, a cold start would miss a saved
    state, which a later start would restore over a disk that moved on."""
    cfg = write_config(drv_xml("p10"))
    r = actions.start(make_ctx("start", vm_params(cfg, snapshot=str(tmp_path / "gone")),
                               state_dir))
    assert r.rc == OCFExit.ERR_INSTALLED and "gone" in r.reason
    assert "p10" not in {d.name() for d in test_conn.listAllDomains()}


def test_stop_never_creates_the_snapshot_directory(test_conn, write_config, state_dir,
                                                   tmp_path):
    cfg = write_config(drv_xml("p11"))
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    log = io.StringIO()
    gone = tmp_path / "not-mounted"
    assert actions.stop(make_ctx("stop", vm_params(cfg, snapshot=str(gone)), state_dir,
                                 stream=log)).rc == 0
    assert not gone.exists() and "not saved" in log.getvalue()


def test_validate_warns_when_the_snapshot_directory_is_not_shared(write_config, state_dir,
                                                                  tmp_path):
    cfg = write_config(drv_xml("p12"))
    log = io.StringIO()
    r = actions.validate_all(make_ctx("validate-all", vm_params(cfg, snapshot=str(tmp_path)),
                                      state_dir, stream=log))
    assert r.rc == OCFExit.SUCCESS
    assert "not on shared storage" in log.getvalue()
