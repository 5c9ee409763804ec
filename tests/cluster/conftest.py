"""Fixtures for cluster tests: a real corosync + Pacemaker node (tests/harness/cluster.py),
one per test module, with our agents installed where only its Pacemaker sees them.

The machine-wide harness lock is held for the whole session (other harness users drive
libvirtd and the process table too); every cluster is stopped by pid and its namespaces
deleted at the end of its module, whatever happened, and a teardown that leaves anything
behind fails the run."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from tests.harness.cluster import DEFAULT_STATE_DIR, ClusterNode
from tests.harness.common import CLEAN_PATH, HarnessError
from tests.harness.twohosts import SharedHostLock

TOOLS = ("corosync", "pacemakerd", "cibadmin", "crm_mon", "crm_resource", "libvirtd",
         "virtlogd", "nsenter", "unshare", "ip", "apt-get", "dpkg-deb")


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def cluster_host_lock() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("cluster tests run corosync, Pacemaker and libvirtd as root")
    missing = [t for t in TOOLS if shutil.which(t, path=CLEAN_PATH) is None]
    if missing:
        pytest.fail(f"not installed: {', '.join(missing)} (make deps-system)")
    # A CI job killed by SIGTERM still tears the cluster down (through the fixtures).
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        with SharedHostLock():
            yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, cluster_host_lock: None) -> Iterator[ClusterNode]:
    # One state dir per module: its logs stay for a post-mortem until the module runs again.
    node = ClusterNode(DEFAULT_STATE_DIR / request.module.__name__.rsplit(".", 1)[-1])
    node.start()  # stops what it started when it fails
    print(f"\ncluster node {node.node_name} up in {node.started_in_s:.1f}s "
          f"(state in {node.state_dir})")
    try:
        yield node
    finally:
        try:
            done = node.stop()
        except HarnessError as exc:
            pytest.fail(f"cluster teardown: {exc}")
        print("cluster teardown: " + "; ".join(done))
