"""The fault soak in CI (tests/cluster/soak.py; docs/soak.md): a short fixed-seed run against
our agents must show no violation at all, and a run whose agent lies (stop answers 0 without
stopping) must be caught, so the soak is shown able to fail.

The full runs (200 events and more: ``make soak SEED=...``) are not part of CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.soak import SOAK_OUT, Soak, SoakConfig
from tests.harness.soakplan import make_schedule

pytestmark = pytest.mark.cluster

# 10 events of 9 kinds (power cut, migration, standby, libvirtd killed, pacemaker-remoted
# killed, qemu-guest-agent killed, Pacemaker restarted, a guest hung, HA_RSCTMP full), three
# of them overlapping the next; chosen for the most kinds in a CI-sized run (about 6 minutes
# here; `make soak` runs 200). tests/unit/test_harness_soak.py pins the schedule generator.
CI_SEED = 105
CI_EVENTS = 10
# Its first (only) event is a standby of the node that runs vm-plain: with vm-plain's stop
# lying and its migration off, Pacemaker "stops" it there and starts it on the other node.
SELF_TEST_SEED = 9


def _report(result: dict[str, object]) -> str:
    lines = [f"{v['check']}: {v['detail']}" for v in result["violations"]]  # type: ignore[attr-defined]
    return "\n".join(lines) + (f"\nerror: {result['error']}" if result["error"] else "")


def test_short_soak_has_no_violation(cluster_host_lock: None) -> None:
    out = SOAK_OUT / "ci"
    result = Soak(SoakConfig(seed=CI_SEED, events=CI_EVENTS, out_dir=out)).run()
    assert result["error"] is None, _report(result)
    assert result["violations"] == [], _report(result)
    assert result["events_fired"] >= 7, result["events"]
    assert result["agent_operations"] > 0 and result["invariant_checks"] > 0
    assert Path(out / f"{CI_SEED}.json").is_file() and Path(out / f"{CI_SEED}.md").is_file()
    # every guest wrote its oracle all along
    for name, summary in result["oracles"].items():  # type: ignore[attr-defined]
        assert "records" in summary and not summary.startswith("0 records"), (name, summary)


def test_self_test_a_lying_stop_breaks_the_oracle(cluster_host_lock: None) -> None:
    sched = make_schedule(SELF_TEST_SEED, 1, ("standby",))
    assert sched.events[0].node == "host-of:vm-plain", sched.events
    cfg = SoakConfig(seed=SELF_TEST_SEED, schedule=sched, lie_stop=("vm-plain",),
                     plain_allow_migrate=False, recovery_bound_s=60.0,
                     out_dir=SOAK_OUT / "ci", name=f"{SELF_TEST_SEED}-self-test")
    result = Soak(cfg).run()
    checks = {v["check"] for v in result["violations"]}  # type: ignore[attr-defined]
    details = _report(result)
    assert "oracle" in checks, details
    assert "two copies of the guest ran at once" in details, details
    assert "stop-0-while-running" in checks, details
    # and still nothing is left behind
    assert "leak" not in checks, details
