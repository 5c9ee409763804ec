"""Reading the user's domain XML."""

from __future__ import annotations

import os

import pytest

from pyvirtualdomain.errors import ConfigError, NotInstalled, PermissionProblem
from pyvirtualdomain.ocf import OCFExit
from pyvirtualdomain.owner import Owner
from pyvirtualdomain.virt.domxml import load_domain, owner_of_status, prepared_xml

from ..conftest import GOLDEN, golden


def test_identity(write_config):
    p = write_config("<domain type='kvm' xmlns:q='http://libvirt.org/schemas/domain/qemu/1.0'>"
                     "<name> vm1 </name><uuid>6F1C1A4A4F3B4A0B8C1D2E3F40516273</uuid>"
                     "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>"
                     "<q:commandline/></domain>")
    _, ident = load_domain(str(p))
    assert ident.name == "vm1" and ident.virt_type == "kvm"
    assert ident.uuid == "6f1c1a4a-4f3b-4a0b-8c1d-2e3f40516273"
    assert ident.emulator == "/usr/bin/qemu-system-x86_64"


@pytest.mark.parametrize("text,rc,needle", [
    ("", OCFExit.ERR_CONFIGURED, "empty"),
    ("<domain type='kvm'><name>x</name>", OCFExit.ERR_CONFIGURED, "not well-formed"),
    ("<domain type='kvm'></domain>", OCFExit.ERR_CONFIGURED, "no <name>"),
    ("<network><name>x</name></network>", OCFExit.ERR_CONFIGURED, "<network>"),
    ("<domain><name>x</name></domain>", OCFExit.ERR_CONFIGURED, "no type"),
    ("<domain type='kvm'><name>x</name><uuid>nope</uuid></domain>", OCFExit.ERR_CONFIGURED,
     "not a UUID"),
    ("<!DOCTYPE d [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><domain type='kvm'><name>&e;</name>"
     "</domain>", OCFExit.ERR_CONFIGURED, ""),
])
def test_bad_configs(write_config, text, rc, needle):
    p = write_config(text)
    with pytest.raises(ConfigError) as info:
        load_domain(str(p))
    assert info.value.rc == rc and needle in info.value.reason and str(p) in info.value.reason


def test_missing_and_relative(tmp_path):
    with pytest.raises(NotInstalled) as info:
        load_domain(str(tmp_path / "absent.xml"))
    assert info.value.rc == OCFExit.ERR_INSTALLED
    with pytest.raises(ConfigError):
        load_domain("relative.xml")
    with pytest.raises(ConfigError):
        load_domain("")
    with pytest.raises(ConfigError):
        load_domain(str(tmp_path))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_unreadable_config_is_permission_problem(write_config):
    p = write_config("<domain type='kvm'><name>x</name></domain>")
    os.chmod(p, 0)
    pid = os.fork()
    if pid == 0:  # child: become nobody and try
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                load_domain(str(p))
            except PermissionProblem:
                os._exit(0)
            except BaseException:  # noqa: BLE001 - any other outcome fails the test
                os._exit(2)
            os._exit(1)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_with_uuid_keeps_the_rest(write_config):
    raw = b"<domain type='test'>\n  <name>a</name>\n  <memory>1</memory>\n</domain>"
    out = prepared_xml(raw, "/x", uuid="6f1c1a4a-4f3b-4a0b-8c1d-2e3f40516273")
    assert "<uuid>6f1c1a4a-4f3b-4a0b-8c1d-2e3f40516273</uuid>" in out and "<memory>1" in out


def test_uuid_pinning_golden():
    """The XML start hands libvirt for a config without <uuid>: only the <uuid> element is
    new; comments, user namespaces, entities and text are kept."""
    data = (GOLDEN / "uuid_pinning.in.xml").read_bytes()
    out = prepared_xml(data, "/etc/vms/web1.xml", uuid="6f1c1a4a-4f3b-4a0b-8c1d-2e3f40516273")
    assert out == golden("uuid_pinning.out.xml", out)


OWNER = Owner("vm-web1", "PyVirtualDomain", "prod")


def test_owner_tag_golden():
    """The XML start hands libvirt: the owner tag joins the user's own metadata (another
    application's element kept), everything else as in the file."""
    data = (GOLDEN / "uuid_pinning.in.xml").read_bytes()
    out = prepared_xml(data, "/etc/vms/web1.xml", owner=OWNER)
    assert out == golden("owner_tag.out.xml", out)


def test_owner_tag_replaces_a_dumped_one_and_adds_metadata_where_none_is():
    """A config dumped from a running guest carries its owner tag: start replaces it (one
    owner per domain). A config without <metadata> gets one after <name>/<uuid>."""
    dumped = prepared_xml(b"<domain type='test'><name>a</name><uuid>"
                          b"6f1c1a4a-4f3b-4a0b-8c1d-2e3f40516273</uuid></domain>", "/x",
                          owner=Owner("old", "PyVirtualDomain"))
    assert dumped.index("<uuid>") < dumped.index("<metadata>")
    again = prepared_xml(dumped.encode(), "/x", owner=OWNER)
    assert again.count("pyvd:owner") == 1 and 'instance="vm-web1"' in again, again
    assert 'instance="old"' not in again


