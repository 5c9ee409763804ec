"""migrate_to / migrate_from, in-process: what they decide before and without a second host
(the migrations themselves run between two real libvirt hosts in
tests/integration/test_migration.py)."""

from __future__ import annotations

import io

import pytest

from pyvirtualdomain.ocf import OCFExit

from .. import inprocess as actions
from ..conftest import drv_xml, make_ctx, vm_params


def test_migrate_to_needs_the_target_node(write_config, state_dir):
    cfg = write_config(drv_xml("m1"))
    r = actions.migrate_to(make_ctx("migrate_to", vm_params(cfg), state_dir))
    assert r.rc == OCFExit.ERR_ARGS and "migrate_target" in r.reason


def test_migrate_to_of_a_domain_not_running_here_fails_and_names_it(test_conn, write_config,
                                                                  state_dir):
    cfg = write_config(drv_xml("m2"))
    r = actions.migrate_to(make_ctx("migrate_to", vm_params(cfg), state_dir,
                                    meta={"migrate_target": "node2"}))
    assert r.rc == OCFExit.ERR_GENERIC
    assert r.reason == "domain m2 is not running here: nothing to migrate to node2"


@pytest.mark.parametrize("params", [
    {"migrate_options": "--frobnicate"}, {"migrate_options": "--dname web2"},
    {"migration_transport": "pigeon"}, {"migration_speed": "-1"},
    {"migration_deadline_action": "panic"},
])
def test_a_migration_only_value_never_stops_a_guest_from_starting(test_conn, write_config,
                                                                  state_dir, params):
    """Issue 21 #1: values VirtualDomain reads only in migrate_to made start answer 6, so
    Pacemaker stopped the resource everywhere. validate-all refuses them (6), start and a
    probe warn and run the guest, migrate_to fails with 1 (Pacemaker then stops and starts
    it instead)."""
    cfg = write_config(drv_xml("m3"))
    assert actions.validate_all(make_ctx("validate-all", vm_params(cfg, **params),
                                         state_dir)).rc == OCFExit.ERR_CONFIGURED
    log = io.StringIO()
    ctx = make_ctx("start", vm_params(cfg, **params), state_dir, stream=log)
    assert actions.start(ctx).rc == OCFExit.SUCCESS
    assert "a live migration of this resource will fail" in log.getvalue()
    r = actions.migrate_to(make_ctx("migrate_to", vm_params(cfg, **params), state_dir,
                                    meta={"migrate_target": "node2"}))
    assert r.rc == OCFExit.ERR_GENERIC and r.reason.startswith("cannot migrate to node2"), r
    assert actions.monitor(make_ctx("monitor", vm_params(cfg, **params), state_dir,
                                    meta={"interval": "10000"})).rc == OCFExit.SUCCESS


def test_migrate_from_gives_up_inside_its_timeout(test_conn, write_config, state_dir):
    cfg = write_config(drv_xml("m4"))
    ctx = make_ctx("migrate_from", vm_params(cfg), state_dir,
                   meta={"timeout": "1500", "migrate_source": "node1"})
    t0 = ctx.clock()
    r = actions.migrate_from(ctx)
    took = ctx.clock() - t0
    assert r.rc == OCFExit.ERR_GENERIC
    assert r.reason.startswith("domain m4 did not arrive from node1 within")
    assert took < 1.5


def test_migrate_from_finds_the_arrived_domain_and_records_it(test_conn, write_config,
                                                            state_dir):
    cfg = write_config(drv_xml("m5"))
    test_conn.createXML(drv_xml("m5"), 0)  # as if the migration had brought it here
    r = actions.migrate_from(make_ctx("migrate_from", vm_params(cfg), state_dir,
                                      meta={"migrate_source": "node1"}))
    assert r.rc == OCFExit.SUCCESS
    assert list(state_dir.glob("*.state"))


