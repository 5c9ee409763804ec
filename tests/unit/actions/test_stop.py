"""stop's escalation, in-process against libvirt's test:/// driver."""

from __future__ import annotations

from typing import Any

from pyvirtualdomain.ocf import OCFExit

from .. import inprocess as actions
from ..conftest import drv_xml, make_ctx, vm_params


def _names(conn: Any) -> set[str]:
    return {d.name() for d in conn.listAllDomains() if d.isActive()}


def test_stop_graceful_then_absent(test_conn, write_config, state_dir):
    cfg = write_config(drv_xml("u4"))
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    assert actions.stop(make_ctx("stop", vm_params(cfg), state_dir)).rc == OCFExit.SUCCESS
    assert "u4" not in _names(test_conn)
    assert not list(state_dir.glob("PyVirtualDomain-*.state"))
    # stopping again, and monitoring, an absent domain
    assert actions.stop(make_ctx("stop", vm_params(cfg), state_dir)).rc == OCFExit.SUCCESS
    assert actions.monitor(make_ctx("monitor", vm_params(cfg), state_dir,
                                    meta={"interval": "10000"})).rc == OCFExit.NOT_RUNNING


def test_an_unsupported_shutdown_mode_falls_back_to_the_default_method(test_conn,
                                                                       write_config, state_dir):
    """Issue 21 #5: the test driver rejects shutdown flags (as qemu rejects mode agent without
    a guest agent): the agent destroyed the guest at once; now it asks with the hypervisor's
    default method (which the test driver carries out) and destroys only if that fails."""
    cfg = write_config(drv_xml("u5"))
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    import io
    log = io.StringIO()
    ctx = make_ctx("stop", vm_params(cfg, shutdown_mode="acpi"), state_dir, stream=log)
    assert actions.stop(ctx).rc == OCFExit.SUCCESS
    assert "u5" not in _names(test_conn)
    assert "not possible" in log.getvalue()
    assert "falling back to the hypervisor's default shutdown method" in log.getvalue()
    assert "destroying" not in log.getvalue()


def test_force_stop_skips_graceful(test_conn, write_config, state_dir):
    import io
    cfg = write_config(drv_xml("u6"))
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    log = io.StringIO()
    ctx = make_ctx("stop", vm_params(cfg, force_stop="true"), state_dir, stream=log)
    assert actions.stop(ctx).rc == OCFExit.SUCCESS
    assert "asked domain" not in log.getvalue()
    assert "destroying domain u6" in log.getvalue()
    assert "u6" not in _names(test_conn)
