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


def test_a_changed_live_definition_is_saved_by_the_monitor(test_conn, write_config,
                                                           state_dir):
    """Issue 21 #7: VirtualDomain saves the definition on every monitor with
    save_config_on_stop, so a hot-plugged device survives a fenced node; the agent saved only
    on stop. Now a recurring monitor writes it when it changed (and only then)."""
    import libvirt

    cfg = write_config(drv_xml("mon-save"))
    params = vm_params(cfg, save_config_on_stop="true")
    assert actions.start(make_ctx("start", params, state_dir)).rc == 0
    recurring = make_ctx("monitor", params, state_dir, meta={"interval": "10000"})
    assert actions.monitor(recurring).rc == OCFExit.SUCCESS
    saved = cfg.read_text()
    assert "<name>mon-save</name>" in saved and "pyvirtualdomain" not in saved
    mtime = cfg.stat().st_mtime_ns
    assert actions.monitor(make_ctx("monitor", params, state_dir,
                                    meta={"interval": "10000"})).rc == OCFExit.SUCCESS
    assert cfg.stat().st_mtime_ns == mtime, "rewritten although nothing changed"
    test_conn.lookupByName("mon-save").setMetadata(
        libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, "hot-plugged", None, None,
        libvirt.VIR_DOMAIN_AFFECT_LIVE)
    assert actions.monitor(make_ctx("monitor", params, state_dir,
                                    meta={"interval": "10000"})).rc == OCFExit.SUCCESS
    assert "<description>hot-plugged</description>" in cfg.read_text()


def test_an_explicit_hypervisor_is_followed_beside_the_record(test_conn, write_config,
                                                              state_dir):
    """Issue 21 #8: the state record silently overrode an explicit hypervisor parameter (the
    fast path looked only where the record said, and said 0). Both are checked now, with a
    warning, and a domain running elsewhere than the parameter says is reported."""
    import io

    cfg = write_config(drv_xml("mon-hv"))
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    log = io.StringIO()
    ctx = make_ctx("monitor", vm_params(cfg, hypervisor="qemu+tcp://127.0.0.1:1/system"),
                   state_dir, meta={"interval": "10000"}, stream=log)
    r = actions.monitor(ctx)
    assert "checking both" in log.getvalue(), log.getvalue()
    assert r.rc == OCFExit.ERR_GENERIC and "runs through test:///default" in r.reason, r
