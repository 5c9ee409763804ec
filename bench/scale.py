"""Scale: N real libvirt-lxc containers monitored every 10 s, as Pacemaker would, by
PyLXCDomain and by ocf:heartbeat:VirtualDomain in turn; agent CPU seconds per minute. Two
floors run on the same schedule: `python -c pass` (what any Python agent pays per exec) and
the bare python+libvirt state query (what any libvirt-python agent pays).

Starts its own libvirtd (stopped at the end, by pid) and N busybox containers (removed at the
end, by name). Writes docs/scale.md and docs/scale.png. Run as root: `make bench-scale`
(SCALE_NS="25 50 100", SCALE_WINDOW_S=30 to change the sizes and the measured window).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.common import CLEAN_PATH, HostLock  # noqa: E402
from tests.harness.domains import create_transient, remove_domain  # noqa: E402
from tests.harness.libvirtd import Libvirtd  # noqa: E402
from tests.harness.lxc import LXC_URI, build_rootfs, new_container  # noqa: E402

OURS = ROOT / "agents" / "PyLXCDomain"
VD = Path("/usr/lib/ocf/resource.d/heartbeat/VirtualDomain")
INTERVAL_S = 10.0
# Pacemaker runs at most node-action-limit (default: twice the cores) actions at once.
MAX_PARALLEL = 2 * (os.cpu_count() or 1)
FLOOR_PASS = "floor: python -c pass"
FLOOR_LIBVIRT = "floor: python + libvirt state query"


class Meter:
    """Launches monitors on schedule and adds up their CPU time (wait4 rusage)."""

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self.runs = 0
        self.failures = 0
        self.lock = threading.Lock()
        self.slots = threading.Semaphore(MAX_PARALLEL)

    def add(self, other: Meter) -> None:
        self.cpu_s += other.cpu_s
        self.runs += other.runs
        self.failures += other.failures

    def run(self, argv: list[str], env: dict[str, str]) -> None:
        with self.slots:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, ru = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        with self.lock:
            self.cpu_s += ru.ru_utime + ru.ru_stime
            self.runs += 1
            self.failures += proc.returncode != 0


def monitor_window(jobs: list[tuple[list[str], dict[str, str]]], window_s: float) -> Meter:
    """Each job monitored every INTERVAL_S for window_s, start times spread evenly."""
    meter = Meter()
    threads: list[threading.Thread] = []
    t0 = time.monotonic()
    schedule = sorted((t0 + i * INTERVAL_S / len(jobs) + k * INTERVAL_S, i)
                      for i in range(len(jobs)) for k in range(int(window_s / INTERVAL_S)))
    for at, i in schedule:
        delay = at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        argv, env = jobs[i]
        th = threading.Thread(target=meter.run, args=(argv, env), daemon=True)
        th.start()
        threads.append(th)
    for th in threads:
        th.join(timeout=120)
    return meter


def main() -> int:
    sizes = [int(x) for x in os.environ.get("SCALE_NS", "25 50 100").split()]
    window = float(os.environ.get("SCALE_WINDOW_S", "30"))
    rounds = max(1, int(os.environ.get("SCALE_ROUNDS", "3")))
    work = ROOT / "build" / "scale"
    work.mkdir(parents=True, exist_ok=True)
    for state_dir in ("state-ours", "state-vd"):  # records of containers of an earlier run
        shutil.rmtree(work / state_dir, ignore_errors=True)
    results: list[tuple[int, str, Meter]] = []
    names: list[str] = []
    lock = HostLock()
    lock.acquire()
    daemon = Libvirtd()
    daemon.start()
    try:
        rootfs = build_rootfs()
        base = {"PATH": CLEAN_PATH, "OCF_ROOT": "/usr/lib/ocf", "OCF_RESKEY_CRM_meta_interval":
                str(int(INTERVAL_S * 1000)), "OCF_RESKEY_CRM_meta_timeout": "30000",
                "OCF_RESKEY_hypervisor": LXC_URI}
        jobs_ours: list[tuple[list[str], dict[str, str]]] = []
        jobs_vd: list[tuple[list[str], dict[str, str]]] = []
        jobs_pass: list[tuple[list[str], dict[str, str]]] = []
        jobs_floor: list[tuple[list[str], dict[str, str]]] = []
        for n in sizes:
            while len(names) < n:
                name = f"pyvd-scale-{len(names):03d}"
                ct = new_container(work, name, "graceful", rootfs)
                remove_domain(name, LXC_URI)
                create_transient(ct.config.read_text(), LXC_URI)
                names.append(name)
                env = {**base, "OCF_RESKEY_config": str(ct.config),
                       "OCF_RESOURCE_INSTANCE": name}
                jobs_ours.append(([sys.executable, str(OURS), "monitor"],
                                  {**env, "HA_RSCTMP": str(work / "state-ours")}))
                jobs_vd.append(([str(VD), "monitor"], {
                    **env, "HA_RSCTMP": str(work / "state-vd"), "OCF_RESKEY_force_stop": "true",
                    **{f"OCF_RESKEY_autoset_utilization_{a}": "false"
                       for a in ("cpu", "host_memory", "hv_memory")}}))
                jobs_pass.append(([sys.executable, "-c", "pass"], env))
                jobs_floor.append(([sys.executable, "-c", "import libvirt; c=libvirt.open("
                                    f"{LXC_URI!r}); c.lookupByName({name!r}).state()"], env))
            # As Pacemaker probes every resource before monitoring it: one unmeasured run of
            # each agent per container (it also lets new containers settle).
            for argv, env in jobs_ours[:n] + jobs_vd[:n]:
                subprocess.run([*argv[:-1], "monitor"], env={
                    **env, "OCF_RESKEY_CRM_meta_interval": "0"}, stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
            series = [("PyLXCDomain", jobs_ours[:n]), ("VirtualDomain", jobs_vd[:n]),
                      (FLOOR_PASS, jobs_pass[:n]), (FLOOR_LIBVIRT, jobs_floor[:n])]
            # Each series gets `rounds` slices of the window, the order rotating from slice
            # to slice: drift in the machine's background load falls on all of them alike.
            meters = {label: Meter() for label, _ in series}
            for r in range(rounds):
                for label, jobs in series[r % len(series):] + series[:r % len(series)]:
                    print(f"N={n} round {r + 1}/{rounds} {label}: monitoring for "
                          f"{window / rounds:.0f}s", flush=True)
                    meters[label].add(monitor_window(jobs, window / rounds))
            results.extend((n, label, meters[label]) for label, _ in series)
    finally:
        for name in names:
            remove_domain(name, LXC_URI)
        daemon.stop()
        lock.release()
    write_report(results, window, rounds)
    return 0


def write_report(results: list[tuple[int, str, Meter]], window: float,
                 rounds: int) -> None:
    def per_min(m: Meter) -> float:
        return m.cpu_s * 60.0 / window

    rows = ["| guests | agent | monitors | failed | agent CPU s/min | per guest | % of one core |",
            "|---:|---|---:|---:|---:|---:|---:|"]
    for n, label, m in results:
        rows.append(f"| {n} | {label} | {m.runs} | {m.failures} | {per_min(m):.2f} | "
                    f"{per_min(m) / n:.3f} | {per_min(m) / 60 * 100:.1f} |")
    ratios = []
    by: dict[tuple[int, str], Meter] = {(n, lab): m for n, lab, m in results}

    def ratio(a: Meter | None, b: Meter | None) -> str:
        return f"{a.cpu_s / b.cpu_s:.2f}x" if a and b and b.cpu_s else "-"

    for n in sorted({n for n, _, _ in results}):
        ours = by.get((n, "PyLXCDomain"))
        ratios.append(f"| {n} | {ratio(ours, by.get((n, 'VirtualDomain')))} | "
                      f"{ratio(ours, by.get((n, FLOOR_LIBVIRT)))} | "
                      f"{ratio(by.get((n, FLOOR_PASS)), ours)} |")
    plot = _plot(results, per_min)
    doc = f"""# Scale: many guests monitored every 10 s

