"""A watchdog with action dump: the dump file libvirt leaves is the trace a monitor finds."""

from __future__ import annotations

import os
import time

import pytest

from pyvirtualdomain.errors import AgentError
from pyvirtualdomain.features.watchdog import auto_dump_path, check_watchdog_dump

from ..conftest import make_ctx


def test_auto_dump_path_from_qemu_conf(tmp_path):
    conf = tmp_path / "qemu.conf"
    assert auto_dump_path(str(conf)) == "/var/lib/libvirt/qemu/dump"
    conf.write_text('# dumps go to the big disk\nauto_dump_path = "/srv/dumps"  # 2 TB\n')
    assert auto_dump_path(str(conf)) == "/srv/dumps"


def test_a_dump_since_the_start_is_a_fired_watchdog(tmp_path, state_dir):
    ctx = make_ctx("monitor", {"config": "/x.xml"}, state_dir)
    started = time.time()
    old = tmp_path / "12-wd-guest-2026-11-29-10:00:00"
    old.write_text("")
    os.utime(old, (started - 3600,) * 2)
    check_watchdog_dump(ctx, "wd-guest", 12, started, str(tmp_path))  # an older one: not us
    (tmp_path / "9-other-2026-11-30-10:00:00").write_text("")
    check_watchdog_dump(ctx, "wd-guest", 12, started, str(tmp_path))  # another domain's
    (tmp_path / "12-wd-guest-2026-11-30-10:00:00").write_text("")
    with pytest.raises(AgentError, match="watchdog fired"):
        check_watchdog_dump(ctx, "wd-guest", 12, started, str(tmp_path))


def test_a_dump_of_a_domain_sharing_the_first_20_characters_is_not_ours(tmp_path, state_dir):
    """Issue 20 #6: libvirt names a dump by the domain's id and the first 20 characters of its
    name; customer-a-webserver-02's dump failed the monitor of customer-a-webserver-01. Only
    this domain's id with its short name and libvirt's time stamp count."""
    ctx = make_ctx("monitor", {"config": "/x.xml"}, state_dir)
    started = time.time() - 5
    (tmp_path / "8-customer-a-webserver-2026-11-30-10:00:00").write_text("")  # id 8: the -02
    (tmp_path / "7-customer-a-webserver-2026-11-30-10:00:00.bak").write_text("")
    (tmp_path / "17-customer-a-webserver-2026-11-30-10:00:00").write_text("")
    check_watchdog_dump(ctx, "customer-a-webserver-01", 7, started, str(tmp_path))
    (tmp_path / "7-customer-a-webserver-2026-11-30-10:00:01").write_text("")
    with pytest.raises(AgentError, match="watchdog fired"):
        check_watchdog_dump(ctx, "customer-a-webserver-01", 7, started, str(tmp_path))
