"""The harness's fence agent (``fence_pyvd``): a power switch for cluster nodes made of
namespaces (tests/harness/cluster.py), speaking the fence-agents protocol to Pacemaker.

Protocol (as pacemaker-fenced drives fence agents): ``-o metadata`` prints the agent's
metadata; otherwise options come as ``name=value`` lines on stdin (or ``-o ACTION -n PLUG``
style arguments): ``action`` (off, on, reboot, status, list, monitor, metadata,
validate-all), the target in ``port``, ``plug`` or ``nodename``, and the device's own
parameter ``cluster_dir``. Exit 0 is success; ``status`` exits 0 for a node that is on and 2
for one that is off (fence-agents' convention).

``off`` is a power cut: every process of the node's namespaces (corosync, Pacemaker,
libvirtd, qemu, containers) is SIGSTOPped then SIGKILLed, all at once, wherever this agent
itself runs. ``on`` boots the node from nothing (an empty /run, as after a reboot; the CIB on
its "disk" is kept): libvirtd, corosync, pacemakerd. ``reboot`` is ``off`` then ``on``.

Pacemaker runs the agent inside a cluster node's namespaces, where the machine's
/run/netns is hidden; the agent first re-executes itself in the machine's own namespaces,
entered through the cluster's "power switch" (a process the harness keeps there for it),
like a power switch that sits outside the nodes. Every call is logged
(one line, with the time) to ``<cluster_dir>/fence.log``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

METADATA = """<?xml version="1.0" ?>
<resource-agent name="fence_pyvd"
 shortdesc="Power switch for test cluster nodes made of namespaces">
<longdesc>fence_pyvd cuts the power of a PyVirtualDomain test cluster node (every process of
its network and mount namespaces is SIGKILLed at once) and powers it on again (its daemons
start from nothing).</longdesc>
<vendor-url>https://clusterlabs.org</vendor-url>
<parameters>
  <parameter name="action" unique="0" required="1">
    <getopt mixed="-o, --action=[action]"/>
    <content type="string" default="reboot"/>
    <shortdesc lang="en">Fencing action</shortdesc>
  </parameter>
  <parameter name="plug" unique="0" required="1" obsoletes="port">
    <getopt mixed="-n, --plug=[id]"/>
    <content type="string"/>
    <shortdesc lang="en">Cluster node to act on</shortdesc>
  </parameter>
  <parameter name="port" unique="0" required="1" deprecated="1">
    <getopt mixed="-n, --plug=[id]"/>
    <content type="string"/>
    <shortdesc lang="en">Cluster node to act on</shortdesc>
  </parameter>
  <parameter name="cluster_dir" unique="0" required="1">
    <getopt mixed="--cluster-dir=[dir]"/>
    <content type="string"/>
    <shortdesc lang="en">The test cluster's state directory</shortdesc>
  </parameter>
</parameters>
<actions>
  <action name="on" automatic="0"/>
  <action name="off"/>
  <action name="reboot"/>
  <action name="status"/>
  <action name="list"/>
  <action name="monitor"/>
  <action name="metadata"/>
  <action name="validate-all"/>
