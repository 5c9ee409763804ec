"""tests/harness/busyguest.py without a guest: the heartbeat reader reaches a unix socket
whose path is longer than sun_path (a cluster node's directory below a checkout at
/check/work/main: the evacuation test found no heartbeat there)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from tests.harness.busyguest import _connect_unix


def test_a_socket_beyond_sun_path_is_reached(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 40)
    deep.mkdir(parents=True)
    path = deep / "pyvd-evac-ours-0.sock"
    assert len(str(path)) > 108
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fd = os.open(deep, os.O_PATH | os.O_DIRECTORY)
    try:
        server.bind(f"/proc/self/fd/{fd}/{path.name}")
    finally:
        os.close(fd)
    server.listen(1)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            try:
                client.connect(str(path))
                raise AssertionError("the plain connect was expected to fail on this path")
            except OSError:
                pass
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            _connect_unix(client, path)
            conn, _ = server.accept()
            conn.close()
    finally:
        server.close()
