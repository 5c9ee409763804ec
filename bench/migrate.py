"""Benchmark: the agent's migrate_to against raw `virsh migrate --live` of the same running
guest between the same two libvirt hosts (tests/harness/twohosts.py), in the same run, and
against the least a Python client does (open both hypervisors, look the domain up, migrate3):
what the agent adds beyond the interpreter and libvirt-python; and against VirtualDomain's
migrate_to and the same least client with multifd (VIR_MIGRATE_PARALLEL, 2 connections).
Each hop's client runs with libvirt's client log on: the time from its exec to its first
virDomainMigrate* call is the client's own share, before libvirt starts migrating.

Hops are interleaved: each round moves the guest A->B->A with each method, the method that goes
first rotating from round to round. All run inside the source host's
namespaces through the same nsenter, from a clean environment: the agent as Pacemaker would run
it (migrate_to with migration_transport=tcp, then migrate_from on the target, timed apart), and
`virsh -c qemu:///system migrate --live NAME qemu+tcp://<target>/system`. After every hop the
state is read back from both daemons (running on the target only, or the run stops).

Run as root under the harness lock (waits for other harness users):
    .venv/bin/python bench/migrate.py [--rounds 25] [--out docs/benchmarks-migrate.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.common import CLEAN_PATH, VENV_PYTHON  # noqa: E402
from tests.harness.domains import import_libvirt  # noqa: E402
from tests.harness.guest import (  # noqa: E402
    INIT_MARKER,
    VIRT_TYPE_ENV,
    build_artifacts,
    domain_xml,
    wait_for_console,
)
from tests.harness.twohosts import NODE_NAMES, SharedHostLock, TwoHosts  # noqa: E402

from bench.measure import libvirt_log_lines  # noqa: E402
from bench.migrate_load import VIRTUAL_DOMAIN, virtual_domain_env  # noqa: E402

OTHER = {"A": "B", "B": "A"}
METHODS = ("agent", "python", "virsh", "VD", "multifd")
# The least a Python client does to live-migrate (argv: name, [--parallel], destination URI;
# --parallel: multifd over 2 connections).
RAW_PYTHON = (
    "import sys, libvirt\n"
    "src = libvirt.open('qemu:///system')\n"
    "dom = src.lookupByName(sys.argv[1])\n"
    "dst = libvirt.open(sys.argv[-1])\n"
    "flags, params = libvirt.VIR_MIGRATE_LIVE, {}\n"
    "if '--parallel' in sys.argv:\n"
    "    flags |= libvirt.VIR_MIGRATE_PARALLEL\n"
    "    params[libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] = 2\n"
    "dom.migrate3(dst, params, flags)\n"
    "dst.close(); src.close()\n")
# What follows the stamp on a line of libvirt's client log that enters a migration API.
MIGRATE_CALL = re.compile(r"\d+: \w+ : virDomainMigrate\w*")
OP_TIMEOUT_MS = 120000
AGENT_PARAMS = {"migration_transport": "tcp"}


@dataclass
class Series:
    wall_s: list[float] = field(default_factory=list)
    qemu_ms: list[float] = field(default_factory=list)  # migration time inside qemu
    downtime_ms: list[float] = field(default_factory=list)
    moved_mib: list[float] = field(default_factory=list)
    from_s: list[float] = field(default_factory=list)  # agent only: migrate_from
    pre_ms: list[float] = field(default_factory=list)  # exec -> first migration API call

    def row(self, label: str) -> str:
        w = self.wall_s
        return (f"| {label} | {len(w)} | {statistics.median(w):.3f} | {min(w):.3f} | "
                f"{max(w):.3f} | {_med(self.pre_ms):.0f} | {_med(self.qemu_ms):.0f} | "
                f"{_med(self.downtime_ms):.0f} | {_med(self.moved_mib):.0f} |")


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def completed_stats(hosts: TwoHosts, host: str, name: str) -> dict[str, Any]:
    libvirt = import_libvirt()

    def stats(conn: Any) -> dict[str, Any]:
        dom = conn.lookupByName(name)
        return dict(dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED))

    try:
        return hosts.with_connection(host, stats, 10.0, "completed job stats")
    except libvirt.libvirtError:
        return {}


def check_only_on(hosts: TwoHosts, name: str, host: str) -> None:
    deadline = time.monotonic() + 15.0
    while True:
        states = hosts.states(name)
        if states[host] == "running" and states[OTHER[host]] is None:
            return
        if time.monotonic() >= deadline:
            raise SystemExit(f"after a hop to host{host}: {states}")
        time.sleep(0.1)


def first_migrate_call(log: Path) -> float | None:
    """When (epoch s) a client entered its first migration API, from libvirt's client log."""
    return next((t for t, rest in libvirt_log_lines(log) if MIGRATE_CALL.match(rest)), None)


