"""Benchmark: PyLXCDomain's recurring monitor against ocf:heartbeat:VirtualDomain
(hypervisor=lxc:///system, force_stop=true) on the same running libvirt-lxc container, in the
same run, interleaved round by round.

Starts its own libvirtd (stopped at the end by pid), starts one busybox container through
PyLXCDomain, and writes the table to docs/benchmarks-lxc.md. Run as root:
`.venv/bin/python bench/lxc.py` (ROUNDS=N to change the count).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.common import CLEAN_PATH, HostLock  # noqa: E402
from tests.harness.domains import domain_state, remove_domain  # noqa: E402
from tests.harness.libvirtd import Libvirtd  # noqa: E402
from tests.harness.lxc import (  # noqa: E402
    LXC_URI,
    build_rootfs,
    kill_container_processes,
    new_container,
    remove_cgroups,
)

from bench.measure import Series, cib_file, measure  # noqa: E402

OURS = ROOT / "agents" / "PyLXCDomain"
VD = Path("/usr/lib/ocf/resource.d/heartbeat/VirtualDomain")
PY = sys.executable


def main() -> int:
    rounds = int(os.environ.get("ROUNDS", "30"))
    work = ROOT / "build" / "bench-lxc"
    for d in ("state-ours", "state-vd"):
        (work / d).mkdir(parents=True, exist_ok=True)
    name = "pyvd-bench-lxc"
    rootfs = build_rootfs()
    container = new_container(work, name, "graceful", rootfs)
    lock = HostLock()
    lock.acquire()
    daemon = Libvirtd(uri=LXC_URI)
    daemon.start()
    series: dict[str, Series] = {}
    try:
        remove_domain(name, uri=LXC_URI)
        base = {"PATH": CLEAN_PATH, "LANG": "C", "OCF_ROOT": "/usr/lib/ocf",
                "OCF_RESOURCE_INSTANCE": name, "OCF_RESKEY_config": str(container.config),
                "OCF_RESKEY_CRM_meta_timeout": "30000"}
        ours_env = {**base, "HA_RSCTMP": str(work / "state-ours")}
        start = subprocess.run([PY, str(OURS), "start"], env=ours_env, capture_output=True,
                               text=True, timeout=120)
        if start.returncode != 0 or not container.wait_ready(10.0):
            print(start.stderr, file=sys.stderr)
            return 1
        # Both agents keep the resource's utilization attributes by default: give them the
        # same CIB file and the variable Pacemaker's executor sets, as in bench/run.py.
        cib = cib_file(work, name, "PyLXCDomain")
        rec = {"OCF_RESKEY_CRM_meta_interval": "10000", "CIB_file": str(cib),
               "OCF_RESKEY_crm_feature_set": "3.16.2"}
        vd_params = {"OCF_RESKEY_hypervisor": LXC_URI, "OCF_RESKEY_force_stop": "true"}
        vd_noutil = {f"OCF_RESKEY_{k}": "false" for k in (
            "autoset_utilization_cpu", "autoset_utilization_host_memory",
            "autoset_utilization_hv_memory")}
        floor_q = (f"import libvirt; c=libvirt.open({LXC_URI!r}); "
                   f"c.lookupByName({name!r}).state()")
        rows: dict[str, tuple[list[str], dict[str, str]]] = {
            "floor: python -c pass": ([PY, "-c", "pass"], base),
            "floor: python + libvirt state query": ([PY, "-c", floor_q], base),
            "floor: virsh domstate": (["virsh", "-c", LXC_URI, "domstate", name], base),
            "monitor: PyLXCDomain": ([PY, str(OURS), "monitor"], {**ours_env, **rec}),
            "monitor: PyLXCDomain, utilization off": (
                [PY, str(OURS), "monitor"], {**ours_env, **rec, **vd_noutil}),
            "monitor: VirtualDomain": (
                [str(VD), "monitor"],
                {**base, **rec, **vd_params, "HA_RSCTMP": str(work / "state-vd")}),
            "monitor: VirtualDomain, utilization off": (
                [str(VD), "monitor"],
                {**base, **rec, **vd_params, **vd_noutil, "HA_RSCTMP": str(work / "state-vd")}),
        }
        series = {k: Series() for k in rows}
        for argv, env in rows.values():  # warm caches once
            measure(argv, env)
        for _ in range(rounds):
            for key, (argv, env) in rows.items():
                series[key].add(*measure(argv, env))
        still = domain_state(name, uri=LXC_URI)
        stop = subprocess.run([PY, str(OURS), "stop"], env=ours_env, capture_output=True,
                              text=True, timeout=120)
        if stop.returncode != 0:
            print(stop.stderr, file=sys.stderr)
    finally:
        remove_domain(name, uri=LXC_URI)
        kill_container_processes(name)
        daemon.stop()
        remove_cgroups(name)
        lock.release()
    write_report(series, rounds, still)
    return 0


def _row(key: str, s: Series) -> str:
    return (f"| {key} | {','.join(map(str, sorted(s.rcs)))} | "
            f"{statistics.median(s.wall_ms):.1f} | {min(s.wall_ms):.1f} | "
            f"{max(s.wall_ms):.1f} | {statistics.median(s.cpu_ms):.1f} | "
            f"{min(s.cpu_ms):.1f} | {max(s.cpu_ms):.1f} |")


def _ratio(series: dict[str, Series], a: str, b: str) -> str:
    x, y = series[a], series[b]
    wall = statistics.median(x.wall_ms) / statistics.median(y.wall_ms)
    cpu = statistics.median(x.cpu_ms) / max(statistics.median(y.cpu_ms), 0.001)
    return f"{wall:.2f}x wall, {cpu:.2f}x CPU"


def write_report(series: dict[str, Series], rounds: int, state_after: str | None) -> None:
    lines = [
        "| row | exit codes | wall median ms | min | max | CPU median ms | min | max |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [_row(k, s) for k, s in series.items()]
    lines += ["", "| ratio | value |", "|---|---|"]
    for label, a, b in (
        ("PyLXCDomain / VirtualDomain", "monitor: PyLXCDomain", "monitor: VirtualDomain"),
        ("PyLXCDomain / VirtualDomain, both without utilization",
         "monitor: PyLXCDomain, utilization off", "monitor: VirtualDomain, utilization off"),
        ("PyLXCDomain / python+libvirt floor", "monitor: PyLXCDomain",
         "floor: python + libvirt state query"),
    ):
        lines.append(f"| {label} | {_ratio(series, a, b)} |")
    body = "\n".join(lines)
    doc = f"""# Benchmark: PyLXCDomain monitor vs ocf:heartbeat:VirtualDomain on libvirt-lxc

