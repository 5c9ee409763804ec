"""The randomized fault soak: the two-node cluster with fencing (tests/harness/cluster.py) runs
three guests, each writing the never-twice oracle, while a seeded schedule of faults
(tests/harness/soakplan.py) hits it, hundreds in a row, sometimes before the last one has
settled; invariants are checked all along, not only at the end.

The guests:

* ``vm-guest1``: guest node ``guest1``, a TCG VM running pacemaker-remoted
  (tests/harness/guestnode.py), ``ocf:custom:PyVirtualDomain``, live migration, the Pacemaker
  Remote guide's operations; ``dummy-g1`` runs on it;
* ``vm-guest2``: guest node ``guest2``, a libvirt-lxc container running pacemaker-remoted,
  ``ocf:custom:PyLXCDomain``; ``dummy-g2`` runs on it; its init writes the oracle to a file;
* ``vm-plain``: a plain VM (no guest node), ``ocf:custom:PyVirtualDomain`` with a guest agent
  and an ``OCF_CHECK_LEVEL=20`` monitor, live migration.

With ``--agent virtualdomain`` the three are ``ocf:heartbeat:VirtualDomain`` instead (the
container with ``hypervisor=lxc:///system``), everything else the same: a measurement.

The invariants (a broken one is a *violation*; the run's result lists each):

* the oracle of every guest: never two copies at once, no counter going back, no torn line
  (checked continuously, file by file as they grow);
* every guest runs again (Pacemaker says started, the guest nodes are online with their
  Dummies, the oracle writes) within a bound once the fault is undone;
* Pacemaker never logs that a resource is, or might be, active on two nodes;
* no failed operation is left that the event does not explain (tests/harness/soakcheck.py);
* the agent never answered stop 0 while the domain's qemu or container still ran on that
  node (a wrapper around the agent, tests/harness/agentwrap.py, looks the moment it answers);
* nothing is left behind at teardown: process, domain, namespace, mount, cgroup.

Output: ``build/soak/<seed>.json`` (``<seed>-virtualdomain.json``): every event, every agent
operation (the wrapper's record: rc and duration; and every result line of Pacemaker's log),
every invariant check; and ``<seed>.md``, the summary (events by kind, recovery times
p50/p95/max by kind, violations).

Command line (``make soak SEED=... EVENTS=... TIME_LIMIT=...``)::

    .venv/bin/python -m tests.cluster.soak --seed 1 --events 200 [--time-limit 21600]
        [--agent ours|virtualdomain] [--lie-stop vm-plain] [--plain-no-migrate]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from tests.harness.agentwrap import read_log, wrapper_paths, write_wrapper
from tests.harness.cluster import (
    DEFAULT_STATE_DIR,
    DOMAIN_PREFIX,
    OCF_RESOURCE_D,
    TWO_NODES,
    UPLINK,
    Cluster,
    ClusterNode,
    ClusterStatus,
    leftover_cgroups,
    operation_results,
)
from tests.harness.common import (
    REPO_ROOT,
    HarnessError,
    all_pids,
    descendants,
    pid_alive,
    read_cmdline,
)
from tests.harness.guest import GuestOptions, build_artifacts, detect_virt_type, domain_xml
from tests.harness.guestagent import agent_channel_state, guest_exec
from tests.harness.guestnode import GUIDE_MONITOR_INTERVAL, GUIDE_OPS, GuestNodeVM
from tests.harness.nsnode import netns_exists
from tests.harness.oracle import OracleTail
from tests.harness.soakcheck import (
    EventRecord,
    Failure,
    explains,
    failures_from_cib_status,
    markdown_summary,
    recovery_table,
    side_by_side,
    stop_lies,
    twice_claims,
)
from tests.harness.soakplan import (
    VM_GUEST1,
    VM_GUEST2,
    VM_PLAIN,
    VM_RESOURCES,
    Event,
    Schedule,
    make_schedule,
)
from tests.harness.twohosts import SharedHostLock

SOAK_OUT = REPO_ROOT / "build" / "soak"
STATE_DIR = DEFAULT_STATE_DIR / "soak"
GUEST1, GUEST2 = "guest1", "guest2"
DUMMY1, DUMMY2 = "dummy-g1", "dummy-g2"
GUESTS = (GUEST1, GUEST2)
DOMAINS = {VM_GUEST1: f"{DOMAIN_PREFIX}guest1", VM_GUEST2: f"{DOMAIN_PREFIX}guest2",
           VM_PLAIN: f"{DOMAIN_PREFIX}plain"}
# The oracle of each guest, by the name the report uses.
ORACLE_NAMES = {VM_GUEST1: GUEST1, VM_GUEST2: GUEST2, VM_PLAIN: "plain"}
OURS = {"qemu": ("custom", "PyVirtualDomain"), "lxc": ("custom", "PyLXCDomain")}
THEIRS = {"qemu": ("heartbeat", "VirtualDomain"), "lxc": ("heartbeat", "VirtualDomain")}
PLAIN_OPS = {"start": "60s", "stop": "60s", "monitor": "20s", "migrate_to": "60s",
             "migrate_from": "60s"}
CT_OPS = {"start": "60s", "stop": "60s", "monitor": "30s"}
# Fencing the peer after a cut link: fencing pcmk-1 waits this long, so pcmk-1 fences first
# and survives (what pcmk_delay_base or priority-fencing-delay do in real two-node clusters).
FENCE_DELAY_BASE = "pcmk-1:5s;pcmk-2:0s"
RSCTMP_SIZE = "16m"
# A guest whose oracle wrote nothing for this long is down.
STALE_S = 3.0
CHECK_INTERVAL_S = 2.0
# Oracle problems reported one by one per guest; the rest as a count.
ORACLE_REPORT_MAX = 5
POLL_S = 1.0
# The cluster is not called settled before this long after an event fired or its fault was
# undone (s): a recurring monitor (every 10 s) must have had its chance to see it. A killed
# guest agent shows after three level-20 monitors.
OBSERVE_S = {"qga_kill": 60.0}
OBSERVE_DEFAULT_S = 15.0
# How long a node Pacemaker should have fenced may stay off before the soak says it was
# not fenced (and powers it on itself).
FENCE_BOUND_S = 150.0
PCMK_STOP_BOUND_S = 180.0


class SoakAbort(RuntimeError):
    """The cluster did not recover even after the soak's repair: the run cannot go on."""


