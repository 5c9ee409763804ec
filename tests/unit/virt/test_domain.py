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


def test_uuid_or_none(test_conn):
    """What the monitor compares with the record, without a daemon call or an import."""
    from pyvirtualdomain.virt.domain import Domain

    u = str(uuid.uuid4()).upper()
    raw = test_conn.createXML(drv_xml("u10", u), 0)

    class Broken:
        def UUIDString(self):  # noqa: N802 - libvirt's name
            raise RuntimeError("libvirt-python without a domain")

    try:
        assert Domain(None, raw).uuid_or_none() == u.lower()  # type: ignore[arg-type]
        assert Domain(None, Broken()).uuid_or_none() is None  # type: ignore[arg-type]
    finally:
        raw.destroy()
