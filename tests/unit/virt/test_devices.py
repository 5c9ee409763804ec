"""What the agent reads from a domain XML beyond its identity."""

from __future__ import annotations

from pyvirtualdomain.virt.devices import Disk, guest_devices, referenced_resources


def test_guest_devices():
    xml = b"""<domain type='kvm'><name>h</name><devices>
      <disk type='file' device='disk'><source file='/srv/vm/h.qcow2'/></disk>
      <disk type='block'><source dev='/dev/mapper/mpatha'/></disk>
      <disk type='network'><source protocol='rbd' name='pool/img'/></disk>
      <disk type='file' device='cdrom'><source file='/iso/x.iso'/></disk>
      <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
      <watchdog model='i6300esb' action='pause'/>
    </devices></domain>"""
    d = guest_devices(xml, "/x.xml")
    assert d.guest_agent and d.watchdog_action == "pause"
    assert d.disks == (Disk("file", "/srv/vm/h.qcow2"), Disk("block", "/dev/mapper/mpatha"),
                       Disk("network", "rbd"))
    bare = guest_devices(b"<domain type='kvm'><name>b</name><devices>"
                         b"<watchdog model='i6300esb'/></devices></domain>", "/x.xml")
    assert not bare.guest_agent and bare.watchdog_action == "reset" and bare.disks == ()


def test_referenced_resources():
    xml = b"""<domain type='kvm'><name>r</name><devices>
      <disk type='volume'><source pool='images' volume='r.qcow2'/></disk>
      <interface type='network'><source network='lan'/></interface>
      <interface type='bridge'><source bridge='br0'/></interface>
    </devices></domain>"""
    found = referenced_resources(xml, "/x.xml")
    assert found.pools == ("images",) and found.networks == ("lan",)