def client_log_env(log: Path) -> dict[str, str]:
    """libvirt's client library logs its API calls (with their time) to ``log``."""
    log.unlink(missing_ok=True)
    return {"LIBVIRT_LOG_FILTERS": "1:libvirt", "LIBVIRT_LOG_OUTPUTS": f"1:file:{log}"}


def timed_share(argv: list[str], env: dict[str, str], log: Path, series: Series
                ) -> tuple[float, subprocess.CompletedProcess[str]]:
    """``timed``, and the client's share before its migration call into ``series``."""
    t_exec = time.time()
    wall, proc = timed(argv, {**env, **client_log_env(log)})
    called = first_migrate_call(log)
    if called is not None:
        series.pre_ms.append((called - t_exec) * 1000)
    return wall, proc


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=OP_TIMEOUT_MS / 1000 + 30, check=False)
    return time.perf_counter() - t0, proc


def hop_agent(hosts: TwoHosts, name: str, config: Path, workdir: Path, src: str,
              series: Series) -> None:
    dst = OTHER[src]
    params = {"config": str(config), "hypervisor": "qemu:///system", **AGENT_PARAMS}

    def env_for(action: str, host: str) -> dict[str, str]:
        return hosts.agent_env(action, params, timeout_ms=OP_TIMEOUT_MS, instance=f"vm-{name}",
                               state_dir=workdir / f"rsctmp-{host}",
                               migrate_source=NODE_NAMES[src], migrate_target=NODE_NAMES[dst])

    env = env_for("migrate_to", src)
    wall, proc = timed_share(hosts.agent_argv(src, "migrate_to"), env,
                             workdir / "client.log", series)
    if proc.returncode != 0:
        raise SystemExit(f"agent migrate_to host{src}->host{dst}: rc {proc.returncode}\n"
                         f"{proc.stderr}")
    series.wall_s.append(wall)
    env = env_for("migrate_from", dst)
    wall_from, proc = timed(hosts.agent_argv(dst, "migrate_from"), env)
    if proc.returncode != 0:
        raise SystemExit(f"agent migrate_from on host{dst}: rc {proc.returncode}\n"
                         f"{proc.stderr}")
    series.from_s.append(wall_from)


def hop_vd(hosts: TwoHosts, name: str, config: Path, workdir: Path, src: str,
           series: Series) -> None:
    """One hop by VirtualDomain's migrate_to, as Pacemaker's executor would run it."""
    dst = OTHER[src]
    (workdir / "vd-rsctmp").mkdir(exist_ok=True)
    env = virtual_domain_env(name, config, workdir / "vd-rsctmp", OP_TIMEOUT_MS, src, dst)
    wall, proc = timed_share(hosts.nsenter_argv(src) + [str(VIRTUAL_DOMAIN), "migrate_to"],
                             env, workdir / "client.log", series)
    if proc.returncode != 0:
        raise SystemExit(f"VirtualDomain migrate_to host{src}->host{dst}: rc "
                         f"{proc.returncode}\n{proc.stderr}")
    series.wall_s.append(wall)