@dataclass
class SoakConfig:
    seed: int = 1
    events: int = 200
    time_limit_s: float | None = None
    agent: str = "ours"  # "ours" or "virtualdomain"
    out_dir: Path = SOAK_OUT
    state_dir: Path = STATE_DIR
    # Every guest back within this long once its fault is undone (s).
    recovery_bound_s: float = 240.0
    # The self-test: these resources' stop answers 0 without stopping anything.
    lie_stop: tuple[str, ...] = ()
    plain_allow_migrate: bool = True
    kinds: tuple[str, ...] | None = None
    schedule: Schedule | None = None
    name: str | None = None  # the output's file name (default: the seed, and the agent)
    verbose: bool = True

    def out_name(self) -> str:
        if self.name:
            return self.name
        return f"{self.seed}" + ("" if self.agent == "ours" else f"-{self.agent}")


@dataclass
class Undo:
    """Undoing a fault: runs at ``due`` (or once ``ready()`` holds, when given, and not
    before ``earliest``)."""

    record: EventRecord
    what: str
    fn: Callable[[], None]
    due: float  # monotonic
    ready: Callable[[], bool] | None = None
    earliest: float = 0.0


@dataclass
class Violation:
    check: str
    detail: str
    t: float = field(default_factory=time.time)
    event: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "detail": self.detail, "t": round(self.t, 3),
                "event": self.event}


