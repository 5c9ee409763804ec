"""migrate_to / migrate_from, in-process: what they decide before and without a second host
(the migrations themselves run between two real libvirt hosts in
tests/integration/test_migration.py)."""

from __future__ import annotations

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


def test_migrate_to_refuses_bad_migrate_options_everywhere(write_config, state_dir):
    cfg = write_config(drv_xml("m3"))
    r = actions.migrate_to(make_ctx("migrate_to", vm_params(cfg, migrate_options="--frobnicate"),
                                    state_dir, meta={"migrate_target": "node2"}))
    assert r.rc == OCFExit.ERR_CONFIGURED and "--frobnicate" in r.reason


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
