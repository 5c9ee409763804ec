"""A monitor that finds the domain running (re)records it."""

from __future__ import annotations

import os

from pyvirtualdomain.core import record as state
from pyvirtualdomain.ocf import OCFExit

from .. import inprocess as actions
from ..conftest import drv_xml, make_ctx, vm_params


def test_monitor_records_a_running_domain_that_has_no_record(test_conn, write_config,
                                                             state_dir):
    """Found running by a probe, or the record lost: the monitor records it, so the next
    monitors skip parsing the config (and stop can find it with the config gone)."""
    cfg = write_config(drv_xml("u9"))
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    (path,) = state_dir.glob("PyVirtualDomain-*.state")
    path.unlink()
    probe = make_ctx("monitor", vm_params(cfg), state_dir)
    assert actions.monitor(probe).rc == OCFExit.SUCCESS
    rec = state.load(str(path))
    assert rec is not None and rec.name == "u9"
    assert rec.uuid == test_conn.lookupByName("u9").UUIDString()
    assert rec.config_mtime_ns == cfg.stat().st_mtime_ns


def test_monitor_rerecords_the_same_domain_after_the_config_was_touched(test_conn, write_config,
                                                                        state_dir):
    cfg = write_config(drv_xml("u10"))
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    (path,) = state_dir.glob("PyVirtualDomain-*.state")
    before = state.load(str(path))
    assert before is not None
    os.utime(cfg, ns=(before.config_mtime_ns + 10**9, before.config_mtime_ns + 10**9))
    recurring = make_ctx("monitor", vm_params(cfg), state_dir, meta={"interval": "10000"})
    assert actions.monitor(recurring).rc == OCFExit.SUCCESS
    after = state.load(str(path))
    assert after is not None and after.config_mtime_ns == before.config_mtime_ns + 10**9
    assert after.uuid == before.uuid


def test_monitor_keeps_the_record_of_another_domain_when_the_config_names_a_new_one(
        test_conn, write_config, state_dir):
    cfg = write_config(drv_xml("u11"))
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    (path,) = state_dir.glob("PyVirtualDomain-*.state")
    cfg.write_text(drv_xml("u12"))
    r = actions.monitor(make_ctx("monitor", vm_params(cfg), state_dir,
                                 meta={"interval": "10000"}))
    assert r.rc == OCFExit.ERR_GENERIC and "u11" in r.reason  # the old one still runs
    rec = state.load(str(path))
    assert rec is not None and rec.name == "u11"


def test_what_start_learnt_survives_every_re_record(test_conn, write_config, state_dir):
    """Issue 20 #5: the watchdog action (which the dump check needs) was lost, and started_at
    (which the guest agent's miss count is tied to) reset, by a monitor re-recording after a
    config edit and by a start finding the domain running. Both now survive."""
    xml = drv_xml("u13").replace("</domain>", "<devices><watchdog model='i6300esb' "
                                              "action='dump'/></devices></domain>")
    cfg = write_config(xml)
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    (path,) = state_dir.glob("PyVirtualDomain-*.state")
    first = state.load(str(path))
    assert first is not None and first.watchdog == "dump"
    os.utime(cfg, ns=(first.config_mtime_ns + 10**9,) * 2)
    recurring = make_ctx("monitor", vm_params(cfg), state_dir, meta={"interval": "10000"})
    assert actions.monitor(recurring).rc == OCFExit.SUCCESS
    again = state.load(str(path))
    assert again is not None and again.config_mtime_ns == first.config_mtime_ns + 10**9
    assert (again.watchdog, again.started_at) == ("dump", first.started_at)
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0  # running
    third = state.load(str(path))
    assert third is not None and (third.watchdog, third.started_at) == ("dump", first.started_at)


def test_a_domain_recorded_without_its_config_gets_its_watchdog_from_libvirt(
        test_conn, write_config, state_dir):
    """A guest that arrived by migration (or was found by a probe) is recorded with the
    watchdog action of its live definition."""
    xml = drv_xml("u14").replace("</domain>", "<devices><watchdog model='i6300esb' "
                                              "action='dump'/></devices></domain>")
    cfg = write_config(xml)
    test_conn.createXML(xml, 0)
    r = actions.migrate_from(make_ctx("migrate_from", vm_params(cfg), state_dir,
                                      meta={"migrate_source": "node1"}))
    assert r.rc == OCFExit.SUCCESS, r
    (path,) = state_dir.glob("PyVirtualDomain-*.state")
    rec = state.load(str(path))
    assert rec is not None and rec.watchdog == "dump"
