"""Benchmarks: PyVirtualDomain against ocf:heartbeat:VirtualDomain on the same running guest,
in the same run, interleaved round by round, with floors measured the same way.

Starts its own libvirtd (stopped at the end by pid), boots one tiny guest, and writes the
table to docs/benchmarks.md. Run as root: `make bench` (ROUNDS=N to change the count).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.common import CLEAN_PATH, DEFAULT_CACHE_DIR, HostLock  # noqa: E402
from tests.harness.domains import remove_domain  # noqa: E402
from tests.harness.guest import (  # noqa: E402
    ACPID_MARKER,
    AGENT_MARKER,
    INIT_MARKER,
    GuestOptions,
    build_artifacts,
    detect_virt_type,
    domain_xml,
    wait_for_console,
)
from tests.harness.libvirtd import Libvirtd  # noqa: E402

from bench.measure import Series, cib_file, measure  # noqa: E402

OURS = ROOT / "agents" / "PyVirtualDomain"
VD = Path("/usr/lib/ocf/resource.d/heartbeat/VirtualDomain")
PY = sys.executable
URI = "qemu:///system"


def main() -> int:
    rounds = int(os.environ.get("ROUNDS", "30"))
    work = ROOT / "build" / "bench"
    (work / "state-ours").mkdir(parents=True, exist_ok=True)
    (work / "state-vd").mkdir(parents=True, exist_ok=True)
    name = "pyvd-bench"
    lock = HostLock()
    lock.acquire()
    daemon = Libvirtd()
    daemon.start()
    try:
        arts = build_artifacts(DEFAULT_CACHE_DIR)
        virt = detect_virt_type(arts, DEFAULT_CACHE_DIR)
        console = work / f"{name}.console.log"
        cfg = work / f"{name}.xml"
        # With the qemu guest agent: the OCF_CHECK_LEVEL=20 row pings it.
        cfg.write_text(domain_xml(name, "graceful", arts, virt, console,
                                  options=GuestOptions(agent=True)))
        base = {"PATH": CLEAN_PATH, "OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": name,
                "OCF_RESKEY_config": str(cfg), "OCF_RESKEY_hypervisor": URI,
                "OCF_RESKEY_CRM_meta_timeout": "30000"}
        ours_env = {**base, "HA_RSCTMP": str(work / "state-ours")}
        vd_env = {**base, "HA_RSCTMP": str(work / "state-vd")}
        start = subprocess.run([PY, str(OURS), "start"], env=ours_env, capture_output=True,
                               text=True, timeout=120)
        if start.returncode != 0:
            print(start.stderr, file=sys.stderr)
            return 1
        wait_for_console(console, AGENT_MARKER, 30)
        # Utilization attributes need a CIB: give both agents the same CIB file, and the
        # variable Pacemaker's executor sets, so both do what they do in a cluster.
        cib = cib_file(work, name, "PyVirtualDomain")
        rec = {**base, "OCF_RESKEY_CRM_meta_interval": "10000", "CIB_file": str(cib),
               "OCF_RESKEY_crm_feature_set": "3.16.2"}
        # What most migratable resources carry: the monitor must not pay for it.
        migration_params = {"OCF_RESKEY_migration_transport": "ssh",
                            "OCF_RESKEY_migrateuri": "tcp://%n-mig:49152",
                            "OCF_RESKEY_migrate_options": "--compressed --auto-converge"}
        vd_noutil = {f"OCF_RESKEY_{k}": "false" for k in (
            "autoset_utilization_cpu", "autoset_utilization_host_memory",
            "autoset_utilization_hv_memory")}
        floor_q = (f"import libvirt; c=libvirt.open({URI!r}); "
                   f"c.lookupByName({name!r}).state()")
        rows: dict[str, tuple[list[str], dict[str, str]]] = {
            "floor: python -c pass": ([PY, "-c", "pass"], base),
            "floor: python + libvirt state query": ([PY, "-c", floor_q], base),
            "floor: virsh domstate": (["virsh", "-c", URI, "domstate", name], base),
            "meta-data: ours": ([PY, str(OURS), "meta-data"], ours_env),
            "meta-data: VirtualDomain": ([str(VD), "meta-data"], vd_env),
            "validate-all: ours": ([PY, str(OURS), "validate-all"], ours_env),
            "validate-all: VirtualDomain": ([str(VD), "validate-all"], vd_env),
            "probe: ours": ([PY, str(OURS), "monitor"], ours_env),
            "probe: VirtualDomain": ([str(VD), "monitor"], vd_env),
            "monitor: ours": ([PY, str(OURS), "monitor"],
                              {**rec, "HA_RSCTMP": str(work / "state-ours")}),
            "monitor: ours, with migration parameters": (
                [PY, str(OURS), "monitor"],
                {**rec, **migration_params, "HA_RSCTMP": str(work / "state-ours")}),
            # Issue 21 #7: save_config_on_stop also saves on a monitor that finds the live
            # definition changed; off (the default) the monitor must not pay for it.
            "monitor: ours, save_config_on_stop=true": (
                [PY, str(OURS), "monitor"],
                {**rec, "OCF_RESKEY_save_config_on_stop": "true",
                 "HA_RSCTMP": str(work / "state-ours")}),
            "monitor: ours, OCF_CHECK_LEVEL=20 (guest agent ping)": (
                [PY, str(OURS), "monitor"],
                {**rec, "OCF_CHECK_LEVEL": "20", "HA_RSCTMP": str(work / "state-ours")}),
            "monitor: VirtualDomain": ([str(VD), "monitor"],
                                       {**rec, "HA_RSCTMP": str(work / "state-vd")}),
            "monitor: VirtualDomain, utilization off": (
                [str(VD), "monitor"], {**rec, **vd_noutil, "HA_RSCTMP": str(work / "state-vd")}),
        }
        series = {k: Series() for k in rows}
        for argv, env in rows.values():  # warm caches once
            measure(argv, env)
        for _ in range(rounds):
            for key, (argv, env) in rows.items():
                series[key].add(*measure(argv, env))
        subprocess.run([PY, str(OURS), "stop"], env=ours_env, capture_output=True, timeout=120)
        lifecycle(series, arts, virt, work, base)
    finally:
        remove_domain(name)
        daemon.stop()
        lock.release()
    write_report(series, rounds, virt)
    return 0


def lifecycle(series: dict[str, Series], arts: object, virt: str, work: Path,
              base: dict[str, str]) -> None:
    """start, graceful stop, and stop of a guest that ignores shutdown (20 s op timeout), each
    agent in turn on the same guest, START_STOP_ROUNDS times."""
    rounds = int(os.environ.get("START_STOP_ROUNDS", "4"))
    for mode in ("graceful", "ignore"):
        name = f"pyvd-bench-{mode}"
        console = work / f"{name}.console.log"
        cfg = work / f"{name}.xml"
        cfg.write_text(domain_xml(name, mode, arts, virt, console))  # type: ignore[arg-type]
        for r in range(rounds if mode == "graceful" else max(1, rounds // 2)):
            order = (("ours", [PY, str(OURS)]), ("VirtualDomain", [str(VD)]))
            for who, argv in (order if r % 2 == 0 else order[::-1]):
                env = {**base, "OCF_RESKEY_config": str(cfg), "OCF_RESOURCE_INSTANCE": name,
                       "HA_RSCTMP": str(work / f"state-{who}"),
                       "OCF_RESKEY_CRM_meta_timeout": "20000" if mode == "ignore" else "90000"}
                try:
                    if mode == "graceful":
                        wall, cpu, rc = measure([*argv, "start"], env)
                        _add(series, f"start: {who}", wall, cpu, rc)
                    else:
                        subprocess.run([*argv, "start"], env=env, capture_output=True,
                                       timeout=120)
                    wait_for_console(console, ACPID_MARKER if mode == "graceful"
                                     else INIT_MARKER, 60)
                    time.sleep(1.0)
                    label = "graceful stop" if mode == "graceful" else \
                        "stop, guest ignores shutdown (timeout 20 s)"
                    wall, cpu, rc = measure([*argv, "stop"], env)
                    _add(series, f"{label}: {who}", wall, cpu, rc)
                finally:
                    remove_domain(name)


def _add(series: dict[str, Series], key: str, wall: float, cpu: float, rc: int) -> None:
    series.setdefault(key, Series()).add(wall, cpu, rc)


def _ratio(series: dict[str, Series], ours: str, ref: str) -> str:
    if ours not in series or ref not in series:
        return ""
    a, b = series[ours], series[ref]
    return f"{a.med() / b.med():.2f}x wall, {a.cpu() / max(b.cpu(), 0.001):.2f}x CPU"


def write_report(series: dict[str, Series], rounds: int, virt: str) -> None:
    lines = [
        "| row | exit codes | wall median ms | min | max | CPU median ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for key, s in series.items():
        lines.append(f"| {key} | {','.join(map(str, sorted(s.rcs)))} | {s.med():.1f} | "
                     f"{min(s.wall_ms):.1f} | {max(s.wall_ms):.1f} | {s.cpu():.1f} |")
    ratios = [
        ("meta-data, ours / VirtualDomain", "meta-data: ours", "meta-data: VirtualDomain"),
        ("meta-data, ours / python -c pass", "meta-data: ours", "floor: python -c pass"),
        ("validate-all, ours / VirtualDomain", "validate-all: ours",
         "validate-all: VirtualDomain"),
        ("probe, ours / VirtualDomain", "probe: ours", "probe: VirtualDomain"),
        ("recurring monitor, ours / VirtualDomain", "monitor: ours", "monitor: VirtualDomain"),
        ("recurring monitor, ours / VirtualDomain without utilization", "monitor: ours",
         "monitor: VirtualDomain, utilization off"),
        ("recurring monitor, ours / python+libvirt floor", "monitor: ours",
         "floor: python + libvirt state query"),
        ("recurring monitor with migration_transport, migrateuri, migrate_options / without",
         "monitor: ours, with migration parameters", "monitor: ours"),
        ("recurring monitor with save_config_on_stop=true / without (the default)",
         "monitor: ours, save_config_on_stop=true", "monitor: ours"),
        ("recurring monitor at OCF_CHECK_LEVEL=20 (guest agent ping) / at level 0",
         "monitor: ours, OCF_CHECK_LEVEL=20 (guest agent ping)", "monitor: ours"),
        ("start, ours / VirtualDomain", "start: ours", "start: VirtualDomain"),
        ("graceful stop, ours / VirtualDomain", "graceful stop: ours",
         "graceful stop: VirtualDomain"),
        ("stop of a guest ignoring shutdown, ours / VirtualDomain",
         "stop, guest ignores shutdown (timeout 20 s): ours",
         "stop, guest ignores shutdown (timeout 20 s): VirtualDomain"),
    ]
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [f"| {label} | {_ratio(series, a, b)} |" for label, a, b in ratios]
    body = "\n".join(lines)
    doc = f"""# Benchmarks

