"""The owner tag's pure parts: which resource a tag names, its XML form, the cluster name."""

from __future__ import annotations

from pyvirtualdomain.owner import (
    Owner,
    local_cluster_name,
    owner_element,
    parse_owner_element,
)


def test_same_resource_needs_instance_and_agent_and_tolerates_an_unknown_cluster():
    ours = Owner("vm1", "PyVirtualDomain", "prod")
    assert ours.same_resource(Owner("vm1", "PyVirtualDomain", "prod"))
    assert ours.same_resource(Owner("vm1", "PyVirtualDomain", ""))  # written without corosync
    assert not ours.same_resource(Owner("vm1", "PyVirtualDomain", "test"))
    assert not ours.same_resource(Owner("vm2", "PyVirtualDomain", "prod"))
    assert not ours.same_resource(Owner("vm1", "PyLXCDomain", "prod"))


def test_element_round_trip_with_awkward_values():
    """libvirt returns the element without its prefix (getMetadata); quotes, ampersands and
    angle brackets in a resource name survive the trip."""
    owner = Owner('vm "a" & <b>', "PyLXCDomain", "c1")
    assert parse_owner_element(owner_element(owner)) == owner
    assert parse_owner_element(owner_element(Owner("x", "PyVirtualDomain"))) == \
        Owner("x", "PyVirtualDomain", "")
    assert parse_owner_element("<other instance='x' agent='y'/>") is None
    assert parse_owner_element("<owner instance='x'/>") is None  # no agent: not ours
    assert parse_owner_element("not xml") is None


def test_cluster_name_from_corosync_conf(tmp_path):
    conf = tmp_path / "corosync.conf"
    assert local_cluster_name(str(conf)) == ""
    conf.write_text("totem {\n    version: 2\n    cluster_name: hacluster\n"
                    "    transport: knet\n}\n")
    assert local_cluster_name(str(conf)) == "hacluster"
