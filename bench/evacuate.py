"""Benchmark: evacuating a node. N small guests (plain VM resources with allow-migrate) run on
pcmk-1 of the two-node cluster (tests/harness/cluster.py); `crm_attribute --node pcmk-1
--name standby --update on` (what `pcs node standby` does) moves them to pcmk-2 by live
migration. Measured per run: the time from the standby to every guest running on pcmk-2 as
Pacemaker shows it and beating there (tests/harness/busyguest.py heartbeats, host clock), the
guest-visible downtime of each guest (last beat on pcmk-1 to first on pcmk-2) and reboots
(a new boot id: a stop and start instead of a migration). Ours (ocf:custom:PyVirtualDomain)
and ocf:heartbeat:VirtualDomain, same cluster, same guests' XML, with Pacemaker's
migration-limit unset and 1, for N = 1, 2, 4, 8.

Run as root under the harness lock:
    .venv/bin/python bench/evacuate.py [--counts 1,2,4,8] [--rounds 1]
        [--out docs/benchmarks-evacuation.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.agentwrap import read_log, wrapper_paths, write_wrapper  # noqa: E402
from tests.harness.busyguest import SOCKET_DIR, HeartbeatReader, busy_domain_xml  # noqa: E402
from tests.harness.cluster import (  # noqa: E402
    DEFAULT_STATE_DIR,
    OCF_RESOURCE_D,
    TWO_NODES,
    Cluster,
)
from tests.harness.guest import VIRT_TYPE_ENV, GuestArtifacts, build_artifacts  # noqa: E402
from tests.harness.twohosts import SharedHostLock  # noqa: E402

from bench.measure import libvirt_log_lines, run_facts, write_measured  # noqa: E402

AGENTS = {"ours": ("custom", "PyVirtualDomain"), "VD": ("heartbeat", "VirtualDomain")}
SRC, DST = "pcmk-1", "pcmk-2"
SETTLE_S = 240.0
STATE_DIR = DEFAULT_STATE_DIR / "evacuate"
# Each agent runs under the soak's wrapper (tests/harness/agentwrap.py, without its process
# snapshot), which logs every operation's time: where an evacuation's time goes.
OPS_LOG = STATE_DIR / "bench-run" / "agent-ops.jsonl"
TIMED_OPS = ("migrate_to", "migrate_from", "stop", "start")


@dataclass
class Evacuation:
    agent: str
    limit: str  # migration-limit: "unset" or a number
    n: int
    total_s: float  # standby to every guest running and beating on pcmk-2
    downtime_ms: list[float]
    reboots: int
    migrated: int  # guests moved by migrate_to/migrate_from (not stop/start)
    # each operation's time (ms, from the wrapper's log) during the evacuation, by action
    op_ms: dict[str, list[int]] = field(default_factory=dict)


def _sockets(cl: Cluster, name: str) -> dict[str, Path]:
    rel = SOCKET_DIR.removeprefix("/var/lib/libvirt/")
    return {n.name: n.dir / "lib-libvirt" / rel / f"{name}.sock" for n in cl.nodes}


def run_one(cl: Cluster, agent: str, limit: str, n: int, arts: GuestArtifacts,
            virt_type: str) -> Evacuation:
    node = cl.live()
    for nd in cl.nodes:
        (nd.dir / "lib-libvirt" / SOCKET_DIR.removeprefix("/var/lib/libvirt/")).mkdir(
            parents=True, exist_ok=True)
    if limit == "unset":
        node.exec(["crm_attribute", "-t", "crm_config", "-n", "migration-limit", "--delete"])
    else:
        node.set_property("migration-limit", limit)
    provider, kind = AGENTS[agent]
    names = [f"pyvd-evac-{agent.lower()}-{i}" for i in range(n)]
    readers: dict[str, HeartbeatReader] = {}
    try:
        for name in names:
            config = cl.shared_dir / f"{name}.xml"
            log = f"/var/log/libvirt/qemu/{name}.console.log"
            config.write_text(busy_domain_xml(name, arts, virt_type, log, rate_mib_s=0,
                                              wss_mib=8, memory_mib=128))
            readers[name] = HeartbeatReader(_sockets(cl, name)).start()
            node.add_primitive(name, kind, {"config": str(config),
                                            "hypervisor": "qemu:///system",
                                            "migration_transport": "tcp"},
                               provider=provider, meta={"allow-migrate": "true"},
                               monitor_interval="10s",
                               ops={"start": "90s", "stop": "90s", "monitor": "30s",
                                    "migrate_to": "120s", "migrate_from": "60s"},
                               prefer_node=SRC)
        cl.wait_status(lambda st: all(st.started_on(r) == (SRC,) for r in names), SETTLE_S,
                       f"{n} guests on {SRC}")
        for name in names:
            if not readers[name].wait_beats(SRC, 0.0, 60.0):
                raise RuntimeError(f"{name}: no heartbeat on {SRC}")
        # the preference must not hold them on a node in standby: drop it first
        for name in names:
            node.cibadmin("-D", "-o", "constraints", "-X",
                          f"<rsc_location id='{name}-on-{SRC}'/>")
        node.exec(["crm_resource", "--wait", "--timeout", "60s"], timeout_s=90.0)
        boots = {name: readers[name].boot_ids() for name in names}
        before = {name: {(op["on_node"], op.get("call-id", ""))
                         for op in node.operations(name)} for name in names}
        _, log_at = read_log(OPS_LOG)
        t0 = time.monotonic()
        mark = readers[names[0]].mark()
        node.exec(["crm_attribute", "--node", SRC, "--name", "standby", "--update", "on"],
                  check=True)
        cl.wait_status(lambda st: all(st.started_on(r) == (DST,) for r in names), SETTLE_S,
                       f"{n} guests on {DST}")
        for name in names:
            readers[name].wait_beats(DST, mark, 60.0)
        total = max(min((b.t for b in readers[name].since(mark) if b.host == DST),
                        default=float("inf")) for name in names) - t0
        # -1: no beat of that guest seen on pcmk-2 (it may run there and not beat: reported)
        gaps = [readers[name].switch_gap(SRC, DST, mark) for name in names]
        downs = [round(g * 1000) if g != float("inf") else -1 for g in gaps]
        reboots = sum(len(readers[name].boot_ids()) > len(boots[name]) for name in names)
        migrated = 0
        for name in names:
            ops = [op["operation"] for op in node.operations(name)
                   if (op["on_node"], op.get("call-id", "")) not in before[name]]
            migrated += "migrate_from" in ops and "start" not in ops
        op_ms: dict[str, list[int]] = {}
        for rec in read_log(OPS_LOG, log_at)[0]:
            ms = rec.get("ms")
            if rec.get("rsc") in names and rec.get("action") in TIMED_OPS and isinstance(ms, int):
                op_ms.setdefault(str(rec["action"]), []).append(ms)
        return Evacuation(agent, limit, n, round(total, 2), downs, reboots, migrated, op_ms)
    finally:
        node = cl.live()
        node.exec(["crm_attribute", "--node", SRC, "--name", "standby", "--delete"])
        for name in names:
            node.exec(["crm_resource", "--resource", name, "--meta", "--set-parameter",
                       "target-role", "--parameter-value", "Stopped"])
        try:
            cl.wait_status(lambda st: not any(st.resources[r].active for r in names
                                              if r in st.resources), SETTLE_S,
                           "evacuation guests stopped")
        finally:
            for name in names:
                node.delete_resource(name)
            for reader in readers.values():
                reader.stop()


# libvirt's qemu log of a domain: "starting up ..." when libvirt starts its emulator (on a
# migration's target: the prepare step), "shutting down, reason=migrated" when the source's is
# stopped after the switch-over (the confirm step).
def qemu_log_events(path: Path) -> list[tuple[float, str]]:
    """(epoch seconds, "start" | "migrated-away") from a domain's qemu log."""
    out: list[tuple[float, str]] = []
    for t, rest in libvirt_log_lines(path):
        what = ("start" if rest.startswith("starting up") else "migrated-away"
                if rest.startswith("shutting down, reason=migrated") else None)
        if what:
            out.append((t, what))
    return out


