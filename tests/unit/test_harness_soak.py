"""The fault soak's parts that need no cluster (tests/cluster/soak.py runs them for real): the
seeded schedule, the invariant checkers, the agent wrapper, the incremental oracle, and the
harness options the soak added (file binds, a small HA_RSCTMP, a monitor's check level, the
plain VM's oracle)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.harness.agentwrap import read_log, write_wrapper  # noqa: E402
from tests.harness.cluster import TWO_NODES, Layout, primitive_xml  # noqa: E402
from tests.harness.oracle import Oracle, OracleTail, check_lines  # noqa: E402
from tests.harness.soakcheck import (  # noqa: E402
    EventRecord,
    Failure,
    active_twice,
    explains,
    failures_from_cib_status,
    markdown_summary,
    percentile,
    recovery_table,
    stop_lies,
    twice_claims,
    unexplained,
)
from tests.harness.soakplan import (  # noqa: E402
    KINDS,
    MENU,
    MONITOR_TIMEOUT_S,
    make_schedule,
    schedule_from_json,
)

A = "3cfed56d-b2f5-4949-ba7a-8d1f62b776a2"
B = "9a1b7c2e-0000-4000-8000-000000000001"


def rec(boot: str, n: int) -> str:
    return f"ORACLE {boot} {n} {1.0 + n / 10:.2f}"


# -- the schedule ----------------------------------------------------------------------------


def test_a_seed_gives_the_same_schedule_every_time() -> None:
    a = make_schedule(7, 200)
    b = make_schedule(7, 200)
    assert a == b
    assert a != make_schedule(8, 200)
    # and a prefix of a longer run is the shorter run
    assert make_schedule(7, 50).events == a.events[:50]


def test_the_schedule_is_pinned() -> None:
    """A failing seed must replay the same faults, also after changes elsewhere: seed 1's
    first events are fixed here (change them only on purpose, and say so)."""
    s = make_schedule(1, 4)
    assert [e.describe() for e in s.events] == [
        "link_cut hold=16.5s",
        "libvirtd_freeze node=host-of:vm-guest1 hold=8.3s overlap(next after 8.5s)",
        "libvirtd_freeze node=pcmk-1 hold=29.4s",
        "qemu_kill vm-guest1",
    ]
    assert s.overlap_probability == 0.134


def test_a_long_schedule_covers_the_whole_menu_and_overlaps() -> None:
    for seed in (1, 2, 3):
        s = make_schedule(seed, 200)
        assert {e.kind for e in s.events} == set(KINDS), seed
        assert 0.10 <= s.overlap_probability <= 0.35
        overlapped = sum(e.overlap for e in s.events)
        assert 0 < overlapped < 200
        for e in s.events:
            if e.kind == "guest_hang":
                assert e.hold_s > MONITOR_TIMEOUT_S
            if e.kind in ("power_cut", "qemu_kill", "remoted_kill", "qga_kill"):
                assert e.hold_s == 0
        assert [e.index for e in s.events] == list(range(200))


def test_schedule_of_chosen_kinds_and_json_round_trip() -> None:
    s = make_schedule(5, 30, ("qemu_kill", "standby"))
    assert {e.kind for e in s.events} <= {"qemu_kill", "standby"}
    assert schedule_from_json(json.loads(json.dumps(s.to_json()))) == s
    assert sum(k.weight for k in MENU) > 0
    with pytest.raises(KeyError):
        make_schedule(5, 3, ("no-such-fault",))


# -- the oracle, read as it grows ------------------------------------------------------------


def test_oracle_tail_reads_only_whole_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "oracle"
    tail = OracleTail(path)
    assert tail.poll() == []  # no file yet
    with open(path, "w") as f:
        f.write(rec(A, 0) + "\n" + rec(A, 1)[:10])
    assert tail.poll() == []
    assert tail.checker.next_line == 1
    with open(path, "a") as f:
        f.write(rec(A, 1)[10:] + "\n" + rec(B, 0) + "\n")
    assert tail.poll() == []
    with open(path, "a") as f:
        f.write(rec(A, 2) + "\n")
    problems = tail.poll()
    assert any("two copies of the guest ran at once" in p for p in problems), problems
    assert tail.report.boot_ids == [A, B, A]
    # the same verdict as the whole-file checker
    assert check_lines(path.read_text().splitlines()).problems == tail.report.problems


def test_oracle_tail_follows_virtlogd_rotating_the_file(tmp_path: Path) -> None:
    """Found by the first 200-event soak (seed 1, event 140, 78 minutes in): libvirt writes a
    file chardev with append='on' through virtlogd, which at 2 MiB renamed the oracle file to
    "<name>.0" and started a new one. The tail kept reading the renamed path at its old
    offset, saw nothing more, and reported guest1 and vm-plain silent, a violation, while
    both guests wrote on."""
    path = tmp_path / "oracle"
    tail = OracleTail(path)
    path.write_text(rec(A, 0) + "\n")
    assert tail.poll() == []
    with open(path, "a") as f:
        f.write(rec(A, 1) + "\n")  # appended after the last poll, before the rotation
    path.rename(tmp_path / "oracle.0")
    path.write_text(rec(A, 2) + "\n" + rec(A, 3) + "\n")
    assert tail.poll() == []
    assert tail.checker.next_line == 4, "lines before or after the rotation were missed"
    with open(path, "a") as f:
        f.write(rec(B, 0) + "\n" + rec(A, 4) + "\n")  # two copies, across the rotation
    assert any("two copies" in p for p in tail.poll())
    # the whole-file reader sees the same lines, the rotated ones first
    assert len(Oracle(path).lines()) == 6
    assert check_lines(Oracle(path).lines()).problems == tail.report.problems


# -- Pacemaker's "active on 2 nodes" ---------------------------------------------------------


@pytest.mark.parametrize("line", [
    # Pacemaker 2.1.5 and 3.0's scheduler
    "Dec 04 01:50:00.123 pcmk-2 pacemaker-schedulerd[1234] (pcmk__log_transition_summary) "
    "error: ocf resource vm-guest2 might be active on 2 nodes (attempting recovery)",
    "pcmk-1 pacemaker-schedulerd[99] error: Untyped resource x might be active on 3 nodes "
    "(blocking)",
    "crm_resource: vm-guest1 is active on multiple nodes including pcmk-1: pcmk-2",
    "Resource vm-plain is active on 2 nodes (attempting recovery)",
])
def test_active_on_two_nodes_in_every_wording(line: str) -> None:
    assert active_twice("first line\n" + line + "\nlast line\n") == [line]


def test_active_on_one_node_is_fine() -> None:
    assert active_twice("Resource vm-plain is active on 1 nodes\n"
                        "notice: Calculated transition 5, saving inputs\n") == []


def test_a_claim_right_after_a_failed_migrate_to_is_attributed_to_it() -> None:
    """Pacemaker, after a failed migrate_to, assumes the resource may run on the target
    too (as the soak's first runs logged it): the claim names that migrate_to; one of
    another resource, or after the scheduler run ended, does not."""
    log = [
        "pcmk-2 pacemaker-schedulerd[9652] (unpack_rsc_op_failure) warning: Unexpected "
        "result (error) was recorded for migrate_to of vm-plain on pcmk-2 at Dec  4 "
        "02:09:38 2026 | rc=1 id=vm-plain_migrate_to_0",
        "pcmk-2 pacemaker-schedulerd[9652] (pcmk__primitive_create_actions) error: ocf "
        "resource vm-plain might be active on 2 nodes (attempting recovery)",
        "pcmk-2 pacemaker-schedulerd[9652] error: ocf resource vm-guest1 might be active on "
        "2 nodes (attempting recovery)",
        "pcmk-2 pacemaker-schedulerd[9652] (pcmk__log_transition_summary) notice: Calculated "
        "transition 30, saving inputs in /var/lib/pacemaker/pengine/pe-input-30.bz2",
        "pcmk-2 pacemaker-schedulerd[9652] error: ocf resource vm-plain might be active on 2 "
        "nodes (attempting recovery)",
    ]
    claims = twice_claims(log)
    assert [(c.rsc, c.after_failed_migrate_to) for c in claims] == [
        ("vm-plain", "pcmk-2"), ("vm-guest1", None), ("vm-plain", None)]
    # lines before ``start`` are context only
    assert [(c.rsc, c.after_failed_migrate_to) for c in twice_claims(log, 1)][:1] == [
        ("vm-plain", "pcmk-2")]
    assert twice_claims(log, 5) == []


# -- stop said 0 while the domain ran ----------------------------------------------------------


def test_stop_lies_only_for_stop_zero_with_processes_left() -> None:
    ok = {"action": "stop", "rc": 0, "left": [], "rsc": "vm-plain", "node": "pcmk-1"}
    failed = {"action": "stop", "rc": 1, "left": [{"pid": 5, "comm": "qemu-system-x86"}]}
    bad = {"action": "stop", "rc": 0, "rsc": "vm-plain", "node": "pcmk-1", "domain": "d",
           "t_end": 1.0, "left": [{"pid": 5, "comm": "qemu-system-x86"}]}
    monitor = {"action": "monitor", "rc": 0, "left": [{"pid": 5}]}
    lies = stop_lies([ok, failed, bad, monitor])
    assert len(lies) == 1 and "qemu-system-x86[5]" in lies[0] and "vm-plain on pcmk-1" in lies[0]


# -- failed operations and the events that explain them ---------------------------------------


def ev(kind: str, **kw: object) -> EventRecord:
    base: dict[str, object] = {"index": 0, "kind": kind, "t0": 100.0, "t_settled": 200.0,
                               "hosts": {"vm-guest1": "pcmk-1", "vm-guest2": "pcmk-2",
                                         "vm-plain": "pcmk-1"}}
    base.update(kw)
    return EventRecord(**base)  # type: ignore[arg-type]


def fail(rsc: str, op: str, node: str, rc: int, t: float = 150.0, status: int = 0) -> Failure:
    return Failure(rsc=rsc, op=op, node=node, rc=rc, status=status, t=t)


def test_a_killed_emulator_explains_its_own_monitor_only() -> None:
    e = ev("qemu_kill", rsc="vm-plain", node="pcmk-1")
    assert explains(e, fail("vm-plain", "monitor", "pcmk-1", 7))
    assert not explains(e, fail("vm-guest1", "monitor", "pcmk-1", 7))
    assert not explains(e, fail("vm-plain", "stop", "pcmk-1", 1))
    assert not explains(e, fail("vm-plain", "monitor", "pcmk-1", 7, t=500.0)), "outside"
    # a standby right after the kill, before a monitor saw it: nothing to migrate (seed 3)
    assert explains(e, fail("vm-plain", "migrate_to", "pcmk-1", 1))
    assert not explains(e, fail("vm-guest1", "migrate_to", "pcmk-1", 1))
    assert explains(ev("guest_hang", rsc="vm-plain", node="pcmk-1"),
                    fail("vm-plain", "migrate_to", "pcmk-1", 1, status=2))
    # known only to lie between two times: explained when the event overlaps them
    vague = fail("vm-plain", "monitor", "pcmk-1", 7, t=50.0)
    assert not explains(e, vague)
    assert explains(e, dataclasses.replace(vague, t_latest=120.0))
    assert not explains(e, dataclasses.replace(vague, t_latest=90.0))


def test_libvirtd_down_explains_starts_and_stops_there_not_monitors() -> None:
    for kind in ("libvirtd_kill", "libvirtd_freeze"):
        e = ev(kind, node="pcmk-1")
        assert explains(e, fail("vm-plain", "start", "pcmk-1", 1))
        assert explains(e, fail("vm-plain", "stop", "pcmk-1", 1, status=2))
        assert not explains(e, fail("vm-plain", "monitor", "pcmk-1", 1)), kind
        assert not explains(e, fail("vm-plain", "start", "pcmk-2", 1))
        # a migration from that node fails on the target too
        assert explains(e, fail("vm-plain", "migrate_from", "pcmk-2", 1))


def test_guest_node_failures_are_explained_by_what_touched_that_guest() -> None:
    e = ev("remoted_kill", rsc="vm-guest1", node="pcmk-1")
    assert explains(e, fail("guest1", "monitor", "pcmk-1", 1))
    assert explains(e, fail("dummy-g1", "monitor", "guest1", 7))
    assert not explains(e, fail("dummy-g2", "monitor", "guest2", 7))
    # a node event touches the guests that ran there
    p = ev("power_cut", node="pcmk-2")
    assert explains(p, fail("dummy-g2", "monitor", "guest2", 1))
    assert not explains(p, fail("guest1", "start", "pcmk-1", 1))
    assert explains(ev("link_cut"), fail("guest1", "start", "pcmk-1", 1))


def test_events_without_failures_explain_none_and_skipped_events_nothing() -> None:
    for kind in ("standby", "migrate", "pcmk_restart", "rsctmp_fill"):
        assert not explains(ev(kind, node="pcmk-1", rsc="vm-plain"),
                            fail("vm-plain", "start", "pcmk-1", 1)), kind
    skipped = ev("power_cut", node="pcmk-1", skipped="needs both nodes")
    assert not explains(skipped, fail("vm-plain", "stop", "pcmk-1", 1))
    f1 = fail("vm-plain", "monitor", "pcmk-1", 7)
    f2 = fail("vm-guest1", "monitor", "pcmk-1", 1)
    assert unexplained([f1, f2], [ev("qemu_kill", rsc="vm-plain", node="pcmk-1")]) == [f2]


def test_failures_are_read_from_the_cib_status() -> None:
    status = ET.fromstring("""<status>
      <node_state uname="pcmk-1"><lrm><lrm_resources><lrm_resource id="vm-plain">
        <lrm_rsc_op id="vm-plain_last_0" operation="monitor" rc-code="0" op-status="0"
                    last-rc-change="1700000000" interval="0"/>
        <lrm_rsc_op id="vm-plain_last_failure_0" operation="monitor" rc-code="7"
                    op-status="0" last-rc-change="1700000100" interval="10000"
                    exit-reason="gone"/>
      </lrm_resource></lrm_resources></lrm></node_state>
      <node_state uname="guest1"><lrm><lrm_resources><lrm_resource id="dummy-g1">
        <lrm_rsc_op id="dummy-g1_last_failure_0" operation="start" rc-code="1"
                    op-status="2" last-rc-change="1700000200" interval="0"/>
      </lrm_resource></lrm_resources></lrm></node_state></status>""")
    got = failures_from_cib_status(status)
    assert got == [Failure("vm-plain", "monitor", "pcmk-1", 7, 0, 1700000100.0, 10000, "gone"),
                   Failure("dummy-g1", "start", "guest1", 1, 2, 1700000200.0, 0, "")]
    # a probe that found it running is no failure
    probe = ET.fromstring("""<status><node_state uname="pcmk-2"><lrm><lrm_resources>
      <lrm_resource id="vm-plain"><lrm_rsc_op id="vm-plain_last_failure_0" operation="monitor"
        rc-code="0" op-status="0" last-rc-change="1700000300" interval="0"/></lrm_resource>
      </lrm_resources></lrm></node_state></status>""")
    assert failures_from_cib_status(probe) == []


def test_a_failed_migration_is_read_from_its_own_history_entry() -> None:
    """Pacemaker records a failed migrate_to only in <rsc>_migrate_to_0 (no last_failure):
    the soak's seed 2 run then took the "active on 2 nodes" line that followed for one no
    fault explains, though the qemu_kill of the guest 6 s before explained it. As the CIB
    held it then (2.1.5), and a pending and a successful migration beside it."""
    status = ET.fromstring("""<status>
      <node_state uname="pcmk-1"><lrm><lrm_resources><lrm_resource id="vm-plain">
        <lrm_rsc_op id="vm-plain_last_0" operation_key="vm-plain_stop_0" operation="stop"
                    rc-code="0" op-status="0" last-rc-change="1796420693" interval="0"/>
        <lrm_rsc_op id="vm-plain_migrate_to_0" operation_key="vm-plain_migrate_to_0"
                    operation="migrate_to" call-id="39" rc-code="1" op-status="0"
                    last-rc-change="1796420692" interval="0" exec-time="98"
                    exit-reason="domain pyvd-cl-plain is not running here"/>
      </lrm_resource></lrm_resources></lrm></node_state>
      <node_state uname="pcmk-2"><lrm><lrm_resources><lrm_resource id="vm-guest1">
        <lrm_rsc_op id="vm-guest1_migrate_from_0" operation="migrate_from" rc-code="0"
                    op-status="0" last-rc-change="1796420600" interval="0"/>
        <lrm_rsc_op id="vm-guest1_migrate_to_0" operation="migrate_to" rc-code="193"
                    op-status="-1" last-rc-change="1796420601" interval="0"/>
      </lrm_resource></lrm_resources></lrm></node_state></status>""")
    failed = Failure("vm-plain", "migrate_to", "pcmk-1", 1, 0, 1796420692.0, 0,
                     "domain pyvd-cl-plain is not running here")
    assert failures_from_cib_status(status) == [failed]
    assert explains(ev("qemu_kill", rsc="vm-plain", node="pcmk-1", t0=1796420686.0,
                       t_settled=1796420751.0), failed)


# -- the report ------------------------------------------------------------------------------


def test_percentiles_and_the_summary() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile(list(map(float, range(1, 101))), 95) == 95.0
    events = [{"kind": "qemu_kill", "skipped": None, "recovery_s": 10.0, "overlapped": False},
              {"kind": "qemu_kill", "skipped": None, "recovery_s": 20.0, "overlapped": True},
              {"kind": "qemu_kill", "skipped": "runs nowhere", "recovery_s": None},
              {"kind": "standby", "skipped": None, "recovery_s": 5.0}]
    table = recovery_table(events)
    assert [r["kind"] for r in table] == ["standby", "qemu_kill"]  # menu order
    q = table[1]
    assert (q["fired"], q["skipped"], q["overlapped"], q["p50"], q["max"]) == (2, 1, 1, 10.0,
                                                                               20.0)
    md = markdown_summary({"seed": 3, "agent": "ours", "events_fired": 3, "events_skipped": 1,
                           "events_planned": 4, "overlap_probability": 0.2, "duration_s": 99.0,
                           "agent_operations": 10, "invariant_checks": 20, "table": table,
                           "violations": [{"check": "oracle", "detail": "x", "event": 1}]})
    assert "| qemu_kill | 2 | 1 | 1 | 10.0 | 20.0 | 20.0 |" in md
    assert "- violations: 1" in md and "- [oracle] x (event 1)" in md


# -- the agent wrapper -----------------------------------------------------------------------


def _fake_agent(tmp_path: Path, rc: int) -> Path:
    agent = tmp_path / "FakeAgent"
    agent.write_text(f"#!/bin/sh\necho \"out $1\"\necho \"err $1\" >&2\nexit {rc}\n")
    agent.chmod(0o755)
    return agent


def _run_wrapper(wrapper: Path, action: str,
                 env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(wrapper), action], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", **env}, check=False)


def test_wrapper_passes_the_agent_through_and_logs_each_call(tmp_path: Path) -> None:
    log, lie = tmp_path / "ops.jsonl", tmp_path / "lie"
    lie.write_text("")
    wrapper = write_wrapper(tmp_path / "w" / "FakeAgent", _fake_agent(tmp_path, 7), log, lie)
    env = {"OCF_RESOURCE_INSTANCE": "vm-x", "OCF_RESKEY_CRM_meta_interval": "10000",
           "OCF_CHECK_LEVEL": "20"}
    proc = _run_wrapper(wrapper, "monitor", env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (7, "out monitor\n", "err monitor\n")
    _run_wrapper(wrapper, "meta-data", env)  # not logged
    recs, offset = read_log(log)
    assert offset == log.stat().st_size and len(recs) == 1
    r = recs[0]
    assert (r["rsc"], r["action"], r["rc"], r["interval_ms"], r["check_level"], r["agent"]) == \
        ("vm-x", "monitor", 7, 10000, "20", "FakeAgent")
    assert r["ms"] >= 0 and r["t_end"] >= r["t"] and r["node"] == os.uname().nodename


def test_wrapper_snapshots_the_domain_after_stop_zero(tmp_path: Path) -> None:
    log, lie = tmp_path / "ops.jsonl", tmp_path / "lie"
    lie.write_text("vm-liar\n")
    wrapper = write_wrapper(tmp_path / "w" / "FakeAgent", _fake_agent(tmp_path, 0), log, lie)
    config = tmp_path / "dom.xml"
    config.write_text("<domain type='qemu'>\n  <name>soak-unit-dom</name>\n</domain>\n")
    # a process that looks like the domain's qemu (comm and -name as qemu has them)
    fake = tmp_path / "qemu-system-x86_64"
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    emu = subprocess.Popen([str(fake), "-name", "guest=soak-unit-dom,debug-threads=on"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if Path(f"/proc/{emu.pid}/comm").read_text().startswith("qemu-system"):
                    break
            except OSError:
                pass
            time.sleep(0.05)
        env = {"OCF_RESOURCE_INSTANCE": "vm-x", "OCF_RESKEY_config": str(config)}
        assert _run_wrapper(wrapper, "stop", env).returncode == 0
        (r,), _ = read_log(log)
        assert r["domain"] == "soak-unit-dom"
        assert [p["pid"] for p in r["left"]] == [emu.pid], r
        assert stop_lies([r])
    finally:
        emu.kill()
        emu.wait()
    # nothing left: a true stop
    assert _run_wrapper(wrapper, "stop", env).returncode == 0
    recs, _ = read_log(log)
    assert recs[-1]["left"] == [] and not stop_lies(recs[-1:])
    # the self-test's liar: stop answers 0 without running the agent
    out = _run_wrapper(wrapper, "stop", {**env, "OCF_RESOURCE_INSTANCE": "vm-liar"})
    assert out.returncode == 0 and out.stdout == ""
    assert read_log(log)[0][-1]["lied"] is True


def test_wrapper_without_snapshot_only_times_the_stop(tmp_path: Path) -> None:
    log, lie = tmp_path / "ops.jsonl", tmp_path / "lie"
    wrapper = write_wrapper(tmp_path / "w" / "FakeAgent", _fake_agent(tmp_path, 0), log, lie,
                            snapshot=False)
    config = tmp_path / "dom.xml"
    config.write_text("<domain type='qemu'>\n  <name>soak-unit-dom</name>\n</domain>\n")
    env = {"OCF_RESOURCE_INSTANCE": "vm-x", "OCF_RESKEY_config": str(config)}
    assert _run_wrapper(wrapper, "stop", env).returncode == 0
    (r,), _ = read_log(log)
    assert (r["action"], r["rc"]) == ("stop", 0) and r["ms"] >= 0
    assert "left" not in r and "domain" not in r


# -- harness options the soak uses -------------------------------------------------------------


def test_layout_with_binds_survives_cluster_json() -> None:
    layout = dataclasses.replace(TWO_NODES, file_binds=(("/a/w", "/usr/lib/ocf/x"),),
                                 rsctmp_size="16m")
    data = json.loads(json.dumps(dataclasses.asdict(layout)))
    assert Layout.from_json(data) == layout
    assert Layout.from_json(json.loads(json.dumps(dataclasses.asdict(TWO_NODES)))) == TWO_NODES


def test_monitor_check_level_in_the_primitive() -> None:
    xml = primitive_xml("vm-plain", "PyVirtualDomain", {"config": "/x.xml"},
                        monitor_interval="10s", ops={"start": "60s", "monitor": "20s"},
                        monitor_attrs={"OCF_CHECK_LEVEL": "20"})
    root = ET.fromstring(xml)
    mon = root.find("./operations/op[@name='monitor']")
    assert mon is not None and mon.get("interval") == "10s"
    nv = mon.find("./instance_attributes/nvpair")
    assert nv is not None and (nv.get("name"), nv.get("value")) == ("OCF_CHECK_LEVEL", "20")
    start = root.find("./operations/op[@name='start']")
    assert start is not None and start.find("instance_attributes") is None


def test_plain_guest_oracle_option() -> None:
    from tests.harness.guest import ORACLE_CHANNEL, GuestOptions, _options_devices, options_cmdline

    opts = GuestOptions(agent=True, oracle=Path("/shared/plain.oracle"))
    args = options_cmdline(opts)
    assert "harness.oracle=1" in args
    assert "harness.modules=virtio_console" in args  # once, for the agent and the oracle
    dev = ET.fromstring(f"<devices>{_options_devices(opts)}</devices>")
    chans = {c.find("target").get("name"): c for c in dev.iter("channel")}  # type: ignore[union-attr]
    src = chans[ORACLE_CHANNEL].find("source")
    assert chans[ORACLE_CHANNEL].get("type") == "file"
    assert src is not None and src.get("path") == "/shared/plain.oracle"
    assert src.get("append") == "on"
    assert options_cmdline(GuestOptions()) == []


def test_a_node_fault_explains_a_migration_to_that_node() -> None:
    """Seed 2, event 188/189: libvirtd frozen on pcmk-1 while vm-plain ran on pcmk-2, then a
    move of vm-plain to pcmk-1: the migrate_to on pcmk-2 could not reach the target's libvirtd
    (rc 1). The freeze explains it, as it explains one away from pcmk-1."""
    freeze = ev("libvirtd_freeze", node="pcmk-1",
                hosts={"vm-guest1": "pcmk-1", "vm-guest2": "pcmk-2", "vm-plain": "pcmk-2"})
    assert explains(freeze, fail("vm-plain", "migrate_to", "pcmk-2", 1))
    assert explains(freeze, fail("vm-plain", "migrate_from", "pcmk-1", 1))
    # not the monitor on the other node, nor a start there
    assert not explains(freeze, fail("vm-plain", "monitor", "pcmk-2", 7))
    assert not explains(freeze, fail("vm-plain", "start", "pcmk-2", 1))


def test_a_violation_belongs_to_the_last_event_that_fired(tmp_path: Path) -> None:
    """A violation seen after a skipped event is reported against the last event that fired
    (seed 3's first run reported a failed migrate_to of a standby's migration against the
    next event, which had been skipped)."""
    from tests.cluster.soak import Soak, SoakConfig
    from tests.harness.soakcheck import EventRecord

    sched = make_schedule(3, 3, ("standby", "rsctmp_fill"))
    sched = dataclasses.replace(sched, events=tuple(dataclasses.replace(e, overlap=False)
                                                    for e in sched.events))
    soak = Soak(SoakConfig(seed=3, schedule=sched, out_dir=tmp_path, state_dir=tmp_path,
                           verbose=False))
    fired: list[int] = []

    def fire(ev: object) -> EventRecord:
        index = ev.index  # type: ignore[attr-defined]
        fired.append(index)
        return EventRecord(index, "x", skipped="runs nowhere now" if index == 1 else None)

    def judge(pending: list[EventRecord], cleanup: bool = True) -> None:
        if fired and fired[-1] == 1:
            soak.violation("unexplained-failure", "migrate_to of vm-guest1 on pcmk-1 rc 1")

    soak.fire = fire  # type: ignore[method-assign]
    soak.settle = lambda pending: None  # type: ignore[method-assign]
    soak.judge_failures = judge  # type: ignore[method-assign]
    soak.sleep = lambda seconds, open_records=None: None  # type: ignore[method-assign]
    soak._loop(time.monotonic())
    assert fired == [0, 1, 2]
    assert [(v.check, v.event) for v in soak.violations] == [("unexplained-failure", 0)]


def _run(agent: str, events: list[dict], violations: list[dict], stops: list[tuple[int, int]],
         seed: int = 2) -> dict:
    return {"seed": seed, "agent": agent, "events_fired": sum(e["skipped"] is None for e in events),
            "events": events, "violations": violations, "failures": [],
            "agent_ops": [{"action": "stop", "interval_ms": 0, "rc": rc, "ms": ms, "t": 100.0}
                          for rc, ms in stops],
            "oracles": {"guest1": "9 records, runs: a lines 0-4 counters 0-4; "
                                  "b lines 5-8 counters 0-3"}}


def _event(i: int, kind: str, recovery: float, down: float, skipped: str | None = None) -> dict:
    return {"index": i, "kind": kind, "t0": 100.0 + i, "t_settled": 110.0 + i,
            "skipped": skipped, "overlapped": False,
            "recovery_s": None if skipped else recovery,
            "guest_down_s": {} if skipped else {"guest1": down}}


def test_side_by_side_compares_only_the_events_both_runs_reached() -> None:
    from tests.harness.soakcheck import side_by_side
    ours = _run("ours", [_event(0, "migrate", 3.0, 0.0), _event(1, "qemu_kill", 10.0, 8.0),
                         _event(2, "standby", 5.0, 0.0), _event(3, "qemu_kill", 90.0, 80.0)],
                [{"check": "oracle", "detail": "late", "event": 3}], [(0, 100), (0, 300)])
    # VirtualDomain's run stopped by its time limit after event 2
    theirs = _run("virtualdomain",
                  [_event(0, "migrate", 4.0, 0.0), _event(1, "qemu_kill", 30.0, 25.0),
                   _event(2, "standby", 0.0, 0.0, skipped="node down")],
                  [{"check": "recovery", "detail": "vm-plain not back", "event": 1}],
                  [(1, 30000)])
    text = side_by_side(ours, theirs)
    assert "Events 0-2" in text
    # ours' violation came at event 3, which VirtualDomain's run never reached
    assert "| violations | **0** | **1** (recovery 1) |" in text
    assert "| events fired (skipped) | 3 (0) | 2 (1) |" in text
    assert "| guests down, s (guest1) | 8 | 25 |" in text
    assert "| stops: count, rc not 0; ms p50 / max | 2, 0 not 0; 100 / 300 | " \
           "1, 1 not 0; 30000 / 30000 |" in text
    assert "| qemu_kill | 1 / 1 | 10.0 / 30.0 | 10.0 / 30.0 |" in text
    assert "- [recovery] vm-plain not back (event 1)" in text
    assert "[oracle]" not in text
    with pytest.raises(ValueError):
        side_by_side(ours, _run("virtualdomain", [], [], [], seed=3))


def test_side_by_side_counts_no_boot_for_a_guest_that_never_ran() -> None:
    from tests.harness.soakcheck import side_by_side
    ours = _run("ours", [_event(0, "migrate", 3.0, 0.0)], [], [])
    theirs = _run("virtualdomain", [_event(0, "migrate", 3.0, 0.0)], [], [])
    theirs["oracles"] = {"guest1": "0 records, runs: none"}
    text = side_by_side(ours, theirs)
    assert "| boots per 100 events, whole run (guest1) | 200 | 0 |" in text, text
