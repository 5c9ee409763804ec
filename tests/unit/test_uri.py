"""libvirt URIs without libvirt."""

from __future__ import annotations

from pyvirtualdomain.uri import default_uri, is_local_uri, uri_problem


def test_uris():
    assert uri_problem("qemu:///system") is None
    assert uri_problem("qemu+ssh://root@node2/system") is None
    assert "not a libvirt URI" in (uri_problem("garbage") or "")
    assert "unknown" in (uri_problem("bogus:///x") or "")
    assert "malformed host" in (uri_problem("qemu+tcp://[::1/system") or "")
    assert uri_problem("qemu+tcp://[::1]:16509/system") is None
    assert uri_problem("qemu+ssh://root@node-2.example:22/system") is None
    assert is_local_uri("qemu:///system") and not is_local_uri("qemu+tcp://10.0.0.1/system")
    assert default_uri("kvm", {}) in ("qemu:///system",) or default_uri("kvm", {})
    assert default_uri("lxc", {"LIBVIRT_DEFAULT_URI": "test:///default"}) == "test:///default"
