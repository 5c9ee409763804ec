"""The lock-manager warning of validate-all (OCF_CHECK_LEVEL=10)."""

from __future__ import annotations

import io

from pyvirtualdomain.features.disk_locking import lock_manager, shared_disks
from pyvirtualdomain.virt.devices import Disk

from .. import inprocess as actions
from ..conftest import make_ctx


def test_lock_manager_from_qemu_conf(tmp_path):
    conf = tmp_path / "qemu.conf"
    assert lock_manager(str(conf)) is None
    conf.write_text('#lock_manager = "lockd"\nuser = "root"\n')
    assert lock_manager(str(conf)) is None
    conf.write_text('lock_manager = "lockd"   # virtlockd\n')
    assert lock_manager(str(conf)) == "lockd"
    conf.write_text('lock_manager = "nop"\n')
    assert lock_manager(str(conf)) is None


def test_which_disks_count_as_shared(tmp_path):
    local = tmp_path / "disk.raw"
    local.write_bytes(b"")
    found = shared_disks((Disk("file", str(local)), Disk("block", "/dev/mapper/mpatha"),
                          Disk("network", "rbd"), Disk("volume", "pool/v")))
    assert found == ["/dev/mapper/mpatha", "rbd network disk"]


def test_validate_warns_at_level_10_only(write_config, state_dir):
    cfg = write_config("<domain type='test'><name>dl</name><memory>8192</memory>"
                       "<os><type>hvm</type></os><devices><disk type='block'>"
                       "<source dev='/dev/mapper/shared-lun'/><target dev='vda'/></disk>"
                       "</devices></domain>")
    for level, warned in (("0", False), ("10", lock_manager() is None)):
        log = io.StringIO()
        r = actions.validate_all(make_ctx("validate-all", {"config": str(cfg),
                                                           "hypervisor": "test:///default"},
                                          state_dir, environ={"OCF_CHECK_LEVEL": level},
                                          stream=log))
        assert r.rc == 0, r
        assert ("no lock manager" in log.getvalue()) == warned, log.getvalue()
