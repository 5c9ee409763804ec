"""snapshot: RAM state saved on stop and restored on start."""

from __future__ import annotations

import io
import stat

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