@dataclass
class Phases:
    """Where each migration's time went, per agent (seconds)."""
    before: list[float] = field(default_factory=list)  # migrate_to began -> target's qemu
    moving: list[float] = field(default_factory=list)  # target's qemu -> source's stopped
    after: list[float] = field(default_factory=list)  # source's stopped -> migrate_to ended
    # migrate_to ended -> migrate_from began on the target, when a monitor ran there between
    # (Pacemaker runs one job at a time per node on this loaded machine) and when none did
    gap_monitor: list[float] = field(default_factory=list)
    gap_free: list[float] = field(default_factory=list)
    first_monitor_ms: list[int] = field(default_factory=list)


def phases(ops: list[dict[str, Any]], qemu_logs: Callable[[str, str], Path]) -> dict[str, Phases]:
    """Each successful migrate_to split at the qemu log's events, and the wait before its
    migrate_from; ``qemu_logs(node, domain)`` is the log's path."""
    out = {agent: Phases() for agent in AGENTS}
    recs = sorted((o for o in ops if isinstance(o.get("t"), float)), key=lambda o: o["t"])
    for o in recs:
        if o.get("action") != "migrate_to" or o.get("rc") != 0:
            continue
        rsc, src = str(o["rsc"]), str(o["node"])
        agent = "ours" if o.get("agent") == "PyVirtualDomain" else "VD"
        dst = DST if src == SRC else SRC
        t0, t1 = float(o["t"]), float(o["t_end"])
        starts = [t for t, w in qemu_log_events(qemu_logs(dst, rsc)) if w == "start"
                  and t0 - 0.5 < t < t1]
        aways = [t for t, w in qemu_log_events(qemu_logs(src, rsc)) if w == "migrated-away"
                 and t0 < t < t1 + 0.5]
        ph = out[agent]
        if starts and aways:
            ph.before.append(starts[0] - t0)
            ph.moving.append(aways[0] - starts[0])
            ph.after.append(t1 - aways[0])
        mf = next((x for x in recs if x["rsc"] == rsc and x.get("action") == "migrate_from"
                   and x["t"] > t0), None)
        if mf is None:
            continue
        between = [x for x in recs if x["node"] == mf["node"] and x is not mf
                   and x.get("action") == "monitor" and x["t"] < mf["t"] and x["t_end"] > t1]
        (ph.gap_monitor if between else ph.gap_free).append(float(mf["t"]) - t1)
        ph.first_monitor_ms += [int(x["ms"]) for x in between if isinstance(x.get("ms"), int)]
    return out


