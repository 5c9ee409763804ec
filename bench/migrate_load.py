"""Benchmark: live migration of a BUSY guest (tests/harness/busyguest.py) between two real
libvirt hosts (tests/harness/twohosts.py), at dirty rates from 0 to beyond what the link
carries, with every method under the same op timeout and the same bandwidth cap, in one run.
The cap (--cap link, the default) is the hosts' link itself, limited by tc: every method then
migrates at libvirt's own speed, and the last copy (the guest's pause) crosses the same link.
With --cap qemu each method sets the speed instead (`--bandwidth B`, migration_speed=B), which
qemu lifts for the last copy: pauses are then those of an unlimited link.

- ``virsh``: `virsh migrate --live` (libvirt's defaults), killed at the timeout;
- ``VD``: ocf:heartbeat:VirtualDomain migrate_to, killed at the timeout as
  Pacemaker's executor kills it, and ``VD+downtime`` (migration_downtime set);
- ``ours-abort``, ``ours-downtime``, ``ours-postcopy``: PyVirtualDomain migrate_to with each
  migration_deadline_action (and ``ours-default``: the agent's defaults).

Each run starts a fresh guest on hostA, lets it dirty memory for a few seconds, migrates it,
then reads both daemons and the guest's heartbeat: the outcome (migrated; aborted, still on the
source; failed (under Pacemaker a failed migrate_to is followed by stop and start: a reboot);
guest lost), the wall time, the guest-visible downtime (longest gap between two heartbeats, as
the host received them), the rounds (libvirt's memory iterations) and the bytes moved (job
statistics sampled on the source). Methods are interleaved: within a rate, the order rotates
from round to round.

Run as root under the harness lock:
    .venv/bin/python bench/migrate_load.py [--rates 0,8,16,32,64] [--bandwidth 32]
        [--timeout 60] [--rounds 1] [--out docs/benchmarks-migrate-load.md]
    .venv/bin/python bench/migrate_load.py --quick    # one small case of each (CI checks)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.agent import exit_reason  # noqa: E402
from tests.harness.busyguest import (  # noqa: E402
    BUSY_MARKER,
    SOCKET_DIR,
    HeartbeatReader,
    busy_domain_xml,
)
from tests.harness.common import CLEAN_PATH  # noqa: E402
from tests.harness.guest import VIRT_TYPE_ENV, build_artifacts, wait_for_console  # noqa: E402
from tests.harness.twohosts import NODE_NAMES, SharedHostLock, TwoHosts  # noqa: E402

from bench.measure import run_facts, write_measured  # noqa: E402

VIRTUAL_DOMAIN = Path("/usr/lib/ocf/resource.d/heartbeat/VirtualDomain")
METHODS = ("virsh", "VD", "VD+downtime", "ours-abort", "ours-downtime", "ours-postcopy",
           "ours-default")
# Not in the default run: the agent's defaults plus a qemu feature (--methods to ask for them).
EXTRA_METHODS = {"ours-autoconverge": {"migrate_options": "--auto-converge"},
                 "ours-parallel": {"migrate_options": "--parallel --parallel-connections 2"},
                 # like for like with VD+downtime: the same migration_downtime, our defaults
                 "ours-default+downtime": {"migration_downtime": "1000"}}
MIB = 1024 * 1024
BOOT_S = 60.0
WARMUP_S = 4.0


@dataclass
class Run:
    method: str
    rate: float
    outcome: str  # migrated | aborted-kept | failed-kept | lost | two-copies
    rc: int | None
    wall_s: float
    downtime_ms: float
    rounds: int
    moved_mib: float
    reboot: bool
    reason: str = ""


@dataclass
class JobSampler:
    """Samples the source's job statistics while a migration runs (libvirt's own numbers)."""

    hosts: TwoHosts
    name: str
    last: dict[str, Any] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> JobSampler:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        conn = self.hosts.open("A")
        try:
            while not self._stop.is_set():
                try:
                    stats = conn.lookupByName(self.name).jobStats(0)
                    if stats.get("type", 0):
                        self.last = dict(stats)
                except Exception:  # noqa: BLE001 - gone: the migration ended
                    pass
                self._stop.wait(0.2)
        finally:
            conn.close()

    def stop(self) -> tuple[int, float]:
        self._stop.set()
        return int(self.last.get("memory_iteration", 0)), \
            int(self.last.get("data_processed", self.last.get("memory_processed", 0))) / MIB


def _run_cmd(argv: list[str], env: dict[str, str], limit_s: float) -> tuple[int | None, str]:
    """Run with a hard limit (killed with its process group there, as the executor kills an
    agent at its op timeout)."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd="/", start_new_session=True)
    try:
        _, err = proc.communicate(timeout=limit_s)
        return proc.returncode, err.decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        return None, err.decode(errors="replace")