def hop_client(hosts: TwoHosts, src: str, label: str, argv_tail: list[str],
               series: Series, log: Path) -> None:
    """One hop by a plain client (virsh, Python) run in the source host: ``argv_tail`` is
    its command, the destination URI appended."""
    dst = OTHER[src]
    argv = hosts.nsenter_argv(src) + argv_tail + [f"qemu+tcp://{NODE_NAMES[dst]}/system"]
    wall, proc = timed_share(argv, {"PATH": CLEAN_PATH, "LANG": "C"}, log, series)
    if proc.returncode != 0:
        raise SystemExit(f"{label} host{src}->host{dst}: rc {proc.returncode}\n"
                         f"{proc.stderr}")
    series.wall_s.append(wall)


def record_qemu(hosts: TwoHosts, name: str, host: str, series: Series) -> None:
    st = completed_stats(hosts, host, name)
    if "time_elapsed" in st:
        series.qemu_ms.append(float(st["time_elapsed"]))
    if "downtime" in st:
        series.downtime_ms.append(float(st["downtime"]))
    if "memory_processed" in st:
        series.moved_mib.append(st["memory_processed"] / 2**20)


def run(rounds: int, out: Path) -> int:
    virt = os.environ.get(VIRT_TYPE_ENV, "").strip() or "qemu"
    arts = build_artifacts()
    ours, ref, raw, vd, multifd = Series(), Series(), Series(), Series(), Series()
    series = {"agent": ours, "virsh": ref, "python": raw, "VD": vd, "multifd": multifd}
    with SharedHostLock(), TwoHosts() as hosts, \
            tempfile.TemporaryDirectory(prefix="pyvd-bench-migrate-") as tmp:
        work = Path(tmp)
        for host in ("A", "B"):
            (work / f"rsctmp-{host}").mkdir()
        name = "pyvd-bench-migrate"
        config = work / f"{name}.xml"
        # Per-host console logs (/var/log/libvirt is private to each host, as on real nodes).
        console = Path("/var/log/libvirt/qemu") / f"{name}.console.log"
        config.write_text(domain_xml(name, "graceful", arts, virt, console))
        start_env = hosts.agent_env("start", {"config": str(config),
                                              "hypervisor": "qemu:///system"},
                                    timeout_ms=60000, instance=f"vm-{name}",
                                    state_dir=work / "rsctmp-A")
        _, proc = timed(hosts.agent_argv("A", "start"), start_env)
        console_a = hosts.host_dir("A") / "log" / "qemu" / console.name
        if proc.returncode != 0 or not wait_for_console(console_a, INIT_MARKER, 60.0):
            raise SystemExit(f"guest did not start on hostA: {proc.stderr}")
        check_only_on(hosts, name, "A")
        time.sleep(2.0)  # let the guest's init settle before the first hop
        where = "A"
        for r in range(rounds):
            order = METHODS[r % len(METHODS):] + METHODS[:r % len(METHODS)]
            for method in order:
                for _ in range(2):  # there and back
                    if method == "agent":
                        hop_agent(hosts, name, config, work, where, ours)
                    elif method == "VD":
                        hop_vd(hosts, name, config, work, where, vd)
                    elif method in ("python", "multifd"):
                        hop_client(hosts, where, f"python migrate3 ({method})",
                                   [str(VENV_PYTHON), "-c", RAW_PYTHON, name,
                                    *(["--parallel"] if method == "multifd" else [])],
                                   series[method], work / "client.log")
                    else:
                        hop_client(hosts, where, "virsh migrate",
                                   ["virsh", "-c", "qemu:///system", "migrate", "--live", name],
                                   ref, work / "client.log")
                    where = OTHER[where]
                    check_only_on(hosts, name, where)
                    record_qemu(hosts, name, where, series[method])
                    time.sleep(0.5)
            print(f"round {r + 1}/{rounds}: medians agent {statistics.median(ours.wall_s):.3f}s,"
                  f" python {statistics.median(raw.wall_s):.3f}s,"
                  f" virsh {statistics.median(ref.wall_s):.3f}s,"
                  f" VD {statistics.median(vd.wall_s):.3f}s", flush=True)
    write_report(ours, ref, raw, rounds, virt, out, vd, multifd)
    return 0


