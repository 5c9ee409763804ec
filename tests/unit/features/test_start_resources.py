"""start_resources."""

from __future__ import annotations

from .. import inprocess as actions
from ..conftest import drv_xml, make_ctx, vm_params


def test_start_resources_starts_the_network(test_conn, write_config, state_dir):
    net = test_conn.networkLookupByName("default")
    if net.isActive():
        net.destroy()
    xml = drv_xml("p7").replace(
        "</domain>", "<devices><interface type='network'><source network='default'/>"
                     "</interface></devices></domain>")
    cfg = write_config(xml)
    assert actions.start(make_ctx("start", vm_params(cfg, start_resources="true"),
                                  state_dir)).rc == 0
    assert test_conn.networkLookupByName("default").isActive()
