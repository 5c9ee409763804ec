"""validate-all, including OCF_CHECK_LEVEL=10."""

from __future__ import annotations

from pyvirtualdomain.ocf import OCFExit

from .. import inprocess as actions
from ..conftest import drv_xml, make_ctx, vm_params


def test_validate_deep_reports_guest_node_reachability(test_conn, write_config, state_dir):
    import socket
    from pathlib import Path as P


    assert P("/etc/pacemaker/authkey").exists(), "needs /etc/pacemaker/authkey (make deps " \
        "installs pacemaker, whose package creates it)"
    cfg = write_config(drv_xml("u12"))
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    meta = {"remote_node": "g1", "remote_addr": "127.0.0.1", "remote_port": str(port)}
    deep = {"OCF_CHECK_LEVEL": "10"}
    ok = actions.validate_all(make_ctx("validate-all", vm_params(cfg), state_dir, meta=meta,
                                       environ=deep))
    assert ok.rc == OCFExit.SUCCESS
    listener.close()
    closed = actions.validate_all(make_ctx("validate-all", vm_params(cfg), state_dir, meta=meta,
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
        assert actions.validate_all(make_ctx("validate-all", vm_params(cfg), state_dir)).rc == 0
        import io
        log = io.StringIO()
        r = actions.validate_all(make_ctx("validate-all", vm_params(cfg), state_dir,
                                          environ={"OCF_CHECK_LEVEL": "10"}, stream=log))
        assert r.rc == 0 and "defined persistently" in log.getvalue()
        dom.setAutostart(1)
        r = actions.validate_all(make_ctx("validate-all", vm_params(cfg), state_dir,
                                          environ={"OCF_CHECK_LEVEL": "10"}))
        assert r.rc == OCFExit.ERR_INSTALLED and "autostart" in r.reason, r
    finally:
        dom.undefine()


def test_level_20_needs_a_guest_agent_channel(write_config, state_dir):
    """Issue 16: the guest agent check cannot work without the agent's channel."""
    plain = write_config(drv_xml("ga9"), "plain.xml")
    with_agent = write_config(drv_xml("ga9").replace(
        "</domain>", "<devices><channel type='unix'><target type='virtio' "
        "name='org.qemu.guest_agent.0'/></channel></devices></domain>"), "agent.xml")
    level20 = {"OCF_CHECK_LEVEL": "20"}
    r = actions.validate_all(make_ctx("validate-all", vm_params(plain), state_dir,
                                      environ=level20))
    assert r.rc == OCFExit.ERR_CONFIGURED and "guest agent channel" in r.reason, r
    assert actions.validate_all(make_ctx("validate-all", vm_params(plain), state_dir)).rc == 0
    r = actions.validate_all(make_ctx("validate-all", vm_params(with_agent), state_dir,
                                      environ=level20))
    assert r.rc == 0, r
