"""The soak's invariants that need no cluster (tests/cluster/soak.py runs them on what it
reads from the cluster): Pacemaker's "active on 2 nodes", a stop that said 0 while the
domain still ran, which event explains a failed operation, and the report's statistics.

The oracle (no guest ever runs twice, no counter goes back) is tests/harness/oracle.py.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .oracle import runs_in_summary
from .soakplan import GUEST_NODES, KINDS

# Pacemaker's scheduler, when a resource is found running in more than one place:
# 2.1 and 3.0: "<class> resource <id> might be active on <n> nodes (<recovery>)"; older
# and crm_resource's wording: "<id> is active on multiple nodes including ...", "Resource
# <id> is active on <n> nodes".
ACTIVE_TWICE = re.compile(r"\b(?:might be|is) active on (?:[2-9]|\d{2,}|multiple) nodes\b")
# The resource a guest node's connection is (crm_mon and the CIB name it as the node).
DUMMY_PREFIX = "dummy-"
FENCE_DEVICE = "fence-pyvd"


_TWICE_RSC = re.compile(r"(\S+) (?:might be|is) active on (?:[2-9]|\d{2,}|multiple) nodes")
_FAILED_MIGRATE_TO = re.compile(r"Unexpected result \(.*\) was recorded for migrate_to of "
                                r"(\S+) on (\S+)")


def active_twice(log: str) -> list[str]:
    """The lines of a Pacemaker log that say a resource is (or may be) active on two or
    more nodes."""
    return [line for line in log.splitlines() if ACTIVE_TWICE.search(line)]


@dataclass(frozen=True)
class TwiceClaim:
    """A line of Pacemaker's saying ``rsc`` is or might be active on two nodes; ``after_failed
    migrate_to``: the node whose failed migrate_to the scheduler had just unpacked for the
    same resource (Pacemaker then assumes the resource may run on the migration target too,
    by design, and recovers it on both), else None."""

    line: str
    rsc: str
    after_failed_migrate_to: str | None


def twice_claims(lines: Sequence[str], start: int = 0) -> list[TwiceClaim]:
    """The "active on 2 nodes" lines of a stretch of Pacemaker's log (from line ``start`` on:
    the lines before are context), each with the failed migrate_to of the same resource
    that the same scheduler run unpacked just before it (since the last "Calculated
    transition")."""
    out: list[TwiceClaim] = []
    failed: dict[str, str] = {}
    for i, line in enumerate(lines):
        if "Calculated transition" in line or "(pcmk__log_transition_summary)" in line:
            failed.clear()
        m = _FAILED_MIGRATE_TO.search(line)
        if m:
            failed[m.group(1)] = m.group(2)
        r = _TWICE_RSC.search(line)
        if r and i >= start:
            out.append(TwiceClaim(line, r.group(1), failed.get(r.group(1))))
    return out


# -- stop said 0 while the domain still ran -------------------------------------------------


def stop_lies(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Agent operations (the soak's wrapper log: one dict per call) where stop answered 0
    while processes of that domain still ran on that node (the wrapper's snapshot, taken
    as the agent returned): the safety rule broken."""
    out = []
    for r in records:
        if r.get("action") == "stop" and r.get("rc") == 0 and r.get("left"):
            procs = ", ".join(f"{p.get('comm')}[{p.get('pid')}]" for p in r["left"])
            out.append(f"{r.get('rsc')} on {r.get('node')}: stop answered 0 at "
                       f"{r.get('t_end', 0):.3f} while {procs} of domain {r.get('domain')} "
                       f"still ran there" + (" (the wrapper lied: self-test)"
                                             if r.get("lied") else ""))
    return out


# -- failed operations and the events that explain them -------------------------------------


@dataclass(frozen=True)
class Failure:
    """A failed operation the CIB keeps (``<rsc>_last_failure_0``)."""

    rsc: str
    op: str  # "monitor", "start", ...
    node: str  # where it ran (a cluster node, or a guest node for resources on a guest)
    rc: int
    status: int  # the execution status (0 done, 2 timed out, ...)
    t: float  # last-rc-change, epoch seconds
    interval_ms: int = 0
    reason: str = ""
    # when only known to lie between t and t_latest (a recurring monitor that was pending
    # when a guest's connection dropped keeps its start time as last-rc-change)
    t_latest: float | None = None

    def describe(self) -> str:
        st = "" if self.status == 0 else f" status {self.status}"
        return (f"{self.op} of {self.rsc} on {self.node} rc {self.rc}{st}"
                + (f" ({self.reason})" if self.reason else ""))

    def key(self) -> tuple[str, str, str, float]:
        return (self.rsc, self.op, self.node, self.t)


@dataclass
class EventRecord:
    """An event as it ran: what the schedule said, resolved against the cluster."""

    index: int
    kind: str
    rsc: str | None = None
    node: str | None = None  # the cluster node acted on (resolved)
    hosts: dict[str, str] = field(default_factory=dict)  # where each VM ran when it fired
    t0: float = 0.0  # fired (epoch)
    t_undone: float | None = None  # the fault undone (hold over), epoch
    t_settled: float | None = None  # every guest back, epoch
    # the cluster was seen unsettled after this event fired, and last became settled at
    # t_back (so recovery = t_back - t0; no outage seen: 0)
    outage: bool = False
    t_back: float | None = None
    skipped: str | None = None
    overlapped: bool = False
    notes: list[str] = field(default_factory=list)

    def guests_touched(self) -> set[str]:
        """The guest nodes this event may take down or make Pacemaker recover."""
        out: set[str] = set()
        for guest, vm in GUEST_NODES.items():
            if self.rsc == vm:
                out.add(guest)
            if self.kind == "link_cut" or (self.node is not None
                                           and self.hosts.get(vm) == self.node):
                out.add(guest)
        return out


# A migration's operations keep their own entry in the resource's history (Pacemaker needs
# them to judge a partial migration), and a failed one is recorded only there: no
# ``<rsc>_last_failure_0`` for a migrate_to or migrate_from that failed (seen with 2.1.5).
_MIGRATION_OPS = ("migrate_to", "migrate_from")


# Which failed operations of a VM resource each event kind explains: (operations, rcs)
# where None is any. "node" events explain them on the node they act on; "rsc" events on
# the resource they act on, wherever it ran. An operation that timed out is rc 1 to
# Pacemaker (status 2).
_ANY = None
_VM_EXPLAINS: dict[str, tuple[str, tuple[str, ...] | None, tuple[int, ...] | None]] = {
    # the emulator is gone: the monitor says not running (7) or failed (1), and a migration
    # asked for before a monitor saw it (a standby or move right after the kill) has nothing
    # to migrate (1)
    "qemu_kill": ("rsc", ("monitor", *_MIGRATION_OPS), (1, 7)),
    # qemu stopped: a monitor may fail or time out, a migration cannot move its memory
    "guest_hang": ("rsc", ("monitor", *_MIGRATION_OPS), _ANY),
    # the level-20 monitor reports a guest whose agent stopped answering
    "qga_kill": ("rsc", ("monitor",), (1,)),
    # the node is gone: whatever ran there did not complete
    "power_cut": ("node", _ANY, _ANY),
    "link_cut": ("node", _ANY, _ANY),
    # libvirt cannot be asked: start, stop and migrations there fail; the monitor must
    # still answer (from the domain's processes), so it is not explained
    "libvirtd_kill": ("node", ("start", "stop", *_MIGRATION_OPS), _ANY),
    "libvirtd_freeze": ("node", ("start", "stop", *_MIGRATION_OPS), _ANY),
}


def explains(ev: EventRecord, f: Failure, grace_s: float = 5.0,
             now: float | None = None) -> bool:
    """Whether event ``ev`` explains failure ``f``."""
    if ev.skipped is not None:
        return False
    end = ev.t_settled if ev.t_settled is not None else (now if now is not None else math.inf)
    latest = f.t if f.t_latest is None else f.t_latest
    if latest < ev.t0 - grace_s or f.t > end + grace_s:
        return False
    touched = ev.guests_touched()
    # a guest node's connection, or a resource running on a guest node
    if f.rsc in GUEST_NODES or f.node in GUEST_NODES:
        guest = f.rsc if f.rsc in GUEST_NODES else f.node
        return guest in touched
    if f.rsc == FENCE_DEVICE:
        return ev.node is not None and f.node == ev.node and ev.kind in (
            "power_cut", "link_cut", "pcmk_restart", "rsctmp_fill")
    rule = _VM_EXPLAINS.get(ev.kind)
    if rule is None:
        return False
    scope, ops, rcs = rule
    if ops is not None and f.op not in ops:
        return False
    if rcs is not None and f.rc not in rcs and f.status == 0:
        return False
    if scope == "rsc":
        return f.rsc == ev.rsc
    if ev.kind == "link_cut":
        return True
    if f.node == ev.node:
        return True
    # A migration fails on either end when one end is this node. In the soak's two-node
    # cluster every migration has this node as one end: away from it (the resource ran here
    # when the event fired) or to it (the resource ran on the other node; seed 2: a move to a
    # node whose libvirtd was frozen failed the migrate_to on the other one).
    return f.op in _MIGRATION_OPS


def unexplained(failures: Sequence[Failure], events: Sequence[EventRecord],
                now: float | None = None) -> list[Failure]:
    return [f for f in failures if not any(explains(ev, f, now=now) for ev in events)]


def failures_from_cib_status(status_xml: Any) -> list[Failure]:
    """Every ``*_last_failure_0`` operation in the CIB's status section (an ElementTree
    element), but a probe that found the resource running: the controller records any
    result other than the expected one there, and a probe expects "not running" (7);
    Pacemaker does not count a probe's "running" (0, or 8 promoted) as a failure either.
    And every ``*_migrate_to_0`` / ``*_migrate_from_0`` that completed with another result
    than 0 (a pending one, op-status -1, has none yet)."""
    out: list[Failure] = []
    for state in status_xml.iter("node_state"):
        node = state.get("uname", "")
        for op in state.iter("lrm_rsc_op"):
            oid = op.get("id", "")
            operation = op.get("operation", "")
            if oid.endswith("_last_failure_0"):
                rsc = oid[:-len("_last_failure_0")]
                probe = operation == "monitor" and op.get("interval", "0") == "0"
                if probe and op.get("rc-code") in ("0", "8") and \
                        op.get("op-status", "0") == "0":
                    continue
            elif operation in _MIGRATION_OPS and oid.endswith(f"_{operation}_0"):
                rsc = oid[:-len(f"_{operation}_0")]
                if op.get("op-status", "0") == "-1" or \
                        (op.get("rc-code") == "0" and op.get("op-status", "0") == "0"):
                    continue
            else:
                continue
            out.append(Failure(rsc=rsc, op=operation, node=node,
                               rc=int(op.get("rc-code", "-1")),
                               status=int(op.get("op-status", "0")),
                               t=float(op.get("last-rc-change", "0")),
                               interval_ms=int(op.get("interval", "0")),
                               reason=op.get("exit-reason", "")))
    return out


# -- statistics and the report --------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile (q in 0-100) of ``values``; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def recovery_table(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per kind (menu order): events fired, skipped, overlapped, and the recovery times
    (fired to every guest back) p50/p95/max."""
    rows = []
    for kind in KINDS:
        mine = [e for e in events if e["kind"] == kind]
        if not mine:
            continue
        times = [float(e["recovery_s"]) for e in mine
                 if e.get("skipped") is None and e.get("recovery_s") is not None]
        rows.append({"kind": kind, "fired": sum(1 for e in mine if e.get("skipped") is None),
                     "skipped": sum(1 for e in mine if e.get("skipped") is not None),
                     "overlapped": sum(1 for e in mine if e.get("overlapped")),
                     "p50": percentile(times, 50), "p95": percentile(times, 95),
                     "max": max(times) if times else None})
    return rows


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _violation_line(v: Mapping[str, Any]) -> str:
    return (f"- [{v['check']}] {v['detail']}"
            + (f" (event {v['event']})" if v.get("event") is not None else ""))


def markdown_summary(result: Mapping[str, Any]) -> str:
    """The run's summary: events by kind, recovery times, violations."""
    lines = [f"# Soak seed {result['seed']} ({result['agent']})", "",
             f"- events: {result['events_fired']} fired, {result['events_skipped']} skipped "
             f"of {result['events_planned']} planned; overlap probability "
             f"{result['overlap_probability']}",
             f"- duration: {result['duration_s']:.0f} s"
             + (f" (stopped by the time limit after event {result['stopped_at']})"
                if result.get("stopped_at") is not None else ""),
             f"- agent operations recorded: {result['agent_operations']}; invariant checks: "
             f"{result['invariant_checks']}",
             f"- violations: {len(result['violations'])}", "",
             "| event | fired | skipped | overlapped | recovery p50 (s) | p95 (s) | max (s) |",
             "|---|---|---|---|---|---|---|"]
    for row in result["table"]:
        lines.append(f"| {row['kind']} | {row['fired']} | {row['skipped']} | "
                     f"{row['overlapped']} | {_s(row['p50'])} | {_s(row['p95'])} | "
                     f"{_s(row['max'])} |")
    lines.append("")
    if result["violations"]:
        lines += ["## Violations", "", *map(_violation_line, result["violations"]), ""]
    return "\n".join(lines)


# -- the same seed, ours and VirtualDomain --------------------------------------------------

def _window(result: Mapping[str, Any], last: int) -> list[Mapping[str, Any]]:
    return [e for e in result["events"] if e["index"] <= last]


def _ops(result: Mapping[str, Any], t_end: float | None, action: str) -> list[Mapping[str, Any]]:
    return [o for o in result.get("agent_ops", ())
            if o.get("action") == action and o.get("interval_ms", 0) == 0
            and (t_end is None or o["t"] <= t_end)]


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{percentile(values, 50):.0f} / {max(values):.0f}"


def side_by_side(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> str:
    """The same seed run with our agents and with VirtualDomain, compared over the events
    both runs reached (a run stopped by its time limit reaches fewer): violations, time the
    guests were down, recovery by kind, failed operations, stops."""
    if ours["seed"] != theirs["seed"]:
        raise ValueError(f"seeds differ: {ours['seed']} and {theirs['seed']}")
    last = min(max((e["index"] for e in r["events"]), default=-1) for r in (ours, theirs))
    runs = [("ours", ours), ("VirtualDomain", theirs)]
    windows = {name: _window(r, last) for name, r in runs}
    # the end of the window: when its last event settled (or, unsettled, the run's end)
    t_end: dict[str, float | None] = {}
    for name, _ in runs:
        ts = [e.get("t_settled") or e.get("t_undone") or e["t0"] for e in windows[name]]
        t_end[name] = max(ts) if ts else None
    guests = sorted({g for _, r in runs for e in r["events"] for g in e.get("guest_down_s", {})})

    def fired(name: str) -> list[Mapping[str, Any]]:
        return [e for e in windows[name] if e.get("skipped") is None]

    def col(fn: Any) -> str:
        return " | ".join(str(fn(name, r)) for name, r in runs)

    def violations(name: str, r: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        return [v for v in r["violations"] if v.get("event") is None or v["event"] <= last]

    def by_check(name: str, r: Mapping[str, Any]) -> str:
        vs = violations(name, r)
        if not vs:
            return "**0**"
        counts = Counter(v["check"] for v in vs)
        return f"**{len(vs)}** (" + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) + ")"

    def down(name: str, r: Mapping[str, Any]) -> str:
        return " / ".join(f"{sum(e.get('guest_down_s', {}).get(g, 0.0) for e in fired(name)):.0f}"
                          for g in guests)

    def recovery(name: str, r: Mapping[str, Any]) -> str:
        ts = [float(e["recovery_s"]) for e in fired(name) if e.get("recovery_s") is not None]
        if not ts:
            return "-"
        return f"{_s(percentile(ts, 50))} / {_s(percentile(ts, 95))} / {_s(max(ts))}"

    def failures(name: str, r: Mapping[str, Any]) -> int:
        end = t_end[name]
        return sum(1 for f in r["failures"] if end is None or f["t_effective"] <= end + 5.0)

    def ops(action: str, bad_word: str) -> Callable[[str, Mapping[str, Any]], str]:
        def cell(name: str, r: Mapping[str, Any]) -> str:
            done = _ops(r, t_end[name], action)
            bad = sum(1 for o in done if o["rc"] != 0)
            return f"{len(done)}, {bad} {bad_word}; {_ms([float(o['ms']) for o in done])}"
        return cell

    def boots(name: str, r: Mapping[str, Any]) -> str:
        n = r["events_fired"]
        return " / ".join(f"{100.0 * runs_in_summary(r.get('oracles', {}).get(g, '')) / n:.0f}"
                          if n else "-" for g in guests)

    lines = [f"# Soak seed {ours['seed']}: ours and VirtualDomain, side by side", "",
             f"Events 0-{last}, the ones both runs reached (ours: {ours['events_fired']} "
             f"fired in its run, VirtualDomain: {theirs['events_fired']}).", "",
             "| | ours | VirtualDomain |", "|---|---|---|",
             "| events fired (skipped) | "
             + col(lambda n, r: f"{len(fired(n))} ({len(windows[n]) - len(fired(n))})") + " |",
             "| violations | " + col(by_check) + " |",
             f"| guests down, s ({' / '.join(guests)}) | " + col(down) + " |",
             "| recovery p50 / p95 / max, s | " + col(recovery) + " |",
             "| failed operations | " + col(failures) + " |",
             "| stops: count, rc not 0; ms p50 / max | " + col(ops("stop", "not 0")) + " |",
             "| migrate_to: count, failed; ms p50 / max | " + col(ops("migrate_to", "failed"))
             + " |",
             f"| boots per 100 events, whole run ({' / '.join(guests)}) | " + col(boots) + " |",
             "", "| event | fired (ours / VD) | p50 s (ours / VD) | max s (ours / VD) |",
             "|---|---|---|---|"]
    tables = {name: {row["kind"]: row for row in recovery_table(windows[name])}
              for name, _ in runs}
    def cell(row: Mapping[str, Any] | None, key: str) -> str:
        return "-" if row is None else (str(row[key]) if key == "fired" else _s(row[key]))

    for kind in KINDS:
        a, b = tables["ours"].get(kind), tables["VirtualDomain"].get(kind)
        if a is None and b is None:
            continue
        lines.append(f"| {kind} | {cell(a, 'fired')} / {cell(b, 'fired')} | "
                     f"{cell(a, 'p50')} / {cell(b, 'p50')} | {cell(a, 'max')} / {cell(b, 'max')} |")
    lines.append("")
    for name, r in runs:
        vs = violations(name, r)
        if vs:
            lines += [f"## Violations ({name})", "", *map(_violation_line, vs), ""]
    return "\n".join(lines)
