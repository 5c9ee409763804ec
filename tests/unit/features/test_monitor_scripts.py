"""monitor_scripts."""

from __future__ import annotations

from pathlib import Path

from pyvirtualdomain.ocf import OCFExit

from .. import inprocess as actions
from ..conftest import drv_xml, make_ctx, vm_params


def _script(tmp_path: Path, name: str, rc: int, text: str = "") -> Path:
    p = tmp_path / name
    p.write_text(f"#!/bin/sh\necho '{text}'\nexit {rc}\n")
    p.chmod(0o755)
    return p


def test_monitor_scripts_pass_and_fail(test_conn, write_config, state_dir, tmp_path):
    cfg = write_config(drv_xml("p1"))
    ok = _script(tmp_path, "ok.sh", 0)
    bad = _script(tmp_path, "bad.sh", 3, "service down")
    assert actions.start(make_ctx("start", vm_params(cfg, monitor_scripts=str(ok)),
                                  state_dir)).rc == 0
    r = actions.monitor(make_ctx("monitor", vm_params(cfg, monitor_scripts=f"{ok} {bad}"),
                                 state_dir, meta={"interval": "10000"}))
    assert r.rc == OCFExit.ERR_GENERIC
    assert "bad.sh" in r.reason and "returned 3" in r.reason and "service down" in r.reason
    r = actions.monitor(make_ctx("monitor", vm_params(cfg, monitor_scripts=str(ok)), state_dir,
                                 meta={"interval": "10000"}))
    assert r.rc == OCFExit.SUCCESS


def test_start_waits_for_monitor_scripts_and_fails_in_time(test_conn, write_config, state_dir,
                                                           tmp_path):
    cfg = write_config(drv_xml("p2"))
    bad = _script(tmp_path, "never.sh", 1)
    ctx = make_ctx("start", vm_params(cfg, monitor_scripts=str(bad)), state_dir,
                   meta={"timeout": "4000"})
    r = actions.start(ctx)
    assert r.rc != OCFExit.SUCCESS and "never.sh" in r.reason, r


def test_validate_reports_missing_script(write_config, state_dir, tmp_path):
    cfg = write_config(drv_xml("p3"))
    r = actions.validate_all(make_ctx("validate-all", vm_params(
        cfg, monitor_scripts=str(tmp_path / "nope.sh")), state_dir))
    assert r.rc == OCFExit.ERR_INSTALLED and "nope.sh" in r.reason, r
