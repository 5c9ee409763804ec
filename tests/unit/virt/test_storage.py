"""Where a path lives."""

from __future__ import annotations

from pyvirtualdomain.virt.storage import filesystem_of, on_shared_storage


def test_filesystem_of():
    assert filesystem_of("/proc/self") == "proc"
    assert filesystem_of("/sys/kernel") == "sysfs"
    assert on_shared_storage("/proc") is False
