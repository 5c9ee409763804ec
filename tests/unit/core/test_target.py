"""Which domain a resource means: config, record, or both."""

from __future__ import annotations

from typing import Any

from pyvirtualdomain.core import record as state
from pyvirtualdomain.ocf import OCFExit

from .. import inprocess as actions
from ..conftest import drv_xml, make_ctx, vm_params


def _names(conn: Any) -> set[str]:
    return {d.name() for d in conn.listAllDomains() if d.isActive()}


def test_config_unreadable_after_start_uses_record(test_conn, write_config, state_dir):
    cfg = write_config(drv_xml("u7"))
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    cfg.unlink()
    assert actions.monitor(make_ctx("monitor", vm_params(cfg), state_dir)).rc == 0
    assert actions.stop(make_ctx("stop", vm_params(cfg), state_dir)).rc == 0
    assert "u7" not in _names(test_conn)


def test_config_edited_to_other_name_still_stops_the_started_domain(test_conn, write_config,
                                                                    state_dir):
    cfg = write_config(drv_xml("u8"))
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    cfg.write_text(drv_xml("u8-renamed"))
    r = actions.monitor(make_ctx("monitor", vm_params(cfg), state_dir, meta={"interval": "1000"}))
    assert r.rc == OCFExit.ERR_GENERIC and "u8" in r.reason
    assert actions.stop(make_ctx("stop", vm_params(cfg), state_dir)).rc == 0
    assert "u8" not in _names(test_conn)


def test_a_domain_recreated_from_a_config_without_uuid_is_still_found(test_conn, write_config,
                                                                      state_dir):
    """The config names no uuid, so libvirt picks one per start. The domain re-created from
    it outside the cluster runs under another uuid: probe and monitor must say running (7
    could get it started on a second host), stop must stop it, the record follows it."""
    cfg = write_config(drv_xml("u13"))
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    first = test_conn.lookupByName("u13")
    old_uuid = first.UUIDString()
    first.destroy()
    again = test_conn.createXML(drv_xml("u13"), 0)
    assert again.UUIDString() != old_uuid
    assert actions.monitor(make_ctx("monitor", vm_params(cfg), state_dir)).rc == OCFExit.SUCCESS
    recurring = make_ctx("monitor", vm_params(cfg), state_dir, meta={"interval": "10000"})
    assert actions.monitor(recurring).rc == OCFExit.SUCCESS
    (path,) = state_dir.glob("PyVirtualDomain-*.state")
    rec = state.load(str(path))
    assert rec is not None and rec.uuid == again.UUIDString() and rec.config_uuid is None
    assert actions.stop(make_ctx("stop", vm_params(cfg), state_dir)).rc == OCFExit.SUCCESS
    assert "u13" not in _names(test_conn)


def test_a_same_name_domain_with_another_uuid_is_not_the_pinned_one(test_conn, write_config,
                                                                    state_dir):
    """The config pins a uuid: a domain of the same name under another uuid is a different
    domain, and stop must not touch it."""
    cfg = write_config(drv_xml("u14", "7b0c3b1e-1111-4222-8333-444455556666"))
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    test_conn.lookupByName("u14").destroy()
    other = test_conn.createXML(drv_xml("u14", "7b0c3b1e-1111-4222-8333-777788889999"), 0)
    recurring = make_ctx("monitor", vm_params(cfg), state_dir, meta={"interval": "10000"})
    assert actions.monitor(recurring).rc == OCFExit.NOT_RUNNING
    try:
        assert actions.stop(make_ctx("stop", vm_params(cfg), state_dir)).rc == OCFExit.SUCCESS
        assert other.isActive()
    finally:
        other.destroy()
