"""Actions run in-process against libvirt's test:/// driver (no daemon)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from pyvirtualdomain import fileio
from pyvirtualdomain.core import record as state
from pyvirtualdomain.ocf import OCFExit

from . import actions
from .conftest import TEST_URI, drv_xml, make_ctx


def _params(cfg: Path, **extra: str) -> dict[str, str]:
    return {"config": str(cfg), "hypervisor": TEST_URI, **extra}


def _names(conn: Any) -> set[str]:
    return {d.name() for d in conn.listAllDomains() if d.isActive()}


def test_start_creates_transient_domain_and_records_it(test_conn, write_config, state_dir):
    cfg = write_config(drv_xml("u1"))
    r = actions.start(make_ctx("start", _params(cfg), state_dir))
    assert r.rc == OCFExit.SUCCESS
    dom = test_conn.lookupByName("u1")
    assert dom.isActive() and not dom.isPersistent()
    rec = fileio.parse_fields(next(state_dir.glob("PyVirtualDomain-*.state")).read_bytes())
    assert rec["name"] == "u1" and rec["uuid"] == dom.UUIDString()


def test_start_twice_is_success_and_keeps_the_same_domain(test_conn, write_config, state_dir):
    cfg = write_config(drv_xml("u2"))
    assert actions.start(make_ctx("start", _params(cfg), state_dir)).rc == 0
    first = test_conn.lookupByName("u2").ID()
    assert actions.start(make_ctx("start", _params(cfg), state_dir)).rc == 0
    assert test_conn.lookupByName("u2").ID() == first


def test_monitor_probe_and_recurring(test_conn, write_config, state_dir):
    cfg = write_config(drv_xml("u3"))
    probe = make_ctx("monitor", _params(cfg), state_dir)
    assert probe.env.is_probe
    r = actions.monitor(probe)
    assert r.rc == OCFExit.NOT_RUNNING and "u3" in r.reason
    assert actions.start(make_ctx("start", _params(cfg), state_dir)).rc == 0
    recurring = make_ctx("monitor", _params(cfg), state_dir, meta={"interval": "10000"})
    assert not recurring.env.is_probe
    assert actions.monitor(recurring).rc == OCFExit.SUCCESS


def test_stop_graceful_then_absent(test_conn, write_config, state_dir):
    cfg = write_config(drv_xml("u4"))
    assert actions.start(make_ctx("start", _params(cfg), state_dir)).rc == 0
    assert actions.stop(make_ctx("stop", _params(cfg), state_dir)).rc == OCFExit.SUCCESS
    assert "u4" not in _names(test_conn)
    assert not list(state_dir.glob("PyVirtualDomain-*.state"))
    # stopping again, and monitoring, an absent domain
    assert actions.stop(make_ctx("stop", _params(cfg), state_dir)).rc == OCFExit.SUCCESS
    assert actions.monitor(make_ctx("monitor", _params(cfg), state_dir,
                                    meta={"interval": "10000"})).rc == OCFExit.NOT_RUNNING


def test_stop_with_unsupported_shutdown_mode_destroys(test_conn, write_config, state_dir):
    # The test driver rejects shutdown flags: the agent must fall through to destroy.
    cfg = write_config(drv_xml("u5"))
    assert actions.start(make_ctx("start", _params(cfg), state_dir)).rc == 0
    import io
    log = io.StringIO()
    ctx = make_ctx("stop", _params(cfg, shutdown_mode="acpi"), state_dir, stream=log)
    assert actions.stop(ctx).rc == OCFExit.SUCCESS
    assert "u5" not in _names(test_conn)
    assert "not possible" in log.getvalue() and "destroying" in log.getvalue()


def test_force_stop_skips_graceful(test_conn, write_config, state_dir):
    import io
    cfg = write_config(drv_xml("u6"))
    assert actions.start(make_ctx("start", _params(cfg), state_dir)).rc == 0
    log = io.StringIO()
    ctx = make_ctx("stop", _params(cfg, force_stop="true"), state_dir, stream=log)
    assert actions.stop(ctx).rc == OCFExit.SUCCESS
    assert "asked domain" not in log.getvalue()
    assert "destroying domain u6" in log.getvalue()
    assert "u6" not in _names(test_conn)


def test_config_unreadable_after_start_uses_record(test_conn, write_config, state_dir):
    cfg = write_config(drv_xml("u7"))
    assert actions.start(make_ctx("start", _params(cfg), state_dir)).rc == 0
    cfg.unlink()
    assert actions.monitor(make_ctx("monitor", _params(cfg), state_dir)).rc == 0
    assert actions.stop(make_ctx("stop", _params(cfg), state_dir)).rc == 0
    assert "u7" not in _names(test_conn)


def test_config_edited_to_other_name_still_stops_the_started_domain(test_conn, write_config,
                                                                    state_dir):
    cfg = write_config(drv_xml("u8"))
    assert actions.start(make_ctx("start", _params(cfg), state_dir)).rc == 0
    cfg.write_text(drv_xml("u8-renamed"))
    r = actions.monitor(make_ctx("monitor", _params(cfg), state_dir, meta={"interval": "1000"}))
    assert r.rc == OCFExit.ERR_GENERIC and "u8" in r.reason
    assert actions.stop(make_ctx("stop", _params(cfg), state_dir)).rc == 0
    assert "u8" not in _names(test_conn)


def test_probe_without_config_or_record_is_not_running(test_conn, tmp_path, state_dir):
    r = actions.monitor(make_ctx("monitor", {"config": str(tmp_path / "nope.xml")}, state_dir))
    assert r.rc == OCFExit.NOT_RUNNING
    r = actions.monitor(make_ctx("monitor", {"config": str(tmp_path / "nope.xml")}, state_dir,
                                 meta={"interval": "10000"}))
    assert r.rc == OCFExit.ERR_INSTALLED


def test_lookup_by_uuid_distinguishes_same_name(test_conn, write_config, state_dir):
    other = test_conn.createXML(drv_xml("u9", str(uuid.uuid4())), 0)
    cfg = write_config(drv_xml("u9", str(uuid.uuid4())))
    r = actions.monitor(make_ctx("monitor", _params(cfg), state_dir))
    assert r.rc == OCFExit.NOT_RUNNING
    # start must not adopt the other domain: libvirt refuses the name clash

    info = actions.start(make_ctx("start", _params(cfg), state_dir))
    assert info.rc != OCFExit.SUCCESS and "already exists" in info.reason, info
    assert info.rc == OCFExit.ERR_GENERIC
    assert other.isActive()
    other.destroy()


def test_persistent_autostart_definition_refused(test_conn, write_config, state_dir):

    xml = drv_xml("u10")
    dom = test_conn.defineXML(xml)
    dom.setAutostart(1)
    cfg = write_config(xml)
    try:
        r = actions.start(make_ctx("start", _params(cfg), state_dir))
        assert r.rc == OCFExit.ERR_INSTALLED and "autostart" in r.reason, r
        assert cfg.exists()
        assert not dom.isActive()
    finally:
        dom.undefine()


def test_persistent_definition_with_remote_node_refused(test_conn, write_config, state_dir):

    xml = drv_xml("u11")
    dom = test_conn.defineXML(xml)
    cfg = write_config(xml)
    try:
        r = actions.start(make_ctx("start", _params(cfg), state_dir, meta={"remote_node": "g1"}))
        assert r.rc == OCFExit.ERR_INSTALLED and "guest node g1" in r.reason, r
        # without remote-node: a warning, and it runs
        assert actions.start(make_ctx("start", _params(cfg), state_dir)).rc == 0
        assert dom.isActive()
        assert cfg.exists()
    finally:
        if dom.isActive():
            dom.destroy()
        dom.undefine()


def test_record_file_is_written_atomically_and_ignored_when_corrupt(state_dir):
    p = state.record_path(str(state_dir), "PyVirtualDomain", "r/1")
    assert "/" not in Path(p).name
    Path(p).write_text("{not json")
    assert state.load(p) is None


def test_validate_deep_reports_guest_node_reachability(test_conn, write_config, state_dir):
    import socket
    from pathlib import Path as P


    assert P("/etc/pacemaker/authkey").exists(), "needs /etc/pacemaker/authkey (make deps " \
        "installs pacemaker, whose package creates it)"
    cfg = write_config(drv_xml("u12"))
    assert actions.start(make_ctx("start", _params(cfg), state_dir)).rc == 0
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    meta = {"remote_node": "g1", "remote_addr": "127.0.0.1", "remote_port": str(port)}
    deep = {"OCF_CHECK_LEVEL": "10"}
    ok = actions.validate_all(make_ctx("validate-all", _params(cfg), state_dir, meta=meta,
                                       environ=deep))
    assert ok.rc == OCFExit.SUCCESS
    listener.close()
    closed = actions.validate_all(make_ctx("validate-all", _params(cfg), state_dir, meta=meta,
                                           environ=deep))
    assert closed.rc == OCFExit.ERR_GENERIC and f"127.0.0.1:{port}" in closed.reason
    # a remote hypervisor for a guest node is wrong everywhere
    r = actions.validate_all(make_ctx("validate-all", {"config": str(cfg),
                                      "hypervisor": "qemu+ssh://elsewhere/system"},
                                      state_dir, meta=meta))
    assert r.rc == OCFExit.ERR_CONFIGURED and "remote" in r.reason, r


def test_validate_deep_reports_autostart_hazard(test_conn, write_config, state_dir):

    xml = drv_xml("u13")
    dom = test_conn.defineXML(xml)
    cfg = write_config(xml)
    try:
        # level 0 does not ask libvirt
        assert actions.validate_all(make_ctx("validate-all", _params(cfg), state_dir)).rc == 0
        import io
        log = io.StringIO()
        r = actions.validate_all(make_ctx("validate-all", _params(cfg), state_dir,
                                          environ={"OCF_CHECK_LEVEL": "10"}, stream=log))
        assert r.rc == 0 and "defined persistently" in log.getvalue()
        dom.setAutostart(1)
        r = actions.validate_all(make_ctx("validate-all", _params(cfg), state_dir,
                                          environ={"OCF_CHECK_LEVEL": "10"}))
        assert r.rc == OCFExit.ERR_INSTALLED and "autostart" in r.reason, r
    finally:
        dom.undefine()


def test_garbage_uri_probe_monitor_stop(write_config, state_dir):
    cfg = write_config(drv_xml("u14"))
    for uri in ("this is :// not a uri", "qemu+tcp://[::1/system"):
        params = {"config": str(cfg), "hypervisor": uri}
        assert actions.monitor(make_ctx("monitor", params, state_dir)).rc == OCFExit.NOT_RUNNING
        r = actions.monitor(make_ctx("monitor", params, state_dir, meta={"interval": "10000"}))
        assert r.rc == OCFExit.ERR_CONFIGURED and "URI" in r.reason
        assert actions.stop(make_ctx("stop", params, state_dir)).rc == OCFExit.SUCCESS


def test_monitor_records_a_running_domain_that_has_no_record(test_conn, write_config,
                                                             state_dir):
    """Found running by a probe, or the record lost: the monitor records it, so the next
    monitors skip parsing the config (and stop can find it with the config gone)."""
    cfg = write_config(drv_xml("u9"))
    assert actions.start(make_ctx("start", _params(cfg), state_dir)).rc == 0
    (path,) = state_dir.glob("PyVirtualDomain-*.state")
    path.unlink()
    probe = make_ctx("monitor", _params(cfg), state_dir)
    assert actions.monitor(probe).rc == OCFExit.SUCCESS
    rec = state.load(str(path))
    assert rec is not None and rec.name == "u9"
    assert rec.uuid == test_conn.lookupByName("u9").UUIDString()
    assert rec.config_mtime_ns == cfg.stat().st_mtime_ns


def test_monitor_rerecords_the_same_domain_after_the_config_was_touched(test_conn, write_config,
                                                                        state_dir):
    cfg = write_config(drv_xml("u10"))
    assert actions.start(make_ctx("start", _params(cfg), state_dir)).rc == 0
    (path,) = state_dir.glob("PyVirtualDomain-*.state")
    before = state.load(str(path))
    assert before is not None
    os.utime(cfg, ns=(before.config_mtime_ns + 10**9, before.config_mtime_ns + 10**9))
    recurring = make_ctx("monitor", _params(cfg), state_dir, meta={"interval": "10000"})
    assert actions.monitor(recurring).rc == OCFExit.SUCCESS
    after = state.load(str(path))
    assert after is not None and after.config_mtime_ns == before.config_mtime_ns + 10**9
    assert after.uuid == before.uuid


def test_monitor_keeps_the_record_of_another_domain_when_the_config_names_a_new_one(
        test_conn, write_config, state_dir):
    cfg = write_config(drv_xml("u11"))
    assert actions.start(make_ctx("start", _params(cfg), state_dir)).rc == 0
    (path,) = state_dir.glob("PyVirtualDomain-*.state")
    cfg.write_text(drv_xml("u12"))
    r = actions.monitor(make_ctx("monitor", _params(cfg), state_dir,
                                 meta={"interval": "10000"}))
    assert r.rc == OCFExit.ERR_GENERIC and "u11" in r.reason  # the old one still runs
    rec = state.load(str(path))
    assert rec is not None and rec.name == "u11"


def test_a_domain_recreated_from_a_config_without_uuid_is_still_found(test_conn, write_config,
                                                                      state_dir):
    """The config names no uuid, so libvirt picks one per start. The domain re-created from
    it outside the cluster runs under another uuid: probe and monitor must say running (7
    could get it started on a second host), stop must stop it, the record follows it."""
    cfg = write_config(drv_xml("u13"))
    assert actions.start(make_ctx("start", _params(cfg), state_dir)).rc == 0
    first = test_conn.lookupByName("u13")
    old_uuid = first.UUIDString()
    first.destroy()
    again = test_conn.createXML(drv_xml("u13"), 0)
    assert again.UUIDString() != old_uuid
    assert actions.monitor(make_ctx("monitor", _params(cfg), state_dir)).rc == OCFExit.SUCCESS
    recurring = make_ctx("monitor", _params(cfg), state_dir, meta={"interval": "10000"})
    assert actions.monitor(recurring).rc == OCFExit.SUCCESS
    (path,) = state_dir.glob("PyVirtualDomain-*.state")
    rec = state.load(str(path))
    assert rec is not None and rec.uuid == again.UUIDString() and rec.config_uuid is None
    assert actions.stop(make_ctx("stop", _params(cfg), state_dir)).rc == OCFExit.SUCCESS
    assert "u13" not in _names(test_conn)


def test_a_same_name_domain_with_another_uuid_is_not_the_pinned_one(test_conn, write_config,
                                                                    state_dir):
    """The config pins a uuid: a domain of the same name under another uuid is a different
    domain, and stop must not touch it."""
    cfg = write_config(drv_xml("u14", "7b0c3b1e-1111-4222-8333-444455556666"))
    assert actions.start(make_ctx("start", _params(cfg), state_dir)).rc == 0
    test_conn.lookupByName("u14").destroy()
    other = test_conn.createXML(drv_xml("u14", "7b0c3b1e-1111-4222-8333-777788889999"), 0)
    recurring = make_ctx("monitor", _params(cfg), state_dir, meta={"interval": "10000"})
    assert actions.monitor(recurring).rc == OCFExit.NOT_RUNNING
    try:
        assert actions.stop(make_ctx("stop", _params(cfg), state_dir)).rc == OCFExit.SUCCESS
        assert other.isActive()
    finally:
        other.destroy()
