"""Bounded libvirt calls."""

from __future__ import annotations

import pytest

from pyvirtualdomain import errors
from pyvirtualdomain.virt.connection import bounded


def test_bounded_times_out_without_waiting_for_the_call():
    import threading
    import time

    import libvirt
    release = threading.Event()
    t0 = time.monotonic()
    with pytest.raises(errors.HypervisorTimeout):
        bounded(lambda: release.wait(10), 0.2, "hang", libvirt)
    assert time.monotonic() - t0 < 1.0
    release.set()


def test_a_zero_bound_does_not_call_a_healthy_daemon_hung():
    from pyvirtualdomain.virt.connection import Hypervisor, import_libvirt

    libvirt = import_libvirt()
    conn = libvirt.open("test:///default")
    try:
        hv = Hypervisor("test:///default", conn, libvirt)
        assert hv.call(conn.getLibVersion, 0.0, "version") > 0
        assert not hv.hung
    finally:
        conn.close()