def _starttime(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()[19]


def _signal_if_same(pid: int, start: str | None, sig: int) -> bool:
    """Signal ``pid`` only if it is still the process that had start time ``start``."""
    if start is None or _starttime(pid) != start:
        return False
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


class Checker(threading.Thread):
    """The continuous invariants: reads the oracles, the agents' wrapper log and Pacemaker's
    logs as they grow (files only: it never talks to the cluster)."""

    def __init__(self, soak: Soak) -> None:
        super().__init__(name="soak-checker", daemon=True)
        self.soak = soak
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.tails = {name: OracleTail(path) for name, path in soak.oracle_paths.items()}
        now = time.time()
        self.last_seen: dict[str, float] = {name: now for name in self.tails}
        self.last_count: dict[str, int] = {name: 0 for name in self.tails}
        self.down_since: dict[str, float | None] = {name: None for name in self.tails}
        self.down: dict[str, list[tuple[float, float | None]]] = {n: [] for n in self.tails}
        self.ops_offset = 0
        self.log_offsets: dict[str, int] = {n.name: 0 for n in soak.cluster.nodes}
        # the last lines of each log already read: context for the next stretch
        self.log_context: dict[str, list[str]] = {n.name: [] for n in soak.cluster.nodes}
        self.checks: list[list[Any]] = []
        self.oracle_problems: dict[str, int] = {name: 0 for name in self.tails}
        self.agent_ops: list[dict[str, Any]] = []
        self.pcmk_results: list[dict[str, Any]] = []

    def run(self) -> None:
        while not self.stop_event.wait(CHECK_INTERVAL_S):
            try:
                self.check_once()
            except Exception as exc:  # noqa: BLE001 - reported, the thread goes on
                self.soak.violation("checker", f"the checker failed: {exc!r}")

    def check_once(self) -> None:
        now = time.time()
        with self.lock:
            for name, tail in self.tails.items():
                problems = tail.poll()
                self.checks.append([round(now, 2), f"oracle:{name}", not problems])
                for p in problems:
                    n = self.oracle_problems[name] = self.oracle_problems[name] + 1
                    # two copies interleave every line: the first few say it
                    if n <= ORACLE_REPORT_MAX:
                        self.soak.violation("oracle", f"{name}: {p}")
                count = tail.checker.next_line
                if count > self.last_count[name]:
                    self.last_count[name] = count
                    self.last_seen[name] = now
                    since = self.down_since[name]
                    if since is not None:
                        self.down[name].append((since, now))
                        self.down_since[name] = None
                elif self.down_since[name] is None and now - self.last_seen[name] > STALE_S:
                    self.down_since[name] = self.last_seen[name]
            recs, self.ops_offset = read_log(self.soak.ops_log, self.ops_offset)
            self.agent_ops.extend(recs)
            lies = stop_lies(recs)
            self.checks.append([round(now, 2), "stop-0-while-running", not lies])
            for lie in lies:
                self.soak.violation("stop-0-while-running", lie)
            for node in self.soak.cluster.nodes:
                text, end = self._read_log(node, self.log_offsets[node.name])
                self.log_offsets[node.name] = end
                context = self.log_context[node.name]
                lines = text.splitlines()
                claims = twice_claims(context + lines, len(context))
                self.log_context[node.name] = (context + lines)[-400:]
                self.checks.append([round(now, 2), f"active-on-2-nodes:{node.name}",
                                    not claims])
                for c in claims:
                    if c.after_failed_migrate_to is None:
                        self.soak.violation("active-on-2-nodes", f"{node.name}: {c.line.strip()}")
                    else:
                        # judged with the failed migrate_to (Soak.judge_failures)
                        self.soak.twice_after_migrate.append((now, node.name, c))
                for r in operation_results(text):
                    self.pcmk_results.append({"logged_on": node.name, "op": r.operation,
                                              "rsc": r.rsc, "node": r.node, "rc": r.rc,
                                              "result": r.result, "seen": round(now, 1)})

    @staticmethod
    def _read_log(node: ClusterNode, offset: int) -> tuple[str, int]:
        try:
            with open(node.pacemaker_log, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return "", offset
        end = data.rfind(b"\n") + 1
        return data[:end].decode("utf-8", "replace"), offset + end

    def fresh(self, name: str, now: float | None = None) -> bool:
        with self.lock:
            return (now or time.time()) - self.last_seen[name] <= STALE_S

    def down_within(self, name: str, t0: float, t1: float) -> float:
        """Seconds the guest wrote nothing (down) between t0 and t1."""
        with self.lock:
            spans = list(self.down[name])
            if self.down_since[name] is not None:
                spans.append((self.down_since[name], None))
        total = 0.0
        for a, b in spans:
            b = b if b is not None else t1
            total += max(0.0, min(b, t1) - max(a, t0))
        return total


class Soak:
    def __init__(self, config: SoakConfig) -> None:
        self.cfg = config
        self.schedule = config.schedule or make_schedule(config.seed, config.events,
                                                         config.kinds)
        self.ours = config.agent == "ours"
        if config.agent not in ("ours", "virtualdomain"):
            raise ValueError(f"agent {config.agent!r}: ours or virtualdomain")
        self.run_dir = Path(config.state_dir) / "soak-run"
        self.ops_log = self.run_dir / "agent-ops.jsonl"
        self.lie_file = self.run_dir / "lie-stop"
        agents = OURS if self.ours else THEIRS
        self.agents = agents
        wrapped = wrapper_paths(self.run_dir, Path(config.state_dir),
                                sorted(set(agents.values())), OCF_RESOURCE_D)
        binds = [(str(wrapper), str(target)) for wrapper, _, target in wrapped]
        self._wrappers = [(wrapper, real) for wrapper, real, _ in wrapped]
        layout = dataclasses.replace(TWO_NODES, file_binds=tuple(binds),
                                     rsctmp_size=RSCTMP_SIZE)
        self.cluster = Cluster(Path(config.state_dir), layout)
        self.oracle_paths: dict[str, Path] = {}
        self.violations: list[Violation] = []
        self._vlock = threading.Lock()
        self.records: list[EventRecord] = []
        self.event_results: list[dict[str, Any]] = []
        self.undos: list[Undo] = []
        self.failures_seen: set[tuple[str, str, str, float]] = set()
        self.failures: list[dict[str, Any]] = []
        # "active on 2 nodes" lines logged right after a failed migrate_to of the resource
        self.twice_after_migrate: list[tuple[float, str, Any]] = []
        self.twice_judged: list[dict[str, Any]] = []
        self.settle_checks: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.vm: GuestNodeVM | None = None
        self.checker: Checker | None = None
        self.t_start = 0.0
        self.last_judged = 0.0  # epoch of the last look at the failures (or of the start)
        self.current_event: int | None = None

    # -- reporting ---------------------------------------------------------------------------

    def log(self, text: str) -> None:
        if self.cfg.verbose:
            print(f"[soak {time.strftime('%H:%M:%S')}] {text}", flush=True)

    def violation(self, check: str, detail: str, event: int | None = None) -> None:
        v = Violation(check, detail, event=event if event is not None else self.current_event)
        with self._vlock:
            self.violations.append(v)
        self.log(f"VIOLATION [{check}] {detail}")

    # -- set-up ------------------------------------------------------------------------------

    def _write_wrappers(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        self.lie_file.write_text("".join(f"{r}\n" for r in self.cfg.lie_stop))
        for wrapper, real in self._wrappers:
            write_wrapper(wrapper, real, self.ops_log, self.lie_file)

    def _agent(self, driver: str) -> tuple[str, str]:
        return self.agents[driver]

    def set_up(self) -> None:
        cl = self.cluster
        self.last_judged = time.time()
        # a crashed earlier run's cluster first (its files are about to go)
        cl.stop()
        self._write_wrappers()
        cl.start()
        self.log(f"cluster up in {cl.started_in_s:.1f}s ({cl.dir})")
        node = cl.live()
        node.crm_resource("--resource", "fence-pyvd", "--set-parameter", "pcmk_delay_base",
                          "--parameter-value", FENCE_DELAY_BASE, check=True)
        avoid = GUESTS
        # guest1: the guest node VM
        vm = GuestNodeVM(cl, GUEST1, DOMAINS[VM_GUEST1], TWO_NODES.guest_address(31),
                         "52:54:00:50:00:31", "5079d0de-0000-4000-8000-000000000031")
        vm.write()
        self.vm = vm
        self.oracle_paths[GUEST1] = vm.oracle.path
        prov, agent = self._agent("qemu")
        node.add_primitive(VM_GUEST1, agent, {"config": str(vm.config),
                                              "hypervisor": "qemu:///system",
                                              "migration_transport": "tcp"},
                           provider=prov,
                           meta={"remote-node": GUEST1, "remote-addr": vm.address,
                                 "remote-connect-timeout": "30s", "allow-migrate": "true"},
                           monitor_interval=GUIDE_MONITOR_INTERVAL, ops=GUIDE_OPS,
                           avoid_nodes=avoid, discover_avoided=False)
        # guest2: the container guest node
        ct_config = node.write_guest_node_xml(DOMAINS[VM_GUEST2], TWO_NODES.guest_address(32),
                                              "52:54:00:50:00:32")
        self.oracle_paths[GUEST2] = node.guest_dir(DOMAINS[VM_GUEST2]) / "oracle"
        prov, agent = self._agent("lxc")
        node.add_primitive(VM_GUEST2, agent, {"config": str(ct_config),
                                              "hypervisor": "lxc:///system",
                                              "shutdown_mode": "signal"},
                           provider=prov,
                           meta={"remote-node": GUEST2,
                                 "remote-addr": TWO_NODES.guest_address(32),
                                 "remote-connect-timeout": "30s"},
                           monitor_interval="10s", ops=CT_OPS, avoid_nodes=avoid,
                           discover_avoided=False)
        # the plain VM: a guest agent, a level-20 monitor, live migration
        arts = build_artifacts()
        virt_type = detect_virt_type(arts, uri=node.uri("qemu"))
        domain = DOMAINS[VM_PLAIN]
        oracle = cl.shared_dir / f"{domain}.oracle"
        self.oracle_paths["plain"] = oracle
        xml = domain_xml(domain, "graceful", arts, virt_type,
                         f"/var/log/libvirt/qemu/{domain}.console.log",
                         uuid="5079d0de-0000-4000-8000-000000000051",
                         options=GuestOptions(agent=True, oracle=oracle))
        plain_config = cl.shared_dir / f"{domain}.xml"
        plain_config.write_text(xml)
        prov, agent = self._agent("qemu")
        node.add_primitive(VM_PLAIN, agent, {"config": str(plain_config),
                                             "hypervisor": "qemu:///system",
                                             "migration_transport": "tcp"},
                           provider=prov,
                           meta={"allow-migrate": "true" if self.cfg.plain_allow_migrate
                                 else "false"},
                           monitor_interval="10s", ops=PLAIN_OPS,
                           monitor_attrs={"OCF_CHECK_LEVEL": "20"}, avoid_nodes=avoid,
                           discover_avoided=False)
        node.add_primitive(DUMMY1, "Dummy", {}, provider="pacemaker", monitor_interval="10s",
                           op_timeout="20s", avoid_nodes=(*cl.names, GUEST2),
                           prefer_node=GUEST1)
        node.add_primitive(DUMMY2, "Dummy", {}, provider="pacemaker", monitor_interval="10s",
                           op_timeout="20s", avoid_nodes=(*cl.names, GUEST1),
                           prefer_node=GUEST2)
        self.checker = Checker(self)
        self.checker.start()
        t0 = time.monotonic()
        if not self.wait_healthy(time.monotonic() + 180.0):
            raise HarnessError("the guests did not come up within 180 s:\n"
                               + self._crm_mon_text())
        self.log(f"guests up {time.monotonic() - t0:.1f}s after the resources were added")

    # -- the cluster's state -----------------------------------------------------------------

    def status(self) -> ClusterStatus | None:
        try:
            return self.cluster.live().status()
        except (HarnessError, ET.ParseError):
            return None

    def _crm_mon_text(self) -> str:
        try:
            return self.cluster.live().crm_mon_text("-r", "--show-detail")
        except HarnessError as exc:
            return f"(crm_mon: {exc})"

    def host(self, st: ClusterStatus | None, rsc: str) -> str | None:
        if st is None:
            return None
        nodes = [n for n in st.started_on(rsc) if n in self.cluster.names]
        return nodes[0] if len(nodes) == 1 else None

    def node_up(self, st: ClusterStatus | None, name: str) -> bool:
        return (st is not None and st.online(name) and not st.nodes[name].unclean
                and self.cluster.node(name).running())

    def whole(self, st: ClusterStatus | None) -> bool:
        """Both cluster nodes up."""
        return all(self.node_up(st, n) for n in self.cluster.names)

    def unhealthy(self, st: ClusterStatus | None) -> list[str]:
        """What keeps the cluster from being settled (empty: every guest runs, both nodes are
        up)."""
        if st is None:
            return ["no cluster node answers"]
        why = [f"{n} not up" for n in self.cluster.names if not self.node_up(st, n)]
        for rsc in VM_RESOURCES:
            if self.host(st, rsc) is None:
                why.append(f"{rsc} not started on one node ({st.started_on(rsc)})")
        for guest, dummy in ((GUEST1, DUMMY1), (GUEST2, DUMMY2)):
            if not st.online(guest):
                why.append(f"{guest} offline")
            elif st.started_on(dummy) != (guest,):
                why.append(f"{dummy} not started on {guest}")
        assert self.checker is not None
        now = time.time()
        for name in ORACLE_NAMES.values():
            if not self.checker.fresh(name, now):
                why.append(f"{name}'s oracle silent")
        return why

    def wait_healthy(self, end: float) -> bool:
        while True:
            self.pump()
            if not self.undos and not self.unhealthy(self.status()):
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(POLL_S)

    # -- undoing faults ----------------------------------------------------------------------

    def pump(self) -> None:
        """Run the undos that are due."""
        now = time.monotonic()
        for u in list(self.undos):
            ready = u.ready() if u.ready is not None else False
            if now >= u.due or (ready and now >= u.earliest):
                self.undos.remove(u)
                try:
                    u.fn()
                    u.record.notes.append(f"undone: {u.what}")
                except Exception as exc:  # noqa: BLE001 - reported
                    u.record.notes.append(f"undo failed: {u.what}: {exc}")
                    self.log(f"event {u.record.index}: undo {u.what} failed: {exc}")
                u.record.t_undone = time.time()

    def sleep(self, seconds: float, open_records: list[EventRecord] | None = None) -> None:
        end = time.monotonic() + seconds
        while True:
            self.pump()
            if open_records:
                self.observe(open_records)
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(POLL_S, left))

    def observe(self, open_records: list[EventRecord]) -> tuple[ClusterStatus | None, list[str]]:
        """The cluster's state now, noted on the events not settled yet: whether they saw it
        unsettled, and when it was last back."""
        st = self.status()
        why = self.unhealthy(st)
        now = time.time()
        for r in open_records:
            if why:
                r.outage = True
                r.t_back = None
            elif r.t_back is None:
                r.t_back = now
        return st, why

    # -- events ------------------------------------------------------------------------------

    def _resolve_node(self, st: ClusterStatus | None, sel: str | None) -> str | None:
        if sel is None:
            return None
        if sel.startswith("host-of:"):
            return self.host(st, sel.split(":", 1)[1])
        if sel.startswith("other-of:"):
            h = self.host(st, sel.split(":", 1)[1])
            return None if h is None else self.cluster.other(h).name
        return sel

    def fire(self, ev: Event) -> EventRecord:
        st = self.status()
        rec = EventRecord(index=ev.index, kind=ev.kind, rsc=ev.rsc, overlapped=ev.overlap)
        rec.hosts = {r: h for r in VM_RESOURCES if (h := self.host(st, r)) is not None}
        rec.t0 = time.time()
        node_name = self._resolve_node(st, ev.node)
        rec.node = node_name
        if ev.node is not None and node_name is None:
            rec.skipped = f"{ev.node}: that resource runs nowhere now"
            return rec
        try:
            getattr(self, f"_ev_{ev.kind}")(ev, rec, st)
        except HarnessError as exc:
            rec.skipped = rec.skipped or f"could not fire: {exc}"
        return rec

    def _need_whole(self, rec: EventRecord, st: ClusterStatus | None) -> bool:
        if not self.whole(st) or any(u.record.kind in ("power_cut", "link_cut", "pcmk_restart")
                                     for u in self.undos):
            rec.skipped = "needs both nodes up (one is down or going down)"
            return False
        return True

    def _node(self, rec: EventRecord) -> ClusterNode:
        assert rec.node is not None
        return self.cluster.node(rec.node)

    def _undo(self, rec: EventRecord, what: str, fn: Callable[[], None], after_s: float,
              ready: Callable[[], bool] | None = None, earliest_s: float = 0.0) -> None:
        now = time.monotonic()
        self.undos.append(Undo(rec, what, fn, now + after_s, ready, now + earliest_s))

    def _ev_migrate(self, ev: Event, rec: EventRecord, st: ClusterStatus | None) -> None:
        assert ev.rsc is not None
        src = self.host(st, ev.rsc)
        if src is None:
            rec.skipped = f"{ev.rsc} runs nowhere"
            return
        dst = self.cluster.other(src).name
        if not self.node_up(st, dst):
            rec.skipped = f"{dst} is not up"
            return
        rec.node = dst
        rec.notes.append(f"{ev.rsc}: {src} -> {dst}")
        self.cluster.live().crm_resource("--move", "--resource", ev.rsc, "--node", dst,
                                         check=True)

        def arrived() -> bool:
            return self.host(self.status(), ev.rsc or "") == dst

        self._undo(rec, f"crm_resource --clear {ev.rsc}",
                   lambda: self.cluster.live().crm_resource("--clear", "--resource",
                                                            ev.rsc or "", check=True),
                   ev.hold_s, arrived)

    def _ev_standby(self, ev: Event, rec: EventRecord, st: ClusterStatus | None) -> None:
        name = rec.node or ""
        if not self._need_whole(rec, st):
            return
        live = self.cluster.live()
        live.exec(["crm_attribute", "--node", name, "--name", "standby", "--update", "on"],
                  check=True)
        self._undo(rec, f"{name} out of standby",
                   lambda: self.cluster.live().exec(["crm_attribute", "--node", name, "--name",
                                                     "standby", "--delete"], check=True),
                   ev.hold_s)

    def _ev_power_cut(self, ev: Event, rec: EventRecord, st: ClusterStatus | None) -> None:
        if not self._need_whole(rec, st):
            return
        node = self._node(rec)
        killed = node.power_cut()
        rec.notes.append(f"power cut: {len(killed)} processes killed")

    def _ev_libvirtd_kill(self, ev: Event, rec: EventRecord, st: ClusterStatus | None) -> None:
        node = self._node(rec)
        if node.pid("libvirtd") is None:
            rec.skipped = f"libvirtd does not run on {node.name}"
            return
        pid = node.kill_libvirtd()
        rec.notes.append(f"libvirtd {pid} killed")

        def restart() -> None:
            if node.pid("anchor") is not None and node.pid("libvirtd") is None:
                node.restart_libvirtd()

        self._undo(rec, f"libvirtd restarted on {node.name}", restart, ev.hold_s)

    def _ev_libvirtd_freeze(self, ev: Event, rec: EventRecord,
                            st: ClusterStatus | None) -> None:
        node = self._node(rec)
        pid = node.pid("libvirtd")
        if pid is None:
            rec.skipped = f"libvirtd does not run on {node.name}"
            return
        start = _starttime(pid)
        os.kill(pid, signal.SIGSTOP)
        rec.notes.append(f"libvirtd {pid} stopped")
        self._undo(rec, f"libvirtd {pid} continued",
                   lambda: None if _signal_if_same(pid, start, signal.SIGCONT) else None,
                   ev.hold_s)

    def _emulators(self, node: ClusterNode, rsc: str) -> list[int]:
        domain = DOMAINS[rsc]
        if rsc == VM_GUEST2:
            ctls = node.controller_pids(domain)
            return ctls + [p for c in ctls for p in descendants(c)]
        return node.qemu_pids(domain)

    def _target_emulators(self, ev: Event, rec: EventRecord, st: ClusterStatus | None,
                          what: str) -> list[int]:
        """The emulator processes of the event's resource where it runs (none: the event
        is skipped, and says why)."""
        assert ev.rsc is not None
        rec.node = self.host(st, ev.rsc)
        if rec.node is None:
            rec.skipped = f"{ev.rsc} runs nowhere"
            return []
        pids = self._emulators(self._node(rec), ev.rsc)
        if not pids:
            rec.skipped = f"no {what} of {ev.rsc} on {rec.node}"
        return pids

    def _ev_qemu_kill(self, ev: Event, rec: EventRecord, st: ClusterStatus | None) -> None:
        pids = self._target_emulators(ev, rec, st, "emulator")
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        rec.notes.append(f"killed {pids}")

    def _ev_guest_hang(self, ev: Event, rec: EventRecord, st: ClusterStatus | None) -> None:
        pids = self._target_emulators(ev, rec, st, "qemu")
        if not pids:
            return
        starts = {p: _starttime(p) for p in pids}
        for p in pids:
            os.kill(p, signal.SIGSTOP)
        rec.notes.append(f"qemu {pids} stopped")

        def cont() -> None:
            for p, s in starts.items():
                _signal_if_same(p, s, signal.SIGCONT)

        self._undo(rec, f"qemu {pids} continued", cont, ev.hold_s)

    def _ev_remoted_kill(self, ev: Event, rec: EventRecord, st: ClusterStatus | None) -> None:
        assert ev.rsc is not None
        rec.node = self.host(st, ev.rsc)
        guest = GUEST1 if ev.rsc == VM_GUEST1 else GUEST2
        if rec.node is None or st is None or not st.online(guest):
            rec.skipped = f"{guest} is not online"
            return
        if ev.rsc == VM_GUEST1:
            assert self.vm is not None
            answer = self.vm.control("kill-remoted")
            if not answer.startswith("killed "):
                rec.skipped = f"guest1 answered {answer!r}"
                return
            rec.notes.append(answer)
        else:
            pid = self._node(rec).remoted_pid(DOMAINS[VM_GUEST2])
            if pid is None:
                rec.skipped = "no pacemaker-remoted in guest2"
                return
            os.kill(pid, signal.SIGKILL)
            rec.notes.append(f"killed {pid}")

    def _ev_qga_kill(self, ev: Event, rec: EventRecord, st: ClusterStatus | None) -> None:
        rec.node = self.host(st, VM_PLAIN)
        if rec.node is None:
            rec.skipped = "vm-plain runs nowhere"
            return
        uri = self._node(rec).uri("qemu")
        try:
            state = agent_channel_state(DOMAINS[VM_PLAIN], uri)
        except Exception as exc:  # noqa: BLE001 - libvirtd frozen or killed meanwhile
            rec.skipped = f"libvirt on {rec.node} did not answer: {exc}"
            return
        if state != "connected":
            rec.skipped = f"the guest agent is {state}"
            return
        guest_exec(DOMAINS[VM_PLAIN], "/etc/harness/stop-agent.sh", ["KILL", "0.5"], uri=uri)
        rec.notes.append("qemu-ga killed")

    def _ev_link_cut(self, ev: Event, rec: EventRecord, st: ClusterStatus | None) -> None:
        if not self._need_whole(rec, st):
            return
        netns = self.cluster.nodes[0].netns
        subprocess.run(["ip", "-n", netns, "link", "set", UPLINK, "down"], check=True,
                       timeout=30, capture_output=True)
        rec.node = None

        def restore() -> None:
            if netns_exists(netns):
                subprocess.run(["ip", "-n", netns, "link", "set", UPLINK, "up"], check=True,
                               timeout=30, capture_output=True)

        self._undo(rec, "link restored", restore, ev.hold_s)

    def _ev_pcmk_restart(self, ev: Event, rec: EventRecord, st: ClusterStatus | None) -> None:
        if not self._need_whole(rec, st):
            return
        node = self._node(rec)
        pid = node.pid("pacemakerd")
        if pid is None:
            rec.skipped = f"pacemakerd does not run on {node.name}"
            return
        os.kill(pid, signal.SIGTERM)
        t_term = time.monotonic()

        def start() -> None:
            if pid_alive(pid):
                rec.notes.append(f"pacemakerd {pid} still ran after {PCMK_STOP_BOUND_S:.0f}s")
                self.violation("pacemaker-stop", f"{node.name}: pacemakerd did not stop "
                               f"within {PCMK_STOP_BOUND_S:.0f}s", rec.index)
                return
            rec.notes.append(f"pacemakerd stopped after "
                             f"{time.monotonic() - t_term:.1f}s")
            if node.pid("anchor") is not None and node.pid("pacemakerd") is None:
                node.reap()
                node.start_pacemaker()

        # started again once pacemakerd has exited and the hold is over (counted from the
        # SIGTERM), or after PCMK_STOP_BOUND_S whatever happened
        self._undo(rec, f"pacemaker started on {node.name}", start, PCMK_STOP_BOUND_S,
                   lambda: not pid_alive(pid), ev.hold_s)

    def _ev_rsctmp_fill(self, ev: Event, rec: EventRecord, st: ClusterStatus | None) -> None:
        node = self._node(rec)
        if not node.running():
            rec.skipped = f"{node.name} is down"
            return
        fill = "/run/resource-agents/.soak-fill"
        node.exec(["sh", "-c", f"cat /dev/zero > {fill}"], timeout_s=60.0)
        df = node.exec(["df", "-k", "/run/resource-agents"], timeout_s=10.0).stdout.split()
        rec.notes.append(f"HA_RSCTMP filled: {' '.join(df[-6:])}")

        def empty() -> None:
            if node.pid("anchor") is not None:
                node.exec(["rm", "-f", fill], timeout_s=30.0)

        self._undo(rec, f"HA_RSCTMP emptied on {node.name}", empty, ev.hold_s)

    # -- settling, failures, repair ----------------------------------------------------------

    def settle(self, pending: list[EventRecord]) -> None:
        """Wait until every fault is undone and the cluster is settled (every guest back,
        both nodes up), within the bound; a guest not back is a violation."""
        bound = self.cfg.recovery_bound_s
        end: float | None = None
        fence_watch: dict[str, float] = {}
        last_cleanup = time.monotonic()
        while True:
            self.pump()
            now = time.monotonic()
            if self.undos:
                end = None
            elif end is None:
                end = now + bound
            st, why = self.observe(pending)
            floor = max((max(r.t0, r.t_undone or 0.0)
                         + OBSERVE_S.get(r.kind, OBSERVE_DEFAULT_S) for r in pending),
                        default=0.0)
            if not self.undos and not why and time.time() >= floor:
                break
            self._watch_fencing(st, fence_watch, pending)
            if now - last_cleanup > 30.0 and not self.undos:
                # a failure left (e.g. a failed start) may keep a guest from its node: judge
                # it and clean it up, as an admin would
                self.judge_failures(pending, cleanup=True)
                last_cleanup = now
            if end is not None and now >= end:
                detail = "; ".join(why)
                self.violation("guest-back-within-bound",
                               f"not settled {bound:.0f}s after the last fault was undone: "
                               f"{detail}", pending[-1].index if pending else None)
                self.settle_checks.append({"t": round(time.time(), 2), "events":
                                           [r.index for r in pending], "ok": False,
                                           "why": why, "crm_mon": self._crm_mon_text()})
                self.repair(pending)
                if not self.wait_healthy(time.monotonic() + bound):
                    raise SoakAbort("the cluster did not settle even after the repair:\n"
                                    + "; ".join(self.unhealthy(self.status())) + "\n"
                                    + self._crm_mon_text())
                break
            time.sleep(POLL_S)
        t = time.time()
        for r in pending:
            r.t_settled = t
        self.settle_checks.append({"t": round(t, 2), "events": [r.index for r in pending],
                                   "ok": True})

    def _watch_fencing(self, st: ClusterStatus | None, watch: dict[str, float],
                       pending: list[EventRecord]) -> None:
        """A node that stays powered off: Pacemaker should have fenced (and so booted) it.
        Past the bound the soak powers it on itself, and says so."""
        now = time.monotonic()
        for node in self.cluster.nodes:
            if node.pid("anchor") is not None:
                watch.pop(node.name, None)
                continue
            since = watch.setdefault(node.name, now)
            if now - since > FENCE_BOUND_S:
                self.violation("fenced", f"{node.name} stayed powered off "
                               f"{FENCE_BOUND_S:.0f}s: Pacemaker did not fence it; "
                               f"powering it on", pending[-1].index if pending else None)
                node.boot(pacemaker_delay_s=3.0)
                watch.pop(node.name, None)

    def repair(self, pending: list[EventRecord]) -> None:
        """What an admin would do to a cluster that did not recover by itself."""
        self.log("repairing the cluster")
        self.notes.append(f"repair after events {[r.index for r in pending]}")
        netns = self.cluster.nodes[0].netns
        if netns_exists(netns):
            subprocess.run(["ip", "-n", netns, "link", "set", UPLINK, "up"], check=False,
                           timeout=30, capture_output=True)
        for node in self.cluster.nodes:
            if node.pid("anchor") is None:
                node.boot(pacemaker_delay_s=3.0)
                continue
            lv = node.pid("libvirtd")
            if lv is not None:
                os.kill(lv, signal.SIGCONT)
            else:
                node.restart_libvirtd()
            for rsc in (VM_GUEST1, VM_PLAIN):
                for p in node.qemu_pids(DOMAINS[rsc]):
                    os.kill(p, signal.SIGCONT)
            if node.pid("pacemakerd") is None:
                node.start_pacemaker()
            node.exec(["rm", "-f", "/run/resource-agents/.soak-fill"])
        try:
            live = self.cluster.live()
            for n in self.cluster.names:
                live.exec(["crm_attribute", "--node", n, "--name", "standby", "--delete"])
            for rsc in VM_RESOURCES:
                live.crm_resource("--clear", "--resource", rsc)
            self.judge_failures(pending, cleanup=True)
        except HarnessError as exc:
            self.notes.append(f"repair: {exc}")

    def judge_failures(self, events: list[EventRecord], cleanup: bool = True) -> None:
        """Every failed operation the CIB keeps must be explained by an event. A failed start
        bans the resource from that node (start-failure-is-fatal): that one is cleaned up
        there, as an admin would, where the resource does not run. Nothing else is: a
        cleanup of a running guest node's connection resource makes Pacemaker fence the
        guest (it forgets the connection while the guest's resources are "thought to be
        active there"; seen with 2.1.5), and the other failures ban nothing (no
        migration-threshold)."""
        try:
            node = self.cluster.live()
            status = node.cib("status")
        except (HarnessError, ET.ParseError) as exc:
            self.notes.append(f"failures not read: {exc}")
            return
        found = failures_from_cib_status(status)
        now = time.time()
        new = [f for f in found if f.key() not in self.failures_seen]
        for f in new:
            self.failures_seen.add(f.key())
            # A failure's last-rc-change may be long before it failed (a recurring monitor
            # that was pending when a guest's connection dropped keeps its start time), but
            # the last look found none that is new now (and cleaned up what it found): it
            # failed after that look, and before now.
            eff = f if f.t >= self.last_judged else \
                dataclasses.replace(f, t=self.last_judged, t_latest=now)
            by = [ev.index for ev in self.records if explains(ev, eff, now=now)]
            self.failures.append({**dataclasses.asdict(f), "t_effective": eff.t,
                                  "explained_by": by})
            if not by:
                self.violation("unexplained-failure", f.describe())
        self._judge_twice_after_migrate()
        if cleanup:
            self._clean_failed_starts(node, new)
        self.last_judged = now

    def _clean_failed_starts(self, node: ClusterNode, failures: list[Failure]) -> None:
        st = self.status()
        for f in failures:
            if f.op != "start" or (st is not None and f.node in st.started_on(f.rsc)):
                continue
            proc = node.crm_resource("--cleanup", "--resource", f.rsc, "--node", f.node,
                                     timeout_s=60.0)
            self.notes.append(f"cleaned up the failed start of {f.rsc} on {f.node} "
                              f"(rc {proc.returncode})")

    def _judge_twice_after_migrate(self) -> None:
        """After a failed migrate_to Pacemaker assumes, by design, that the resource may run
        on the migration target too, logs that it "might be active on 2 nodes" and stops it
        on both. Such a line is accepted when that failed migrate_to is itself explained by
        a fault (the oracle still proves the guest never ran twice); else it is a
        violation."""
        while self.twice_after_migrate:
            seen, logged_on, claim = self.twice_after_migrate.pop(0)
            match = [f for f in self.failures
                     if f["rsc"] == claim.rsc and f["op"] == "migrate_to"
                     and f["node"] == claim.after_failed_migrate_to
                     and f["t_effective"] - 5 <= seen]
            explained = [f for f in match if f["explained_by"]]
            self.twice_judged.append({"seen": round(seen, 2), "logged_on": logged_on,
                                      "line": claim.line.strip(), "rsc": claim.rsc,
                                      "failed_migrate_to_on": claim.after_failed_migrate_to,
                                      "explained_by": explained[-1]["explained_by"]
                                      if explained else []})
            if not explained:
                self.violation("active-on-2-nodes", f"{logged_on}: {claim.line.strip()} "
                               f"(after a failed migrate_to on {claim.after_failed_migrate_to} "
                               "that no fault explains)")

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
        error: str | None = None
        stopped_at: int | None = None
        self.t_start = time.time()
        t_mono = time.monotonic()
        try:
            with SharedHostLock():
                self.t_start = time.time()
                t_mono = time.monotonic()
                try:
                    self.set_up()
                    stopped_at = self._loop(t_mono)
                except SoakAbort as exc:
                    error = f"aborted: {exc}"
                    self.violation("soak-aborted", str(exc).splitlines()[0])
                except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - reported
                    error = "".join(traceback.format_exception(exc))
                    self.log(f"the soak failed: {error}")
                finally:
                    self._finish_checks()
                    self._teardown()
        finally:
            signal.signal(signal.SIGTERM, previous)
        return self._write(time.monotonic() - t_mono, stopped_at, error)

    def _loop(self, t_mono: float) -> int | None:
        pending: list[EventRecord] = []
        limit = self.cfg.time_limit_s
        for ev in self.schedule.events:
            if limit is not None and time.monotonic() - t_mono > limit:
                self.log(f"time limit {limit:.0f}s reached before event {ev.index}")
                self.settle(pending)
                self.judge_failures(pending)
                return ev.index
            previous, self.current_event = self.current_event, ev.index
            rec = self.fire(ev)
            if rec.skipped is not None:
                # what is seen from now on belongs to the last event that did something
                self.current_event = previous
            self.records.append(rec)
            self.log(f"event {ev.index}: {ev.describe()}"
                     + (f" -> skipped: {rec.skipped}" if rec.skipped else
                        f" on {rec.node or '-'} {'; '.join(rec.notes)}"))
            if rec.skipped is None:
                pending.append(rec)
            if ev.overlap:
                self.sleep(ev.gap_s, pending)
                continue
            self.settle(pending)
            self.judge_failures(pending)
            for r in pending:
                self.log(f"event {r.index}: "
                         + (f"back after {r.t_back - r.t0:.1f}s" if r.outage and r.t_back
                            else "no outage seen")
                         + (f", settled after {r.t_settled - r.t0:.1f}s" if r.t_settled
                            else ", not settled"))
            pending = []
            self.sleep(ev.gap_s)
        self.current_event = None
        self.settle(pending)
        self.judge_failures(pending)
        return None

    def _finish_checks(self) -> None:
        if self.checker is not None:
            self.checker.stop_event.set()
            self.checker.join(timeout=30)
            try:
                self.checker.check_once()
            except Exception as exc:  # noqa: BLE001 - reported
                self.violation("checker", f"final check failed: {exc!r}")
            for tail in self.checker.tails.values():
                tail.close()
            for name, n in self.checker.oracle_problems.items():
                if n > ORACLE_REPORT_MAX:
                    self.violation("oracle", f"{name}: {n - ORACLE_REPORT_MAX} more problems "
                                   f"({self.oracle_paths[name]})")

    def _teardown(self) -> None:
        try:
            done = self.cluster.stop()
            self.notes.append("teardown: " + "; ".join(done[-6:]))
        except HarnessError as exc:
            self.violation("leak", f"teardown: {exc}")
        for problem in leaks(self.cluster):
            self.violation("leak", problem)

    def _write(self, duration_s: float, stopped_at: int | None,
               error: str | None) -> dict[str, Any]:
        checker = self.checker
        events = []
        for r in self.records:
            d = dataclasses.asdict(r)
            # fired to every guest back; 0 when no guest and no node was seen down
            d["recovery_s"] = (None if r.skipped is not None or r.t_settled is None else
                               round(max(0.0, (r.t_back or r.t_settled) - r.t0), 1)
                               if r.outage else 0.0)
            if checker is not None and r.skipped is None:
                t1 = r.t_settled or time.time()
                d["guest_down_s"] = {name: round(checker.down_within(name, r.t0, t1), 1)
                                     for name in checker.tails}
            events.append(d)
        fired = [e for e in events if e["skipped"] is None]
        result: dict[str, Any] = {
            "seed": self.schedule.seed, "agent": self.cfg.agent,
            "agents": {d: ":".join(("ocf", *pa)) for d, pa in self.agents.items()},
            "events_planned": len(self.schedule.events), "events_fired": len(fired),
            "events_skipped": len(events) - len(fired),
            "overlap_probability": self.schedule.overlap_probability,
            "duration_s": round(duration_s, 1), "stopped_at": stopped_at, "error": error,
            "recovery_bound_s": self.cfg.recovery_bound_s, "lie_stop": list(self.cfg.lie_stop),
            "schedule": self.schedule.to_json(), "events": events,
            "table": recovery_table(events),
            "violations": [v.to_json() for v in self.violations],
            "failures": self.failures, "settle_checks": self.settle_checks,
            "active_twice_after_failed_migrate_to": self.twice_judged,
            "agent_operations": len(checker.agent_ops) if checker else 0,
            "invariant_checks": (len(checker.checks) if checker else 0)
            + len(self.settle_checks),
            "notes": self.notes,
            "oracles": ({name: t.report.summary() for name, t in checker.tails.items()}
                        if checker else {}),
            "agent_ops": checker.agent_ops if checker else [],
            "pacemaker_results": checker.pcmk_results if checker else [],
            "checks": checker.checks if checker else [],
        }
        out = Path(self.cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        name = self.cfg.out_name()
        (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
        summary = markdown_summary(result)
        (out / f"{name}.md").write_text(summary)
        self.log(f"wrote {out / name}.json and .md\n{summary}")
        return result


def leaks(cluster: Cluster) -> list[str]:
    """What of the cluster is left after its teardown: namespaces, processes naming its
    directory or our domains, mounts below its directory, cgroups of our domains."""
    out: list[str] = []
    for n in cluster.nodes:
        if netns_exists(n.netns):
            out.append(f"network namespace {n.netns}")
    d = str(cluster.dir)
    for pid in all_pids():
        if pid == os.getpid() or not pid_alive(pid):
            continue
        argv = read_cmdline(pid)
        text = " ".join(argv)
        if d in text or f"guest={DOMAIN_PREFIX}" in text or \
                any(a.startswith(DOMAIN_PREFIX) for a in argv):
            out.append(f"process {pid}: {text[:160]}")
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                mnt = line.split()[4]
                if mnt.startswith(d):
                    out.append(f"mount {mnt}")
    except OSError:
        pass
    out += [f"cgroup {cg}" for cg in leftover_cgroups()]
    return out


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.cluster.soak", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--time-limit", type=float, default=0.0,
                    help="seconds; no new event after this (0: none)")
    ap.add_argument("--agent", choices=("ours", "virtualdomain"), default="ours")
    ap.add_argument("--recovery-bound", type=float, default=240.0)
    ap.add_argument("--lie-stop", action="append", default=[],
                    help="self-test: this resource's stop answers 0 without stopping")
    ap.add_argument("--plain-no-migrate", action="store_true")
    ap.add_argument("--kinds", default="", help="comma-separated event kinds (default: all)")
    ap.add_argument("--out", type=Path, default=SOAK_OUT)
    ap.add_argument("--print-schedule", action="store_true",
                    help="print the seed's schedule and exit (nothing is started)")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("OURS.json", "VD.json"),
                    help="write <seed>-side-by-side.md from two runs of one seed and exit")
    a = ap.parse_args(argv)
    if a.compare:
        ours, theirs = (json.loads(p.read_text()) for p in a.compare)
        text = side_by_side(ours, theirs)
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / f"{ours['seed']}-side-by-side.md").write_text(text)
        print(text)
        return 0
    kinds = tuple(k for k in a.kinds.split(",") if k) or None
    cfg = SoakConfig(seed=a.seed, events=a.events,
                     time_limit_s=a.time_limit or None, agent=a.agent,
                     out_dir=a.out, recovery_bound_s=a.recovery_bound,
                     lie_stop=tuple(a.lie_stop), plain_allow_migrate=not a.plain_no_migrate,
                     kinds=kinds)
    if a.print_schedule:
        sched = make_schedule(cfg.seed, cfg.events, kinds)
        print(f"seed {sched.seed}: overlap probability {sched.overlap_probability}")
        for ev in sched.events:
            print(f"  {ev.index:4d} {ev.describe()}")
        return 0
    if os.geteuid() != 0:
        print("the soak runs corosync, Pacemaker and libvirtd: run it as root", file=sys.stderr)
        return 2
    result = Soak(cfg).run()
    return 0 if not result["violations"] and result["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