def test_owner_of_a_status_file():
    """libvirtd's status file wraps the live <domain> in <domstatus>: the tag and identity
    are read from it; a file without the tag (another application's domain) gives None."""
    live = prepared_xml(b"<domain type='kvm'><name>web1</name><uuid>"
                        b"6F1C1A4A-4F3B-4A0B-8C1D-2E3F40516273</uuid><devices><emulator>"
                        b"/usr/bin/qemu-system-x86_64</emulator></devices></domain>", "/x",
                        owner=OWNER)
    status = f"<domstatus state='running' pid='42'><monitor path='/x'/>{live}</domstatus>"
    ident, owner = owner_of_status(status.encode())
    assert owner == OWNER
    assert (ident.name, ident.uuid, ident.virt_type, ident.emulator) == (
        "web1", "6f1c1a4a-4f3b-4a0b-8c1d-2e3f40516273", "kvm", "/usr/bin/qemu-system-x86_64")
    assert owner_of_status(b"<domstatus><domain type='kvm'><name>x</name></domain>"
                           b"</domstatus>") is None
    assert owner_of_status(b"not xml") is None


# -- the identity without lxml (expat), the same as with it ----------------------------------

SAME_AS_LXML = [
    b"<domain type='kvm'><name>vm1</name><uuid>6f1c1a4a-4f3b-4a0b-8c1d-2e3f40516273</uuid>"
    b"<devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>",
    b"<?xml version='1.0' encoding='UTF-8'?>\n<domain type='qemu'><name>a&amp;b</name></domain>",
    b"<domain type='kvm'><name><![CDATA[v<m]]></name></domain>",
    b"<domain type='kvm'><name><!-- c -->vm</name></domain>",  # lxml: .text is None
    b"<domain type='kvm'><name>v<b/>m</name></domain>",  # .text stops at the child
    b"<domain type='kvm'><name/><name>second</name></domain>",  # the first one counts
    b"<domain type='kvm'><q:name xmlns:q='urn:q'>ns</q:name><name>plain</name></domain>",
    b"<domain xmlns='urn:x' type='kvm'><name>x</name></domain>",  # root {urn:x}domain
    b"<domain q:type='kvm' xmlns:q='urn:q'><name>x</name></domain>",  # no plain type
    b"<domain type='kvm'><devices/><devices><emulator>/e</emulator></devices></domain>",
    b"<domain type='kvm'><name>x</name><metadata><name>inner</name></metadata></domain>",
    "<domain type='kvm'><name>v\u00e9m</name></domain>".encode(),
    "<?xml version='1.0' encoding='ISO-8859-1'?><domain type='kvm'><name>v\u00e9m</name>"
    "</domain>".encode("latin-1"),
    b"\xef\xbb\xbf<domain type='kvm'><name>bom</name></domain>",
    "<?xml version='1.0' encoding='ISO-8859-15'?><domain type='kvm'><name>\u20ac</name>"
    "</domain>".encode("iso-8859-15"),
]

LEFT_TO_LXML = [
    b"<domain type='kvm'><name>x</name>",  # not well-formed: lxml's message
    b"<!DOCTYPE d [<!ENTITY e 'vm'>]><domain type='kvm'><name>&e;</name></domain>",
    b"<domain type='kvm'><?pi x?><name>x</name></domain>",
    b"<a>" * 300 + b"</a>" * 300,
]


@pytest.mark.parametrize("data", SAME_AS_LXML)
def test_expat_reads_what_lxml_reads(data):
    from pyvirtualdomain.virt import domxml

    fast = domxml._expat_fields(data)
    assert fast is not None
    assert fast == domxml._lxml_fields(data, "/x.xml")


@pytest.mark.parametrize("data", LEFT_TO_LXML)
def test_what_expat_might_read_otherwise_is_left_to_lxml(data):
    from pyvirtualdomain.virt import domxml

    assert domxml._expat_fields(data) is None


def test_the_identity_needs_no_lxml(write_config):
    """A stop, a probe or a migration reads only the identity: lxml is not imported for it
    (its import cost each of them more than the parse)."""
    import subprocess
    import sys

    p = write_config("<domain type='kvm'><name>vm1</name>"
                     "<uuid>6f1c1a4a-4f3b-4a0b-8c1d-2e3f40516273</uuid></domain>")
    code = ("import sys; sys.modules['lxml'] = None\n"
            "from pyvirtualdomain.virt.domxml import load_domain\n"
            f"print(load_domain({str(p)!r})[1].uuid)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "6f1c1a4a-4f3b-4a0b-8c1d-2e3f40516273"


@pytest.mark.parametrize("text", [
    "6F1C1A4A4F3B4A0B8C1D2E3F40516273", "6f1c1a4a-4f3b-4a0b-8c1d-2e3f40516273",
    "{6f1c1a4a-4f3b-4a0b-8c1d-2e3f40516273}", "urn:uuid:6f1c1a4a-4f3b-4a0b-8c1d-2e3f40516273",
    "6f1c1a4a4f3b-4a0b-8c1d2e3f-40516273", " 6f1c1a4a4f3b4a0b8c1d2e3f40516273 ",
    "uuid:6f1c1a4a4f3b4a0b8c1d2e3f40516273", "urn:6f1c1a4a4f3b4a0b8c1d2e3f40516273",
    "nope", "", "6f1c1a4a4f3b4a0b8c1d2e3f4051627", "6f1c1a4a4f3b4a0b8c1d2e3f405162733",
    "6f1c1a4a4f3b4a0b8c1d2e3f4051627g", "6f1c1a4a4f3b4a0b8c1d2e3f4051627 ",
])
def test_canonical_uuid_agrees_with_the_uuid_module(text):
    import uuid

    from pyvirtualdomain.virt.domxml import canonical_uuid

    try:
        expected: str | None = str(uuid.UUID(text.strip()))
    except ValueError:
        expected = None
    assert canonical_uuid(text) == expected
