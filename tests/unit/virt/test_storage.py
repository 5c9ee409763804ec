"""Where a path lives."""

from __future__ import annotations

from pyvirtualdomain.virt.storage import SHARED_FILESYSTEMS, filesystem_of


def test_filesystem_of():
    assert filesystem_of("/proc/self") == "proc"
    assert filesystem_of("/sys/kernel") == "sysfs"
    assert filesystem_of("/proc") not in SHARED_FILESYSTEMS
