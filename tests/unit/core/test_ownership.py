"""Finding a resource's domain by its owner tag when the node has neither its config nor its
state record (issue 20 #1), in-process against libvirt's test:/// driver."""

from __future__ import annotations

from typing import Any

import libvirt

from pyvirtualdomain.core.ownership import find_owned, resource_owner, tag_domain
from pyvirtualdomain.core.target import close, connect
from pyvirtualdomain.ocf import OCFExit
from pyvirtualdomain.owner import OWNER_NS
from pyvirtualdomain.virt.domain import Domain
from pyvirtualdomain.virt.domxml import DomainIdentity

from .. import inprocess as actions
from ..conftest import TEST_URI, drv_xml, make_ctx, vm_params


def _tag(conn: Any, name: str) -> str | None:
    try:
        return str(conn.lookupByName(name).metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                                                    OWNER_NS, libvirt.VIR_DOMAIN_AFFECT_LIVE))
    except libvirt.libvirtError:
        return None


def _forget_config_and_record(cfg: Any, state_dir: Any) -> None:
    cfg.unlink()
    for p in state_dir.glob("PyVirtualDomain-*"):
        p.unlink()


def test_start_tags_the_domain_with_its_owner(test_conn, write_config, state_dir):
    cfg = write_config(drv_xml("o1"))
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    tag = _tag(test_conn, "o1")
    assert tag is not None and 'instance="unit"' in tag and 'agent="PyVirtualDomain"' in tag


def test_search_finds_only_this_resources_domain(test_conn, write_config, state_dir):
    cfg = write_config(drv_xml("o2"))
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    test_conn.createXML(drv_xml("o2-untagged"), 0)
    ctx = make_ctx("monitor", vm_params(cfg), state_dir)
    search = find_owned(ctx, ctx.deadline("monitor"))
    assert [t.ident.name for t in search.targets] == ["o2"]
    assert search.targets[0].ident.uuid == test_conn.lookupByName("o2").UUIDString()
    other = make_ctx("monitor", vm_params(cfg), state_dir,
                     environ={"OCF_RESOURCE_INSTANCE": "another"})
    search = find_owned(other, other.deadline("monitor"))
    assert search.targets == () and search.absent_proven


def test_probe_and_stop_without_config_or_record_find_the_tagged_domain(test_conn,
                                                                       write_config, state_dir):
    """The guest runs here, the node has neither config nor record: the probe said 7 and
    stop said 0 ("nothing to stop") while it ran. Now both find it by its tag."""
    cfg = write_config(drv_xml("o3"))
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    _forget_config_and_record(cfg, state_dir)
    assert actions.monitor(make_ctx("monitor", vm_params(cfg), state_dir)).rc == 0
    assert list(state_dir.glob("PyVirtualDomain-*.state")), "the probe recorded it"
    for p in state_dir.glob("PyVirtualDomain-*"):
        p.unlink()
    assert actions.stop(make_ctx("stop", vm_params(cfg), state_dir)).rc == 0
    assert "o3" not in {d.name() for d in test_conn.listAllDomains() if d.isActive()}
    # nothing of the resource left: the probe may now say 7, stop 0
    assert actions.monitor(make_ctx("monitor", vm_params(cfg), state_dir)).rc == \
        OCFExit.NOT_RUNNING
    assert actions.stop(make_ctx("stop", vm_params(cfg), state_dir)).rc == 0


def test_a_recurring_monitor_without_config_or_record_reports_the_tagged_domain(
        test_conn, write_config, state_dir):
    cfg = write_config(drv_xml("o4"))
    assert actions.start(make_ctx("start", vm_params(cfg), state_dir)).rc == 0
    _forget_config_and_record(cfg, state_dir)
    r = actions.monitor(make_ctx("monitor", vm_params(cfg), state_dir,
                                 meta={"interval": "10000"}))
    assert r.rc == OCFExit.SUCCESS, r


def test_an_adopted_domain_is_tagged(test_conn, write_config, state_dir):
    """A domain started outside this agent (by VirtualDomain, before a switch) carries no
    tag; a start that finds it running, or a probe that records it, tags it."""
    cfg = write_config(drv_xml("o5"))
    test_conn.createXML(drv_xml("o5"), 0)
    assert _tag(test_conn, "o5") is None
    assert actions.monitor(make_ctx("monitor", vm_params(cfg), state_dir)).rc == 0
    assert 'instance="unit"' in (_tag(test_conn, "o5") or "")
    test_conn.createXML(drv_xml("o6"), 0)
    cfg6 = write_config(drv_xml("o6"), "o6.xml")
    ctx = make_ctx("start", vm_params(cfg6), state_dir,
                   environ={"OCF_RESOURCE_INSTANCE": "vm-o6"})
    assert actions.start(ctx).rc == 0
    assert 'instance="vm-o6"' in (_tag(test_conn, "o6") or "")


def test_tag_domain_replaces_another_resources_tag(test_conn, write_config, state_dir):
    test_conn.createXML(drv_xml("o7"), 0)
    ctx = make_ctx("monitor", {"config": "/x", "hypervisor": TEST_URI}, state_dir)
    deadline = ctx.deadline("monitor")
    hv = connect(ctx, TEST_URI, deadline, 0.0)
    try:
        dom = Domain.lookup(hv, DomainIdentity("o7", None, "test"), 5.0)
        tag_domain(ctx, dom, deadline)
        assert dom.owner(5.0) == resource_owner(ctx)
        other = make_ctx("monitor", {"config": "/x", "hypervisor": TEST_URI}, state_dir,
                         environ={"OCF_RESOURCE_INSTANCE": "b"})
        tag_domain(other, dom, deadline)
        assert dom.owner(5.0) == resource_owner(other)
    finally:
        close(hv)