</actions>
</resource-agent>
"""

# Seconds between power-on and Pacemaker's start on a node this agent powered on.
BOOT_PACEMAKER_DELAY_S = 3.0
ACTIONS = ("on", "off", "reboot", "status", "list", "list-status", "monitor", "metadata",
           "validate-all")
IN_ROOT = "--in-machine-namespaces"
SHORT = {"-o": "action", "-n": "plug"}


def parse(argv: list[str], stdin: TextIO | None) -> dict[str, str]:
    opts: dict[str, str] = {}
    it = iter(argv)
    for arg in it:
        if arg in SHORT:
            opts[SHORT[arg]] = next(it, "")
        elif arg.startswith("--") and "=" in arg:
            name, value = arg[2:].split("=", 1)
            opts[name.replace("-", "_")] = value
    if stdin is not None and not argv and not stdin.isatty():
        for line in stdin.read().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                name, value = line.split("=", 1)
                opts[name.strip()] = value.strip()
    if "option" in opts and "action" not in opts:  # the old name of "action"
        opts["action"] = opts["option"]
    return opts


def _log(cluster_dir: str, text: str) -> None:
    try:
        with open(Path(cluster_dir) / "fence.log", "a", encoding="utf-8") as f:
            f.write(f"{time.time():.3f} {text}\n")
    except OSError:
        pass


def _reexec_in_machine_namespaces(opts: dict[str, str]) -> int:
    """Run the action again in the machine's mount, network and UTS namespaces: those of the
    cluster's power switch process (pid 1's are not readable on every machine)."""
    import subprocess

    from .cluster import Cluster

    switch = Cluster.load(Path(opts["cluster_dir"])).switch_pid()
    if switch is None:
        print("fence_pyvd: the test cluster's power switch process is gone", file=sys.stderr)
        return 1
    args = [f"--{k.replace('_', '-')}={v}" for k, v in opts.items()]
    # the installed agent, as the machine sees it (cluster_dir is at the same path there)
    agent = Path(opts["cluster_dir"]) / "sbin" / "fence_pyvd"
    argv = ["nsenter", "-t", str(switch), "-m", "-n", "-u", "--", sys.executable, str(agent),
            IN_ROOT, *args]

    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, check=False, timeout=300)
    return proc.returncode


def main(argv: list[str], stdin: TextIO | None = None) -> int:
    in_root = IN_ROOT in argv
    argv = [a for a in argv if a != IN_ROOT]
    opts = parse(argv, stdin)
    action = opts.get("action", "reboot")
    if action == "metadata":
        sys.stdout.write(METADATA)
        return 0
    if action not in ACTIONS:
        print(f"fence_pyvd: unknown action {action!r}", file=sys.stderr)
        return 1
    cluster_dir = opts.get("cluster_dir", "")
    if not cluster_dir or not (Path(cluster_dir) / "cluster.json").is_file():
        print(f"fence_pyvd: cluster_dir={cluster_dir!r} is no test cluster", file=sys.stderr)
        return 1
    if action == "validate-all":
        return 0
    if not in_root:
        return _reexec_in_machine_namespaces(opts)
    from .cluster import Cluster

    cluster = Cluster.load(Path(cluster_dir))
    target = opts.get("plug") or opts.get("port") or opts.get("nodename") or ""
    if action in ("list", "list-status"):
        for node in cluster.nodes:
            print(node.name if action == "list" else
                  f"{node.name},{'on' if node.running() else 'off'}")
        return 0
    if action == "monitor":
        return 0
    try:
        node = cluster.node(target)
    except Exception as exc:  # noqa: BLE001 - reported to Pacemaker
        print(f"fence_pyvd: {exc}", file=sys.stderr)
        _log(cluster_dir, f"action={action} target={target} rc=1 ({exc})")
        return 1
    t0 = time.monotonic()
    if action == "status":
        on = node.pid("anchor") is not None
        return 0 if on else 2
    try:
        if action in ("off", "reboot"):
            # by namespace only: a guest container's processes on another node also name the
            # shared pacemaker-remoted in their command line
            killed = node.power_cut()
            _log(cluster_dir, f"action={action} target={target} power cut: "
                              f"{len(killed)} processes killed in {time.monotonic() - t0:.2f}s")
        if action in ("on", "reboot"):
            if node.pid("anchor") is None:
                # A real node boots long after its fencing was reported. One whose Pacemaker
                # is back within a second can join before the fencer has announced the
                # fencing, and then stops for good on hearing of it ("We were allegedly just
                # fenced"; seen with Pacemaker 3.0): Pacemaker starts once this agent has
                # returned and its result has gone out.
                node.boot(pacemaker_delay_s=BOOT_PACEMAKER_DELAY_S)
            _log(cluster_dir, f"action={action} target={target} powered on "
                              f"({time.monotonic() - t0:.2f}s)")
    except Exception as exc:  # noqa: BLE001 - reported to Pacemaker
        print(f"fence_pyvd: {action} {target}: {exc}", file=sys.stderr)
        _log(cluster_dir, f"action={action} target={target} rc=1 ({exc})")
        return 1
    _log(cluster_dir, f"action={action} target={target} rc=0")
    return 0