Measured by `make bench` ({rounds} rounds, rows interleaved round by round, after one warm-up
run each) on {time.strftime('%Y-%m-%d')}, {platform.node()}: {os.cpu_count()} cores,
Python {platform.python_version()}, one running tiny guest (`<domain type='{virt}'>`), both
agents on the same guest and the same libvirtd. CPU is user+sys of the agent process and the
children it waited for. `monitor` rows are recurring monitors (interval 10 s); `probe` is
interval 0. Recurring monitors run as under Pacemaker with default parameters, so both agents
keep the resource's utilization attributes (cpu, host_memory, hv_memory) in a CIB file
(`CIB_file`): VirtualDomain runs three `virsh dominfo` and reads each attribute with
`crm_resource` on every monitor; PyVirtualDomain asks libvirt once and calls `crm_resource`
only when a value changed. The row "utilization off" is VirtualDomain with
autoset_utilization_*=false. Start and stop rows come after, on fresh guests, each agent in
turn (alternating which goes first): start until the agent returns; graceful stop once the
guest's acpid runs; "guest ignores shutdown" stops a guest that ignores ACPI with a 20 s op
timeout (both agents then destroy it; VirtualDomain waits until 5 s before the timeout).

{body}
"""
    out = ROOT / "docs" / "benchmarks.md"
    out.write_text(doc)
    print(doc)


if __name__ == "__main__":
    sys.exit(main())