`make bench-scale` on {time.strftime('%Y-%m-%d')} ({os.cpu_count()} cores): N real
libvirt-lxc busybox containers on one libvirtd, each monitored every 10 s (start times spread
evenly, at most {MAX_PARALLEL} monitors at once, like Pacemaker's node-action-limit), after one
unmeasured probe of each container by each agent (as Pacemaker probes before it monitors), by
PyLXCDomain, by ocf:heartbeat:VirtualDomain (hypervisor=lxc:///system, force_stop=true) and,
on the same schedule, by two floors: `python -c pass` (the interpreter's start, which every
Python agent pays on every exec) and the bare python+libvirt state query (`import libvirt;
open(URI); lookupByName(N).state()`). Each of the four gets {window:.0f} s, in {rounds}
slices taken in rotating order (so drift in the background load falls on all alike). CPU is
user+sys of the processes and the children they waited for (wait4), scaled to one minute.
Utilization updates are off for both agents (no cluster here).

{chr(10).join(rows)}

| guests | PyLXCDomain / VirtualDomain | PyLXCDomain / libvirt floor | python -c pass / ours |
|---:|---:|---:|---:|
{chr(10).join(ratios)}

Issue 8 asks for under 5% of one core at 100 guests: that is 10 monitors a second, so 5 ms
of CPU per monitor. The `python -c pass` row above is what Pacemaker's exec of *any* Python
agent costs before it does anything, and it alone is above that line; the libvirt floor
(`import libvirt` loads and relocates libvirt.so) is several times above it. An agent that
Pacemaker execs per monitor cannot meet the target whatever it does inside; meeting it needs
a different shape (a resident per-host process that holds the libvirt connection, with a
non-Python or pre-forked client), which is a design decision, not a tuning one.

{plot}
"""
    (ROOT / "docs" / "scale.md").write_text(doc)
    print(doc)


def _plot(results: list[tuple[int, str, Meter]], per_min: Callable[[Meter], float]) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "(matplotlib is not installed: no plot)"
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for label, style in (("PyLXCDomain", "-"), ("VirtualDomain", "-"),
                         (FLOOR_LIBVIRT, "--"), (FLOOR_PASS, "--")):
        pts = [(n, per_min(m) / 60 * 100) for n, lab, m in results if lab == label]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", linestyle=style,
                    label=label)
    ax.axhline(5, color="grey", linestyle=":", label="5% of one core")
    ax.set_xlabel("guests monitored every 10 s")
    ax.set_ylabel("agent CPU, % of one core")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "scale.png")
    return "![agent CPU against the number of guests](scale.png)"


if __name__ == "__main__":
    sys.exit(main())
