"""start, in-process against libvirt's test:/// driver."""

from __future__ import annotations

from pyvirtualdomain import fileio
from pyvirtualdomain.ocf import OCFExit

from .. import inprocess as actions
from ..conftest import drv_xml, make_ctx, vm_params


def test_start_creates_transient_domain_and_records_it(test_conn, write_config, state_dir):
    cfg = write_config(drv_xml("u1"))
    r = actions.start(make_ctx("start", vm_params(cfg), state_dir))
    assert r.rc == OCFExit.SUCCESS
    dom = test_conn.lookupByName("u1")
    assert dom.isActive() and not dom.isPersistent()
    rec = fileio.parse_fields(next(state_dir.glob("PyVirtualDomain-*.state")).read_bytes())
    assert rec["name"] == "u1" and rec["uuid"] == dom.UUIDString()


def test_start_twice_is_success_and_keeps_the_same_domain(test_conn, write_config, state_dir):
    cfg = write_config(drv_xml("u2"))
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    first = test_conn.lookupByName("u2").ID()
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    assert test_conn.lookupByName("u2").ID() == first


def test_a_value_libvirt_cannot_take_in_the_xml_is_a_configuration_error(test_conn,
                                                                          write_config,
                                                                          state_dir):
    """Issue 21 #8: <memory unit='XB'> made libvirt answer "invalid argument", which the agent
    reported as 5 (this node cannot run it): it is wrong on every node, 6."""
    cfg = write_config(drv_xml("s-xb").replace("<memory>8192</memory>",
                                               "<memory unit='XB'>8</memory>"))
    r = actions.start(make_ctx("start", vm_params(cfg), state_dir))
    assert r.rc == OCFExit.ERR_CONFIGURED, r
    assert "libvirt rejects config" in r.reason and "XB" in r.reason
