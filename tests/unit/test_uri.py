"""libvirt URIs without libvirt, and libvirt.conf read as libvirt reads it."""

from __future__ import annotations

import pytest

from pyvirtualdomain.uri import (
    LibvirtConfError,
    default_uri,
    is_local_uri,
    parse_libvirt_conf,
    uri_problem,
)


def test_uris():
    assert uri_problem("qemu:///system") is None
    assert uri_problem("qemu+ssh://root@node2/system") is None
    assert "not a libvirt URI" in (uri_problem("garbage") or "")
    assert "unknown" in (uri_problem("bogus:///x") or "")
    assert "malformed host" in (uri_problem("qemu+tcp://[::1/system") or "")
    assert uri_problem("qemu+tcp://[::1]:16509/system") is None
    assert uri_problem("qemu+ssh://root@node-2.example:22/system") is None
    assert is_local_uri("qemu:///system") and not is_local_uri("qemu+tcp://10.0.0.1/system")
    assert default_uri("lxc", {"LIBVIRT_DEFAULT_URI": "test:///default"}).uri == \
        "test:///default"


@pytest.mark.parametrize("text,expected", [
    # issue 13 #10: the comment was glued onto the URI
    ('uri_default = "qemu:///system"  # note\n', "qemu:///system"),
    ("uri_default='qemu:///system'#x", "qemu:///system"),
    ('\t uri_default\t=\t"lxc:///system" ;\n', "lxc:///system"),
    ('# uri_default = "xen:///"\nuri_default = "qemu:///system"\n', "qemu:///system"),
    ('uri_aliases = [\n  "hail=qemu+ssh://root@hail.cloud.example.com/system", # one\n'
     '  "sleet=qemu+ssh://root@sleet.cloud.example.com/system",\n]\n'
     'uri_default = "qemu:///system"\n', "qemu:///system"),
    ('uri_default = """qemu:///system"""\n', "qemu:///system"),
    ('remote_mode = "legacy"\n', None),
])
def test_libvirt_conf_as_libvirt_reads_it(text, expected):
    assert parse_libvirt_conf(text, "libvirt.conf").get("uri_default") == expected


@pytest.mark.parametrize("text", [
    'uri_default = "qemu:///system\n',
    "uri_default = qemu:///system\n",
    'uri_default "qemu:///system"\n',
    'uri_default = "a" "b"\n',
    'uri_aliases = ["a", \n',
])
def test_a_malformed_libvirt_conf_is_an_error(text):
    with pytest.raises(LibvirtConfError, match="libvirt.conf line"):
        parse_libvirt_conf(text, "libvirt.conf")


def test_default_uri_reads_the_users_libvirt_conf(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert default_uri("kvm", env, euid=1000).uri == "qemu:///system"
    assert default_uri("lxc", env, euid=1000).uri == "lxc:///system"
    conf = tmp_path / "libvirt" / "libvirt.conf"
    conf.parent.mkdir()
    conf.write_text('uri_default = "test:///default"   # for the lab\n')
    got = default_uri("kvm", env, euid=1000)
    assert got.uri == "test:///default" and got.origin == f"uri_default in {conf}"
    conf.write_text('uri_default = "test:///default\n')
    with pytest.raises(LibvirtConfError):
        default_uri("kvm", env, euid=1000)