def render_phases(by_agent: dict[str, Phases]) -> list[str]:
    def med(v: list[float], scale: float = 1000.0) -> str:
        return f"{statistics.median(v) * scale:.0f}" if v else "-"

    lines = ["", "Where each migration's time went (ms, medians; libvirt's qemu logs and the "
             "wrapper's):", "",
             "| agent | migrations | migrate_to began -> target's qemu started | -> source's "
             "qemu stopped | -> migrate_to ended | then migrate_from began: a monitor ran on "
             "the target between (n) / none did (n) | those monitors |",
             "|---|---|---|---|---|---|---|"]
    for agent, ph in by_agent.items():
        lines.append(f"| {agent} | {len(ph.before)} | {med(ph.before)} | {med(ph.moving)} | "
                     f"{med(ph.after)} | {med(ph.gap_monitor)} ({len(ph.gap_monitor)}) / "
                     f"{med(ph.gap_free)} ({len(ph.gap_free)}) | "
                     f"{med([float(m) for m in ph.first_monitor_ms], 1.0)} |")
    return lines


def render(results: list[Evacuation], args: argparse.Namespace, host: dict[str, str],
           by_agent: dict[str, Phases] | None = None) -> str:
    lines = [f"Measured {host['when']} on {host['node']} ({host['cores']} cores), agent at "
             f"{host['commit']}; guests: 128 MiB TCG, heartbeat every 20 ms, no dirtying; "
             f"pcs node standby of pcmk-1; {args.rounds} round(s) per cell, agents "
             f"alternating first, after one unmeasured evacuation per agent.", "",
             "| agent | migration-limit | N | all running on pcmk-2 (s) | downtime per guest "
             "ms (median / max) | reboots | migrated |", "|---|---|---|---|---|---|---|"]
    for r in results:
        seen = [d for d in r.downtime_ms if d >= 0]
        silent = len(r.downtime_ms) - len(seen)
        down = (f"{statistics.median(seen):.0f} / {max(seen):.0f}" if seen else "-") + \
            (f" ({silent} never seen beating on {DST})" if silent else "")
        lines.append(f"| {r.agent} | {r.limit} | {r.n} | {r.total_s} | {down} | "
                     f"{r.reboots} | {r.migrated}/{r.n} |")
    lines += ["", "Each agent's operations during the evacuations (ms, from the wrapper's log; "
              "its own start adds ~20 ms to each, for both agents alike):", "",
              "| agent | operation | count | median | p90 | max |", "|---|---|---|---|---|---|"]
    for agent in AGENTS:
        for op in TIMED_OPS:
            ms = sorted(m for r in results if r.agent == agent for m in r.op_ms.get(op, []))
            if ms:
                lines.append(f"| {agent} | {op} | {len(ms)} | {statistics.median(ms):.0f} | "
                             f"{ms[int(0.9 * (len(ms) - 1))]} | {ms[-1]} |")
    lines += ["", "Ours as a ratio of VirtualDomain's time (medians over the rounds):", ""]
    for limit in sorted({r.limit for r in results}):
        for n in sorted({r.n for r in results}):
            ours, ours_out = _timed(results, "ours", limit, n)
            vd, vd_out = _timed(results, "VD", limit, n)
            out = [f"{k} round{'s' if k > 1 else ''} of {a} left out"
                   for a, k in (("ours", ours_out), ("VD", vd_out)) if k]
            note = f" ({', '.join(out)}: a guest never seen beating on {DST})" if out else ""
            if ours and vd:
                lines.append(f"- migration-limit {limit}, N={n}: "
                             f"{statistics.median(ours) / statistics.median(vd):.2f}x{note}")
            elif out:
                lines.append(f"- migration-limit {limit}, N={n}: no ratio{note}")
    if by_agent:
        lines += render_phases(by_agent)
    return "\n".join(lines) + "\n"


