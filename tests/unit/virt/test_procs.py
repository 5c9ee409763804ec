"""Recognising a domain's emulator process by its command line."""

from __future__ import annotations

from pyvirtualdomain.virt import procs
from pyvirtualdomain.virt.domxml import DomainIdentity

UUID = "8f1c0d52-5d1e-4c41-9a55-0d1f3f1e2a10"


def qemu(name: str, uuid: str = UUID) -> list[str]:
    return ["/usr/bin/qemu-system-x86_64", "-name", f"guest={name},debug-threads=on",
            "-S", "-uuid", uuid, "-m", "128"]


def test_qemu_by_uuid_when_both_know_it():
    ident = DomainIdentity("web", UUID, "kvm")
    assert procs.matches(ident, "qemu-system-x86", qemu("web"))
    assert not procs.matches(ident, "qemu-system-x86",
                             qemu("web", "00000000-0000-4000-8000-000000000000"))


def test_qemu_by_name_with_commas_doubled():
    ident = DomainIdentity("a,b", None, "kvm")
    assert procs.matches(ident, "qemu-system-x86", qemu("a,,b"))
    assert not procs.matches(ident, "qemu-system-x86", qemu("a"))


def test_the_emulator_named_in_the_xml_counts():
    ident = DomainIdentity("web", None, "kvm", "/opt/qemu/bin/my-qemu")
    argv = ["/opt/qemu/bin/my-qemu", "-name", "guest=web"]
    assert procs.matches(ident, "my-qemu", argv)
    assert not procs.matches(DomainIdentity("web", None, "kvm"), "my-qemu", argv)


def test_a_container_by_its_controller():
    ident = DomainIdentity("ct1", None, "lxc")
    argv = ["/usr/lib/libvirt/libvirt_lxc", "--name", "ct1", "--console", "25"]
    assert procs.matches(ident, "libvirt_lxc", argv)
    assert not procs.matches(ident, "libvirt_lxc", ["/usr/lib/libvirt/libvirt_lxc", "-n", "ct2"])
    assert not procs.matches(ident, "bash", ["bash", "--name", "ct1"])


def test_psutil_is_available_here():
    assert procs.available()  # make deps installs it; the agent copes without (monitor tests)
