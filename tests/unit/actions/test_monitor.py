"""monitor and probe, in-process against libvirt's test:/// driver."""

from __future__ import annotations

from pyvirtualdomain.ocf import OCFExit

from .. import inprocess as actions
from ..conftest import drv_xml, make_ctx, vm_params


def test_monitor_probe_and_recurring(test_conn, write_config, state_dir):
    cfg = write_config(drv_xml("u3"))
    probe = make_ctx("monitor", vm_params(cfg), state_dir)
    assert probe.env.is_probe
    r = actions.monitor(probe)
    assert r.rc == OCFExit.NOT_RUNNING and "u3" in r.reason
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    recurring = make_ctx("monitor", vm_params(cfg), state_dir, meta={"interval": "10000"})
    assert not recurring.env.is_probe
    assert actions.monitor(recurring).rc == OCFExit.SUCCESS


def test_probe_without_config_or_record_is_not_running(test_conn, tmp_path, state_dir):
    r = actions.monitor(make_ctx("monitor", {"config": str(tmp_path / "nope.xml")}, state_dir))
    assert r.rc == OCFExit.NOT_RUNNING
    r = actions.monitor(make_ctx("monitor", {"config": str(tmp_path / "nope.xml")}, state_dir,
                                 meta={"interval": "10000"}))
    assert r.rc == OCFExit.ERR_INSTALLED


def test_garbage_uri_probe_monitor_stop(write_config, state_dir):
    cfg = write_config(drv_xml("u14"))
    for uri in ("this is :// not a uri", "qemu+tcp://[::1/system"):
        params = {"config": str(cfg), "hypervisor": uri}
        assert actions.monitor(make_ctx("monitor", params, state_dir)).rc == OCFExit.NOT_RUNNING
        r = actions.monitor(make_ctx("monitor", params, state_dir, meta={"interval": "10000"}))
        assert r.rc == OCFExit.ERR_CONFIGURED and "URI" in r.reason
        assert actions.stop(make_ctx("stop", params, state_dir)).rc == OCFExit.SUCCESS


def test_a_guest_paused_by_a_user_still_runs(test_conn, write_config, state_dir):
    """Issue 16: only a pause that will not fix itself fails a monitor (I/O error, watchdog,
    guest crash: real guests in tests/integration/test_guest_health.py)."""
    cfg = write_config(drv_xml("pz1"))
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    test_conn.lookupByName("pz1").suspend()
    r = actions.monitor(make_ctx("monitor", vm_params(cfg), state_dir,
                                 meta={"interval": "10000"}))
    assert r.rc == OCFExit.SUCCESS, r
