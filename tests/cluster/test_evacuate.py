"""The CI case of bench/evacuate.py (issue 24): two busy-guest VMs under our agent on pcmk-1
of the two-node cluster, pcmk-1 put in standby: both must arrive on pcmk-2 by live migration
(migrate_to and migrate_from, no start) and keep their boot ids. Outcome and reboots only: the
times are the benchmark's (docs/benchmarks-evacuation.md), never a test's."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.harness.cluster import TWO_NODES, Cluster
from tests.harness.common import bench_module
from tests.harness.guest import VIRT_TYPE_ENV, GuestArtifacts, build_artifacts

from .conftest import started_cluster

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def two_nodes(request: pytest.FixtureRequest, cluster_host_lock: None) -> Iterator[Cluster]:
    yield from started_cluster(request, TWO_NODES)


def test_two_guests_leave_a_node_in_standby_by_live_migration(two_nodes: Cluster) -> None:
    arts: GuestArtifacts = build_artifacts()
    virt_type = os.environ.get(VIRT_TYPE_ENV, "").strip() or "qemu"
    result = bench_module("evacuate").run_one(two_nodes, "ours", "unset", 2, arts, virt_type)
    assert result.reboots == 0, result
    assert result.migrated == 2, result
    assert len(result.downtime_ms) == 2 and all(d >= 0 for d in result.downtime_ms), result
