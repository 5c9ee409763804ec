"""Fixtures for cluster tests: real corosync + Pacemaker clusters (tests/harness/cluster.py)
with our agents installed where only their Pacemaker sees them.

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

from tests.harness.cluster import DEFAULT_STATE_DIR, ONE_NODE, Cluster, ClusterNode, Layout
from tests.harness.common import CLEAN_PATH, HarnessError
from tests.harness.twohosts import SharedHostLock

TOOLS = ("corosync", "pacemakerd", "cibadmin", "crm_mon", "crm_resource", "libvirtd",
         "virtlogd", "nsenter", "unshare", "ip", "apt-get", "dpkg-deb", "stonith_admin")


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


def started_cluster(request: pytest.FixtureRequest, layout: Layout) -> Iterator[Cluster]:
    """A started cluster for the requesting module, stopped again afterwards (a teardown
    that leaves anything behind fails the module). Use as ``for c in started_cluster(...)``
    inside a fixture."""
    # One state dir per module: its logs stay for a post-mortem until the module runs again.
    cluster = Cluster(DEFAULT_STATE_DIR / request.module.__name__.rsplit(".", 1)[-1], layout)
    cluster.start()  # stops what it started when it fails
    print(f"\ncluster {cluster.names} up in {cluster.started_in_s:.1f}s "
          f"(state in {cluster.dir})")
    try:
        yield cluster
    finally:
        try:
            done = cluster.stop()
        except HarnessError as exc:
            pytest.fail(f"cluster teardown: {exc}")
        print("cluster teardown: " + "; ".join(done))


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, cluster_host_lock: None) -> Iterator[ClusterNode]:
    """The one-node cluster's node (fencing off)."""
    for c in started_cluster(request, ONE_NODE):
        yield c.nodes[0]