Measured by `bench/lxc.py` ({rounds} rounds, rows interleaved round by round after one
warm-up run each) on {time.strftime('%Y-%m-%d')}, {platform.node()}: {os.cpu_count()} cores,
Python {platform.python_version()}, libvirt-lxc (`lxc:///system`), one running busybox
container started by PyLXCDomain; both agents monitor that same container through the same
libvirtd. Every row is a recurring monitor (OCF_RESKEY_CRM_meta_interval=10000, timeout
30 s) with a CIB file (`CIB_file`) and `OCF_RESKEY_crm_feature_set`, as under Pacemaker's
executor, so both agents keep the utilization attributes they keep by default; VirtualDomain
runs with `hypervisor=lxc:///system force_stop=true` and OCF_ROOT=/usr/lib/ocf. Wall is the
time from spawn to exit; CPU is user+sys of the agent process and the children it waited for
(`os.wait4` rusage). The container was still
{state_after!r} after the last round.

{body}

Why: VirtualDomain is a shell script that sources ocf-shellfuncs and runs `virsh`
several times per monitor (`virsh domstate`, and with its default parameters three
`virsh dominfo` calls and a `crm_resource` to update utilization attributes); each of those
is a new process that opens its own libvirt connection. PyLXCDomain is one Python process
with one connection and one state query; most of its time is interpreter start-up and
importing libvirt-python (see the python floors); it asks libvirt once for the values behind
the utilization attributes and calls `crm_resource` only when one changed. The "utilization
off" rows set autoset_utilization_*=false for each agent. The host is shared and figures
drift by up to 2x over a day; compare rows of the same run only.
"""
    out = ROOT / "docs" / "benchmarks-lxc.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(doc)
    print(doc)


if __name__ == "__main__":
    sys.exit(main())