def _version(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    return proc.stdout.splitlines()[0].strip() if proc.stdout else "?"


def write_report(ours: Series, ref: Series, raw: Series, rounds: int, virt: str,
                 out: Path, vd: Series, multifd: Series) -> None:
    ratio = statistics.median(ours.wall_s) / statistics.median(ref.wall_s)
    diff_ms = (statistics.median(ours.wall_s) - statistics.median(ref.wall_s)) * 1000
    raw_ms = (statistics.median(ours.wall_s) - statistics.median(raw.wall_s)) * 1000
    lines = [
        "# Live migration: agent migrate_to vs raw virsh migrate --live",
        "",
        "Generated by `bench/migrate.py` (do not edit by hand). One running guest moved between",
        "two libvirt hosts on one machine (`tests/harness/twohosts.py`: own network, mount and",
        "UTS namespaces, own libvirtd each, TCP without TLS), hops interleaved in the same run:",
        f"each of {rounds} rounds moves the guest A->B->A with each method, the method going",
        "first rotating. All are started the same way (nsenter into the",
        "source host, clean environment). Wall time is from exec to exit of the command; qemu",
        "columns are libvirt's completed-job statistics on the destination.",
        "",
        "- agent: `PyVirtualDomain migrate_to` with `migration_transport=tcp` (destination",
        "  `qemu+tcp://<target>/system`), `OCF_RESKEY_CRM_meta_timeout=120000`; its",
        "  `migrate_from` on the target is timed apart below.",
        "- virsh: `virsh -c qemu:///system migrate --live NAME qemu+tcp://<target>/system`.",
        "- python: the least a Python client does, with the agent's interpreter: open both",
        "  hypervisors, look the domain up, `migrate3(dest, {}, VIR_MIGRATE_LIVE)`.",
        "- VD: `ocf:heartbeat:VirtualDomain migrate_to` with `migration_transport=tcp`, the",
        "  same environment as the agent's.",
        "- multifd: the python client with `VIR_MIGRATE_PARALLEL` and 2 connections.",
        "",
        "\"exec -> migrate call\" is the client's own share: from its exec to its first",
        "`virDomainMigrate*` call (libvirt's client log); what follows is libvirt's and qemu's.",
        "",
        "| method | hops | median s | min s | max s | exec -> migrate call ms (median) | "
        "qemu ms (median) | downtime ms (median) | moved MiB (median) |",
        "|---|---|---|---|---|---|---|---|---|",
        ours.row("agent migrate_to"),
        vd.row("VirtualDomain migrate_to"),
        raw.row("python migrate3"),
        multifd.row("python migrate3, multifd"),
        ref.row("virsh migrate --live"),
        "",
        f"**Agent/VirtualDomain (medians): "
        f"{statistics.median(ours.wall_s) / statistics.median(vd.wall_s):.3f}**; before the "
        f"migration call {_med(ours.pre_ms):.0f} against {_med(vd.pre_ms):.0f} ms. A client "
        f"that took no time at all there would take "
        f"{1 - _med(vd.pre_ms) / (statistics.median(vd.wall_s) * 1000):.3f}x "
        "VirtualDomain's time: the rest is libvirt's and qemu's.",
        "",
        f"**Ratio agent/virsh (medians): {ratio:.3f}** ({diff_ms:+.0f} ms per hop; "
        "target <= 1.05). Agent/python: "
        f"{statistics.median(ours.wall_s) / statistics.median(raw.wall_s):.3f} "
        f"({raw_ms:+.0f} ms: what the agent adds to the least a Python client does).",
        "",
        f"Agent migrate_from on the target (domain already there): median "
        f"{_med(ours.from_s):.3f} s, min {min(ours.from_s):.3f} s, max {max(ours.from_s):.3f} s.",
        "",
        "Environment: "
        f"{platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}; "
        f"{_version(['libvirtd', '--version'])}; "
        f"{_version(['qemu-system-x86_64', '--version'])}; guest: virt type {virt}, "
        "1 vCPU, 128 MiB, diskless kernel+initramfs; "
        f"run {time.strftime('%Y-%m-%d %H:%M:%S %Z')}.",
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=25)  # 20 hops per method swung 0.98x-1.19x
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-migrate.md")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root (starts two libvirtd and qemu)", file=sys.stderr)
        return 2
    return run(args.rounds, args.out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
