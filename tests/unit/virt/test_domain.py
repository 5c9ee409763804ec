"""The Domain wrapper against libvirt's test:/// driver."""

from __future__ import annotations

import uuid

from pyvirtualdomain.ocf import OCFExit

from .. import inprocess as actions
from ..conftest import drv_xml, make_ctx, vm_params


def test_lookup_by_uuid_distinguishes_same_name(test_conn, write_config, state_dir):
    other = test_conn.createXML(drv_xml("u9", str(uuid.uuid4())), 0)
    cfg = write_config(drv_xml("u9", str(uuid.uuid4())))
    r = actions.monitor(make_ctx("monitor", vm_params(cfg), state_dir))
    assert r.rc == OCFExit.NOT_RUNNING
    # start must not adopt the other domain: libvirt refuses the name clash

    info = actions.start(make_ctx("start", vm_params(cfg), state_dir))
    assert info.rc != OCFExit.SUCCESS and "already exists" in info.reason, info
    assert info.rc == OCFExit.ERR_GENERIC
    assert other.isActive()
    other.destroy()