def virtual_domain_env(name: str, config: Path, rsctmp: Path, timeout_ms: int, src: str,
                       dst: str) -> dict[str, str]:
    """VirtualDomain's migrate_to environment from host ``src`` to ``dst``, as Pacemaker's
    executor gives it (migration over TCP, the hosts' node names)."""
    return {"PATH": CLEAN_PATH, "LANG": "C", "OCF_ROOT": "/usr/lib/ocf",
            "OCF_RESOURCE_INSTANCE": f"vd-{name}", "HA_RSCTMP": str(rsctmp),
            "OCF_RESKEY_CRM_meta_timeout": str(timeout_ms),
            "OCF_RESKEY_CRM_meta_migrate_source": NODE_NAMES[src],
            "OCF_RESKEY_CRM_meta_migrate_target": NODE_NAMES[dst],
            "OCF_RESKEY_config": str(config), "OCF_RESKEY_hypervisor": "qemu:///system",
            "OCF_RESKEY_migration_transport": "tcp"}


class Bench:
    def __init__(self, hosts: TwoHosts, bandwidth: int, timeout_s: float, wss_mib: int,
                 memory_mib: int, beat_ms: int = 20, cap: str = "link") -> None:
        self.hosts = hosts
        self.beat_ms = beat_ms
        self.bandwidth = bandwidth
        # "link": the hosts' link carries `bandwidth` MiB/s (tc), every method at libvirt's
        # own speed; "qemu": each method asks qemu for that rate (virsh --bandwidth,
        # migration_speed), which qemu lifts at the switch-over: the last copy, the guest's
        # pause, then goes at the speed of the unlimited link.
        self.cap = cap
        if cap == "link":
            hosts.cap_link(bandwidth)
        self.timeout_s = timeout_s
        self.wss = wss_mib
        self.memory = memory_mib
        self.arts = build_artifacts()
        self.virt_type = os.environ.get(VIRT_TYPE_ENV, "").strip() or "qemu"
        self.work = Path(ROOT / "build" / "migrate-load")
        self.work.mkdir(parents=True, exist_ok=True)
        for key in ("A", "B"):
            (hosts.host_dir(key) / "lib" / SOCKET_DIR.removeprefix("/var/lib/libvirt/")
             ).mkdir(parents=True, exist_ok=True)

    def sockets(self, name: str) -> dict[str, Path]:
        rel = SOCKET_DIR.removeprefix("/var/lib/libvirt/")
        return {k: self.hosts.host_dir(k) / "lib" / rel / f"{name}.sock" for k in ("A", "B")}

    def new_guest(self, rate: float) -> tuple[str, Path, HeartbeatReader]:
        name = f"pyvd-load-{secrets.token_hex(3)}"
        config = self.work / f"{name}.xml"
        log = Path("/var/log/libvirt/qemu") / f"{name}.console.log"
        config.write_text(busy_domain_xml(name, self.arts, self.virt_type, log,
                                          rate_mib_s=rate, wss_mib=self.wss,
                                          memory_mib=self.memory, beat_ms=self.beat_ms))
        reader = HeartbeatReader(self.sockets(name)).start()
        r = self.agent("A", "start", name, config, {}, 60000)
        if r.rc != 0:
            raise RuntimeError(f"start of {name} failed: {r}")
        console = self.hosts.host_dir("A") / "log" / "qemu" / f"{name}.console.log"
        if not wait_for_console(console, BUSY_MARKER, BOOT_S):
            raise RuntimeError(f"{name} did not start its busy program")
        t0 = time.monotonic()
        if not reader.wait_beats("A", t0, 20.0):
            raise RuntimeError(f"no heartbeat from {name}")
        time.sleep(WARMUP_S)
        return name, config, reader

    def agent(self, host: str, action: str, name: str, config: Path, params: dict[str, str],
              timeout_ms: int) -> Any:
        return self.hosts.run_agent(host, action, {"config": str(config),
                                                   "hypervisor": "qemu:///system", **params},
                                    timeout_ms=timeout_ms, instance=f"vm-{name}",
                                    state_dir=self.work / f"rsctmp-{host}",
                                    migrate_source=NODE_NAMES["A"],
                                    migrate_target=NODE_NAMES["B"])

    def migrate(self, method: str, name: str, config: Path) -> tuple[int | None, str, float]:
        timeout_ms = int(self.timeout_s * 1000)
        t0 = time.monotonic()
        if method == "virsh":
            rc, err = _run_cmd(self.hosts.nsenter_argv("A") + [
                "virsh", "-c", "qemu:///system", "migrate", "--live",
                *(["--bandwidth", str(self.bandwidth)] if self.cap == "qemu" else []),
                name, self.hosts.tcp_uri("B")],
                {"PATH": CLEAN_PATH, "LANG": "C"}, self.timeout_s)
            return rc, err.strip().splitlines()[-1] if err.strip() else "", \
                time.monotonic() - t0
        if method.startswith("VD"):
            env = {**virtual_domain_env(name, config, self.work / "vd-rsctmp", timeout_ms,
                                        "A", "B"),
                   **self._speed("OCF_RESKEY_migration_speed")}
            if method == "VD+downtime":
                env["OCF_RESKEY_migration_downtime"] = "1000"
            Path(env["HA_RSCTMP"]).mkdir(exist_ok=True)
            rc, err = _run_cmd(self.hosts.nsenter_argv("A") + [str(VIRTUAL_DOMAIN), "migrate_to"],
                               env, self.timeout_s)
            return rc, exit_reason(err) or "", time.monotonic() - t0
        params = {"migration_transport": "tcp", **self._speed("migration_speed")}
        if method in EXTRA_METHODS:
            params.update(EXTRA_METHODS[method])
        elif method != "ours-default":
            params["migration_deadline_action"] = method.removeprefix("ours-")
        r = self.agent("A", "migrate_to", name, config, params, timeout_ms)
        return r.rc, r.reason or "", time.monotonic() - t0

    def _speed(self, name: str) -> dict[str, str]:
        """The method's own speed setting (``name``: its option), when the cap is qemu's."""
        return {name: str(self.bandwidth)} if self.cap == "qemu" else {}

    def one(self, method: str, rate: float) -> Run:
        name, config, reader = self.new_guest(rate)
        try:
            boots = reader.boot_ids()
            sampler = JobSampler(self.hosts, name).start()
            t0 = reader.mark()
            rc, reason, wall = self.migrate(method, name, config)
            rounds, moved = sampler.stop()
            time.sleep(1.0)
            states = self.hosts.states(name)
            on_a = states["A"] in ("running", "paused")
            on_b = states["B"] in ("running", "paused")
            # The guest must beat somewhere after the migration.
            after = reader.mark()
            beating = reader.wait_beats("B" if on_b and not on_a else "A", after, 15.0)
            gap_ms = reader.longest_gap(t0) * 1000
            if on_b and not on_a:
                gap_ms = reader.switch_gap("A", "B", t0) * 1000
            reboot = len(reader.boot_ids()) > len(boots)
            if on_a and on_b:
                outcome = "two-copies"
            elif on_b and beating and rc == 0:
                outcome = "migrated"
            elif on_b and beating:
                outcome = "migrated (rc said failed)"
            elif on_a and beating:
                outcome = "aborted-kept" if method.startswith("ours") or rc is not None \
                    else "timed-out-kept"
            else:
                outcome = "lost"
            return Run(method, rate, outcome, rc, round(wall, 2), round(gap_ms),
                       rounds, round(moved, 1), reboot, reason[:160])
        finally:
            reader.stop()
            self.hosts.remove_domain(name)


