"""A persistent definition of the domain on the host: refused or warned about."""

from __future__ import annotations

from pyvirtualdomain.ocf import OCFExit

from .. import inprocess as actions
from ..conftest import drv_xml, make_ctx, vm_params


def test_persistent_autostart_definition_refused(test_conn, write_config, state_dir):

    xml = drv_xml("u10")
    dom = test_conn.defineXML(xml)
    dom.setAutostart(1)
    cfg = write_config(xml)
    try:
        r = actions.start(make_ctx("start", vm_params(cfg), state_dir))
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
        r = actions.start(make_ctx("start", vm_params(cfg), state_dir, meta={"remote_node": "g1"}))
        assert r.rc == OCFExit.ERR_INSTALLED and "guest node g1" in r.reason, r
        # without remote-node: a warning, and it runs
        assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
        assert dom.isActive()
        assert cfg.exists()
    finally:
        if dom.isActive():
            dom.destroy()
        dom.undefine()