def test_migrate_from_accepts_a_guest_that_arrives_paused(test_conn, write_config, state_dir):
    """Issue 20 #3: a guest paused on the source (or migrated with --suspend) arrives paused,
    which libvirt calls paused by the user: it arrived. migrate_from waited out its timeout
    and the stop that followed destroyed a guest that had migrated fine."""
    cfg = write_config(drv_xml("m6"))
    test_conn.createXML(drv_xml("m6"), 0).suspend()
    r = actions.migrate_from(make_ctx("migrate_from", vm_params(cfg), state_dir,
                                      meta={"timeout": "3000", "migrate_source": "node1"}))
    assert r.rc == OCFExit.SUCCESS, r
    assert list(state_dir.glob("*.state"))


def test_migrate_from_without_config_or_record_records_the_tagged_arrival(
        test_conn, write_config, state_dir):
    """Issue 20 #1a: the config is not mounted on the target. migrate_from answered 5 before
    asking libvirt and recorded nothing; the stop that followed said "nothing to stop" while
    the guest ran here. Now the arrival is found by its owner tag and recorded (still 5: this
    node cannot start it again), and stop stops it."""
    from pyvirtualdomain.owner import Owner, local_cluster_name
    from pyvirtualdomain.virt.domxml import prepared_xml

    tagged = prepared_xml(drv_xml("m7").encode(), "/x",
                          owner=Owner("unit", "PyVirtualDomain", local_cluster_name()))
    test_conn.createXML(tagged, 0)  # as the migration brought it, tag included
    missing = state_dir.parent / "not-mounted" / "m7.xml"
    r = actions.migrate_from(make_ctx("migrate_from", vm_params(missing), state_dir,
                                      meta={"migrate_source": "node1"}))
    assert r.rc == OCFExit.ERR_INSTALLED, r
    assert "m7 arrived from node1 and is recorded here" in r.reason, r
    assert list(state_dir.glob("*.state"))
    assert actions.stop(make_ctx("stop", vm_params(missing), state_dir)).rc == 0
    assert "m7" not in {d.name() for d in test_conn.listAllDomains() if d.isActive()}


def test_migrate_from_without_config_and_nothing_arriving_answers_at_once(test_conn,
                                                                          state_dir,
                                                                          monkeypatch):
    from pyvirtualdomain.actions import migrate

    monkeypatch.setattr(migrate, "OWNER_ARRIVAL_S", 1.0)
    missing = state_dir.parent / "not-mounted" / "m8.xml"
    ctx = make_ctx("migrate_from", vm_params(missing), state_dir,
                   meta={"timeout": "60000", "migrate_source": "node1"})
    ctx.sleep = __import__("time").sleep
    t0 = ctx.clock()
    r = actions.migrate_from(ctx)
    assert r.rc == OCFExit.ERR_INSTALLED, r
    assert "no domain of this resource arrived from node1" in r.reason
    assert ctx.clock() - t0 < 5, "waited for its whole timeout"


def test_a_slow_hypervisor_version_query_does_not_fail_the_migration(
        test_conn, write_config, state_dir, monkeypatch):
    """Found by the fault soak (docs/soak.md): under load, libvirtd took over 5 s to answer
    the qemu version (asked only to refuse --comp-methods mt to a qemu without it) while it
    answered a liveness call: "the call is slow, not the daemon". migrate_to failed with 55 s
    of its 60 s left, and Pacemaker, after a failed migrate_to, took the guest for "active
    on 2 nodes" and stopped and restarted it instead of moving it. A version that cannot be
    had in time is an unknown version: the migration goes on."""
    from pyvirtualdomain.errors import CallTimedOut
    from pyvirtualdomain.virt.connection import Hypervisor

    def slow(self, timeout_s):
        raise CallTimedOut("hypervisor version: libvirt did not answer within 5.0s, but "
                           "libvirtd answers: the call is slow, not the daemon")

    monkeypatch.setattr(Hypervisor, "hypervisor_version", slow)
    cfg = write_config(drv_xml("m7"))
    test_conn.createXML(drv_xml("m7"), 0)
    log = io.StringIO()
    r = actions.migrate_to(make_ctx("migrate_to", vm_params(cfg), state_dir, stream=log,
                                    meta={"migrate_target": "node2", "timeout": "8000"}))
    # it got past the version: what stops it now is that node2 does not exist here
    assert "hypervisor version" not in r.reason, r
    assert r.reason.startswith("cannot connect to node2's hypervisor"), r
    assert "qemu version unknown" in log.getvalue(), log.getvalue()