def outcome_summary(runs: list[Run]) -> list[str]:
    """Per dirty rate and method, how the runs ended as Pacemaker would see them: migrated,
    or a failed migrate_to (rc not 0, or killed at the timeout), which Pacemaker follows with
    a stop on both nodes and a start: a restart of the guest, whatever the bench saw."""
    methods = [m for m in (*METHODS, *EXTRA_METHODS) if any(r.method == m for r in runs)]
    lines = ["Outcomes by dirty rate, as Pacemaker would act on them (migrated / failed "
             "migrate_to, which it follows with stop and start / guest lost or on both hosts):",
             "", "| dirty MiB/s | " + " | ".join(methods) + " |",
             "|---|" + "---|" * len(methods)]
    for rate in sorted({r.rate for r in runs}):
        cells = []
        for method in methods:
            mine = [r for r in runs if r.rate == rate and r.method == method]
            if not mine:
                cells.append("-")
                continue
            bad = sum(r.outcome in ("lost", "two-copies") or r.reboot for r in mine)
            moved = sum(r.outcome == "migrated" and not r.reboot for r in mine)
            cells.append(f"{moved} / {len(mine) - moved - bad} / {bad}")
        lines.append(f"| {rate:g} | " + " | ".join(cells) + " |")
    return lines


def render(runs: list[Run], args: argparse.Namespace, host: dict[str, str]) -> str:
    cap = (f"link capped at {args.bandwidth} MiB/s (tc on the hosts' veth), every method at "
           "libvirt's own migration speed" if args.cap == "link" else
           f"migration speed {args.bandwidth} MiB/s set by every method (qemu's rate limit, "
           "which qemu lifts for the last copy)")
    lines = [f"Measured {host['when']} on {host['node']} ({host['cores']} cores), "
             f"agent at {host['commit']}; busy guest {args.memory} MiB, working set "
             f"{args.wss} MiB, {cap}, "
             f"op timeout {args.timeout:.0f} s, {args.rounds} round(s) per cell, methods "
             f"interleaved; heartbeat every {args.beat} ms (a downtime is known to within "
             "one beat).", "",
             "| dirty MiB/s | method | outcome | rc | wall s | downtime ms | rounds | "
             "moved MiB | reboot |", "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r.rate:g} | {r.method} | {r.outcome} | {r.rc} | {r.wall_s} | "
                     f"{r.downtime_ms:.0f} | {r.rounds} | {r.moved_mib} | "
                     f"{'yes' if r.reboot else 'no'} |")
    lines += ["", *outcome_summary(runs)]
    lines += ["", "Ratios against VirtualDomain (median wall time and downtime where both "
              "migrated):", ""]
    for rate in sorted({r.rate for r in runs}):
        for method in (*METHODS, *EXTRA_METHODS):
            if not method.startswith("ours"):
                continue
            # with migration_downtime set, against VirtualDomain with the same value
            ref = "VD+downtime" if method.endswith("+downtime") else "VD"
            vd = [r for r in runs if r.rate == rate and r.method == ref and
                  r.outcome.startswith("migrated")]
            ours = [r for r in runs if r.rate == rate and r.method == method and
                    r.outcome.startswith("migrated")]
            if vd and ours:
                wall = statistics.median(o.wall_s for o in ours) / statistics.median(
                    v.wall_s for v in vd)
                d_ours = statistics.median(o.downtime_ms for o in ours)
                d_vd = statistics.median(v.downtime_ms for v in vd)
                lines.append(f"- {rate:g} MiB/s, {method}: wall {wall:.2f}x, downtime "
                             f"{d_ours / max(1.0, d_vd):.2f}x ({d_ours:.0f} against "
                             f"{d_vd:.0f} ms) {ref}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="0,8,16,32,64")
    ap.add_argument("--bandwidth", type=int, default=32)
    ap.add_argument("--cap", choices=("link", "qemu"), default="link",
                    help="link: tc caps the hosts' link (every method at libvirt's speed); "
                         "qemu: each method sets the migration speed (lifted at switch-over)")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--wss", type=int, default=96)
    ap.add_argument("--memory", type=int, default=256)
    ap.add_argument("--beat", type=int, default=20, help="the guest's heartbeat period, ms")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--quick", action="store_true",
                    help="one small case of each method (CI: outcome and reboots, not time)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-migrate-load.md"))
    args = ap.parse_args(argv)
    if args.quick:
        args.rates, args.timeout, args.wss, args.memory = "0,16", 30.0, 32, 128
    rates = [float(x) for x in args.rates.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    runs: list[Run] = []
    with SharedHostLock(), TwoHosts() as hosts:
        bench = Bench(hosts, args.bandwidth, args.timeout, args.wss, args.memory, args.beat,
                      args.cap)
        for rate in rates:
            for rnd in range(args.rounds):
                order = methods[rnd % len(methods):] + methods[:rnd % len(methods)]
                for method in order:
                    run = bench.one(method, rate)
                    print(json.dumps(asdict(run)), flush=True)
                    runs.append(run)
    host = run_facts(ROOT)
    out_json = ROOT / "build" / "migrate-load.json"
    out_json.write_text(json.dumps({"host": host, "args": vars(args),
                                    "runs": [asdict(r) for r in runs]}, indent=1))
    if not args.quick:
        write_measured(Path(args.out), render(runs, args, host),
                       "# Live migration under load\n")
    lost = [r for r in runs if r.outcome in ("lost", "two-copies") or r.reboot]
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
