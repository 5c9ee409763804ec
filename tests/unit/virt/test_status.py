"""libvirtd's status files, read for the owner tag when libvirt cannot be asked."""

from __future__ import annotations

import os

from pyvirtualdomain.owner import Owner
from pyvirtualdomain.virt.domxml import prepared_xml
from pyvirtualdomain.virt.status import scan_status_files, status_dir

OURS = Owner("vm1", "PyVirtualDomain", "prod")


def _status(name: str, owner: Owner | None) -> str:
    live = prepared_xml(f"<domain type='kvm'><name>{name}</name><uuid>"
                        "6f1c1a4a-4f3b-4a0b-8c1d-2e3f40516273</uuid></domain>".encode(), "/x",
                        owner=owner)
    return f"<domstatus state='running' pid='4242'>{live}</domstatus>\n"


def test_status_dirs_of_the_system_uris():
    assert status_dir("qemu:///system") == "/run/libvirt/qemu"
    assert status_dir("lxc:///system") == "/run/libvirt/lxc"
    assert status_dir("qemu+ssh://node2/system") is None
    assert status_dir("qemu:///session") is None


def test_scan_finds_only_this_resources_domains(tmp_path):
    (tmp_path / "web1.xml").write_text(_status("web1", OURS))
    (tmp_path / "web2.xml").write_text(_status("web2", Owner("vm2", "PyVirtualDomain")))
    (tmp_path / "db.xml").write_text(_status("db", None))
    (tmp_path / "web1.xml.new").write_text(_status("web3", OURS))  # not a status file
    scan = scan_status_files("qemu:///system", OURS, str(tmp_path))
    assert [i.name for i in scan.found] == ["web1"]
    assert scan.exists and scan.complete


def test_scan_of_a_missing_directory_and_of_an_unreadable_file(tmp_path):
    scan = scan_status_files("qemu:///system", OURS, str(tmp_path / "none"))
    assert (scan.found, scan.exists) == ((), False)
    (tmp_path / "x.xml").mkdir()  # open() fails: the scan is not complete
    scan = scan_status_files("qemu:///system", OURS, str(tmp_path))
    assert scan.exists and not scan.complete
    os.rmdir(tmp_path / "x.xml")
    assert scan_status_files("qemu:///system", OURS, str(tmp_path)).complete