def _timed(results: list[Evacuation], agent: str, limit: str, n: int) -> tuple[list[float], int]:
    """The cell's times, and how many of its rounds have none (a guest never seen beating on
    the target: inf)."""
    cell = [r.total_s for r in results if (r.agent, r.limit, r.n) == (agent, limit, n)]
    timed = [t for t in cell if math.isfinite(t)]
    return timed, len(cell) - len(timed)


def plot(results: list[Evacuation], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for agent in AGENTS:
        for limit in sorted({r.limit for r in results}):
            pts = [(n, statistics.median(timed)) for n in sorted({r.n for r in results})
                   for timed in [_timed(results, agent, limit, n)[0]] if timed]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                        label=f"{'PyVirtualDomain' if agent == 'ours' else 'VirtualDomain'}, "
                              f"migration-limit {limit}")
    ax.set_xlabel("guests on the node put in standby")
    ax.set_ylabel("seconds until all run on the other node")
    ax.set_xticks(sorted({r.n for r in results}))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--counts", default="1,2,4,8")
    ap.add_argument("--limits", default="unset,1")
    ap.add_argument("--agents", default="ours,VD")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-evacuation.md"))
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.counts.split(",")]
    arts = build_artifacts()
    virt_type = os.environ.get(VIRT_TYPE_ENV, "").strip() or "qemu"
    results: list[Evacuation] = []
    wrapped = wrapper_paths(OPS_LOG.parent, STATE_DIR, AGENTS.values(), OCF_RESOURCE_D)
    binds = tuple((str(wrapper), str(target)) for wrapper, _, target in wrapped)
    with SharedHostLock():
        cl = Cluster(STATE_DIR, dataclasses.replace(TWO_NODES, file_binds=binds))
        cl.stop()  # a crashed earlier run's cluster first
        for wrapper, real, _ in wrapped:
            write_wrapper(wrapper, real, OPS_LOG, OPS_LOG.parent / "lie-none", snapshot=False)
        cl.start()
        try:
            # One evacuation per agent first, not measured: the first one of a run was an
            # outlier (4.03 s where the same cell took 0.54-0.56 s a minute later).
            for agent in args.agents.split(","):
                print("warm-up:", json.dumps(asdict(run_one(cl, agent, "unset", 1, arts,
                                                            virt_type))), flush=True)
            _, measured_from = read_log(OPS_LOG)
            for rnd in range(args.rounds):
                for n in counts:
                    for limit in args.limits.split(","):
                        agents = args.agents.split(",")
                        for agent in (agents if rnd % 2 == 0 else agents[::-1]):
                            r = run_one(cl, agent, limit, n, arts, virt_type)
                            print(json.dumps(asdict(r)), flush=True)
                            results.append(r)
            by_agent = phases(read_log(OPS_LOG, measured_from)[0],
                              lambda node, dom: STATE_DIR / node / "log-libvirt" / "qemu"
                              / f"{dom}.log")
        finally:
            print("; ".join(cl.stop()))
    host = run_facts(ROOT)
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "evacuation.json").write_text(json.dumps(
        {"host": host, "results": [asdict(r) for r in results]}, indent=1))
    out = Path(args.out)
    plot(results, out.with_suffix(".png"))
    write_measured(out, render(results, args, host, by_agent),
                   f"# Evacuating a node\n\n![evacuation time by N]"
                   f"({out.with_suffix('.png').name})\n")
    return 1 if any(r.reboots for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
