"""Real corosync 3 + Pacemaker 2.1 clusters without systemd, for cluster tests: one node
("pyvd-node1", fencing off) or two ("pcmk-1", "pcmk-2", fencing on), as in the Pacemaker Remote
guide.

Each cluster node is a "node in namespaces" (tests/harness/nsnode.py): a network namespace plus
a private mount and UTS namespace, entered through an anchor process.

* network: a bridge ``pyvdbr0`` with the node's address (10.79.0.1/24 for the one-node cluster,
  10.80.0.1 and 10.80.0.2 for the two nodes, whose bridges a veth pair joins into one segment).
  Corosync's knet ring and libvirt's migration traffic use it; guest nodes attach to it and
  keep their address wherever they run. The bridge's MAC address is fixed (02:70: and the
  node's IPv4 address), so guests coming and going never change it. No address of the test
  exists outside the namespaces.
* mounts: a sysfs of the namespace (libvirt finds the bridge under /sys/class/net) with the
  machine's cgroup tree moved over (without the hybrid layout's empty cgroup2 mount, which
  breaks libvirt-lxc); per-node directories bound over ``/run``, ``/var/lib/libvirt``,
  ``/var/cache/libvirt``, ``/var/log/libvirt``, ``/etc/libvirt``, ``/var/lib/pacemaker``,
  ``/var/log/pacemaker``, ``/var/lib/corosync``, ``/etc/pacemaker`` (the cluster's authkey),
  ``/etc/hosts`` (every node by name) and ``/usr/lib/ocf/resource.d`` (the system's providers
  plus ``custom``, where ``make install-agents`` put our agents); a private tmpfs on
  ``/dev/shm``; and ``/usr/sbin`` as a read-only overlay of the machine's with the harness's
  fence agent ``fence_pyvd`` added (Pacemaker runs fence agents from /usr/sbin/fence_*).
  Nothing is installed into or changed on the machine itself.
* daemons: virtlogd + ``libvirtd --listen`` (``qemu:///system`` and ``lxc:///system`` inside;
  plain TCP on the node's address for migration, its own host UUID), corosync and pacemakerd.
  The CIB is seeded with dc-deadtime=2s (the first election takes seconds, not ~21 s), a
  resource-stickiness of 100 (running resources stay where they are: no rebalancing moves
  when a node comes back) and, with fencing, ``stonith-enabled=true`` and the fence device
  ``fence-pyvd``.
* a directory shared by all nodes (``shared_dir``: same path everywhere) plays shared storage.

Fencing (tests/harness/fencing.py, the agent ``fence_pyvd``): ``off`` is a power cut of the
node (every process of its namespaces SIGSTOPped then SIGKILLed at once: corosync, Pacemaker,
libvirtd, qemu, containers); ``on`` boots it again from nothing (its ``/run`` emptied, as a
reboot does; the CIB on its disk kept). Pacemaker decides and runs it.

``Cluster.stop()`` stops every pacemakerd (SIGTERM: they stop the resources), then corosync,
destroys what libvirt still runs, stops libvirtd and virtlogd, kills whatever is left of ours
by pid and deletes the network namespaces; it raises if anything survives::

    with Cluster(state_dir, TWO_NODES) as cluster:
        cluster.cibadmin("-C", "-o", "resources", "-X", xml)
        cluster.status()

Command line (hand use, clean-up after a crash)::

    .venv/bin/python -m tests.harness.cluster start one|two | stop | status
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from .common import (
    REPO_ROOT,
    VENV_PYTHON,
    CallTimeout,
    HarnessError,
    children,
    descendants,
    pid_alive,
    read_cmdline,
    read_comm,
    terminate,
    wait_until,
)
from .domains import import_libvirt, with_connection
from .libvirtd import ensure_qemu_user
from .lxc import LXC_EMULATOR
from .nsnode import (
    UNIFIED_CGROUP,
    NsNode,
    create_netns,
    delete_netns,
    hybrid_cgroups,
    netns_exists,
    netns_pids,
    read_pid,
)
from .nsnode import clean_env as _env
from .nsnode import run as _run

BRIDGE = "pyvdbr0"
PREFIX = 24
GUEST_NODE = "guest1"
# Every domain of the cluster tests is named DOMAIN_PREFIX...: teardown finds their leftovers
# (cgroups of containers whose controller was killed) by it.
DOMAIN_PREFIX = "pyvd-cl-"
GUEST_DOMAIN = f"{DOMAIN_PREFIX}guest1"
REMOTE_PORT = 3121
CLUSTER_BUILD_DIR = REPO_ROOT / "build" / "cluster"
DEFAULT_STATE_DIR = CLUSTER_BUILD_DIR / "state"
PCMK_REMOTE_DIR = CLUSTER_BUILD_DIR / "pcmk-remote"
OCF_RESOURCE_D = Path("/usr/lib/ocf/resource.d")
SYSTEM_QEMU_CACHE = Path("/var/cache/libvirt/qemu")
CGROUP_ROOT = Path("/sys/fs/cgroup")
FENCE_AGENT = "fence_pyvd"
FENCE_DEVICE = "fence-pyvd"
# argv[1] of the power switch process (a sleep in the machine's namespaces)
SWITCH_MARK = "2147483646"
LIBVIRT_TCP_PORT = 16509
# virtlogd's rotation size in the nodes: 1 GiB, where an oracle grows ~1.7 MiB an hour.
VIRTLOGD_MAX_SIZE = 1024 ** 3
# Inside the node's namespaces.
PACEMAKER_LOG = "/var/log/pacemaker/pacemaker.log"
# mount point (inside the node) -> subdirectory of the node's dir bound over it
BIND_DIRS = (("/var/lib/libvirt", "lib-libvirt"), ("/var/cache/libvirt", "cache-libvirt"),
             ("/var/log/libvirt", "log-libvirt"), ("/etc/libvirt", "etc-libvirt"),
             ("/var/lib/pacemaker", "lib-pacemaker"), ("/var/log/pacemaker", "log-pacemaker"),
             ("/var/lib/corosync", "lib-corosync"), ("/etc/pacemaker", "etc-pacemaker"))
# Emptied in the private /etc/libvirt: no domain, network or pool of the machine is
# (auto)started by the node's libvirtd.
EMPTIED_LIBVIRT_DIRS = ("qemu", "lxc", "storage", "secrets", "nwfilter")
# Daemons we start, by pidfile below the node's /run (= node dir/run).
PIDFILES = {"anchor": "anchor.pid", "virtlogd": "libvirt/virtlogd.pid",
            "libvirtd": "libvirt/libvirtd.pid", "corosync": "corosync-harness.pid",
            "pacemakerd": "pacemakerd-harness.pid"}
PACEMAKER_DAEMONS = ("pacemakerd", "pacemaker-based", "pacemaker-fenced", "pacemaker-execd",
                     "pacemaker-attrd", "pacemaker-schedulerd", "pacemaker-controld")


@dataclass(frozen=True)
class NodeSpec:
    name: str  # node name = UTS hostname, resolvable on every node
    nodeid: int
    netns: str
    address: str  # on the bridge
    uuid: str  # libvirtd's host_uuid (migration refuses hosts with the same one)


@dataclass(frozen=True)
class Layout:
    nodes: tuple[NodeSpec, ...]
    fencing: bool
    subnet: str  # "10.80.0": guests get addresses in it
    token_ms: int = 1000
    # Files bound over paths inside every node at each boot (source outside, target inside):
    # the soak's agent wrappers (tests/harness/agentwrap.py) over the installed agents.
    file_binds: tuple[tuple[str, str], ...] = ()
    # A tmpfs of this size (e.g. "16m") on the nodes' HA_RSCTMP (/run/resource-agents), so
    # that filling it up fills a small file system of the node, not the machine's disk.
    rsctmp_size: str | None = None

    def guest_address(self, host: int) -> str:
        return f"{self.subnet}.{host}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Layout:
        """The layout ``dataclasses.asdict`` wrote to cluster.json (lists back to tuples)."""
        data = dict(data)
        nodes = tuple(NodeSpec(**n) for n in data.pop("nodes"))
        binds = tuple((str(a), str(b)) for a, b in data.pop("file_binds", ()))
        return cls(nodes=nodes, file_binds=binds, **data)


ONE_NODE = Layout(nodes=(NodeSpec("pyvd-node1", 1, "pyvd-cluster", "10.79.0.1",
                                  "00000000-0000-4000-8000-0000000000c1"),),
                  fencing=False, subnet="10.79.0")
TWO_NODES = Layout(nodes=(NodeSpec("pcmk-1", 1, "pyvd-pcmk-1", "10.80.0.1",
                                   "00000000-0000-4000-8000-0000000000d1"),
                          NodeSpec("pcmk-2", 2, "pyvd-pcmk-2", "10.80.0.2",
                                   "00000000-0000-4000-8000-0000000000d2")),
                   fencing=True, subnet="10.80.0", token_ms=1500)
# The one-node cluster's guest container (tests/cluster/test_guest_node.py).
NODE_NAME = ONE_NODE.nodes[0].name
GUEST_ADDRESS = ONE_NODE.guest_address(2)
# veth pair joining the bridges of a two-node cluster (names exist only inside the nodes).
UPLINK = "pyvdup"

# No crm_feature_set: pacemaker-based discards updates from a CIB claiming a newer one.
SEED_CIB = """<cib validate-with="pacemaker-3.8" epoch="1" num_updates="0" admin_epoch="0">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="cib-bootstrap-options-stonith-enabled" name="stonith-enabled"
                value="{stonith}"/>
        <nvpair id="cib-bootstrap-options-dc-deadtime" name="dc-deadtime" value="2s"/>
        <nvpair id="cib-bootstrap-options-cluster-recheck-interval"
                name="cluster-recheck-interval" value="1min"/>
      </cluster_property_set>
    </crm_config>
    <rsc_defaults>
      <meta_attributes id="rsc-defaults-options">
        <nvpair id="rsc-defaults-options-resource-stickiness" name="resource-stickiness"
                value="100"/>
      </meta_attributes>
    </rsc_defaults>
    <nodes/>
    <resources>{resources}</resources>
    <constraints/>
  </configuration>
  <status/>
</cib>
"""

FENCE_PRIMITIVE = """
      <primitive id="{dev}" class="stonith" type="{agent}">
        <instance_attributes id="{dev}-ia">
          <nvpair id="{dev}-ia-cluster_dir" name="cluster_dir" value={cdir}/>
          <nvpair id="{dev}-ia-pcmk_host_list" name="pcmk_host_list" value={hosts}/>
          <nvpair id="{dev}-ia-pcmk_host_check" name="pcmk_host_check" value="static-list"/>
        </instance_attributes>
        <operations>
          <op id="{dev}-monitor" name="monitor" interval="60s" timeout="20s"/>
        </operations>
      </primitive>"""

COROSYNC_CONF = """totem {{
    version: 2
    cluster_name: pyvd-test
    transport: knet
    crypto_cipher: none
    crypto_hash: none
    token: {token}
}}
nodelist {{
{nodes}}}
quorum {{
    provider: corosync_votequorum
{two_node}}}
logging {{
    to_logfile: yes
    logfile: /var/log/pacemaker/corosync.log
    to_stderr: no
    to_syslog: no
    timestamp: on
}}
"""

def libvirt_config(spec: NodeSpec) -> dict[str, str]:
    """The node's own files in its /etc/libvirt (the machine's copied, these replaced)."""
    a = spec.address
    return {
        "libvirtd.conf": (
            f'listen_tls = 0\nlisten_tcp = 1\nlisten_addr = "{a}"\n'
            f'tcp_port = "{LIBVIRT_TCP_PORT}"\nauth_tcp = "none"\nauth_unix_rw = "none"\n'
            f'host_uuid = "{spec.uuid}"\n'
            'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n'),
        # cgroup_controllers: the machine's other libvirtds share the cgroup tree;
        # migration_host: where the destination tells the source to send the guest.
        "qemu.conf": ('user = "root"\ngroup = "root"\n'
                      'security_driver = "none"\ncgroup_controllers = [ ]\n'
                      f'migration_host = "{a}"\n'),
        # Never rotate a log within a run. Both nodes' virtlogd append to a guest's oracle
        # file (a file chardev with append='on', in the shared directory), each counting
        # only its own writes against max_size (2 MiB by default). One that rotates renames
        # the file under the other, which then writes on into the renamed file: two copies
        # of a guest running at once would write to two files, and the oracle, which reads
        # one file (and a rotated one before it), could not see them interleave.
        "virtlogd.conf": f"max_size = {VIRTLOGD_MAX_SIZE}\n",
    }


def installed_version(package: str) -> str | None:
    proc = _run(["dpkg-query", "-W", "-f=${Version}", package], check=False)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def pacemaker_remoted(cache_dir: Path = PCMK_REMOTE_DIR) -> Path:
    """pacemaker-remoted of the installed pacemaker's version, from the ``pacemaker-remote``
    package unpacked (not installed: it conflicts with ``pacemaker``) under ``cache_dir``."""
    version = installed_version("pacemaker")
    if version is None:
        raise HarnessError("pacemaker is not installed (make deps-system)")
    root = cache_dir / f"root-{version}"
    binary = root / "usr" / "sbin" / "pacemaker-remoted"
    if binary.is_file():
        return binary
    cache_dir.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache_dir.glob(f"pacemaker-remote_{version.replace(':', '%3a')}_*.deb"))
    if not debs:
        proc = subprocess.run(["apt-get", "download", f"pacemaker-remote={version}"],
                              cwd=cache_dir, capture_output=True, text=True, timeout=300,
                              check=False, env=_env())
        debs = sorted(cache_dir.glob(f"pacemaker-remote_{version.replace(':', '%3a')}_*.deb"))
        if not debs:
            raise HarnessError(f"apt-get download pacemaker-remote={version} failed "
                               f"(rc {proc.returncode}): {proc.stderr.strip()}")
    tmp = cache_dir / f".root-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    _run(["dpkg-deb", "-x", str(debs[-1]), str(tmp)], timeout_s=120)
    try:
        tmp.rename(root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    if not binary.is_file():
        raise HarnessError(f"{debs[-1]} has no usr/sbin/pacemaker-remoted")
    return binary


# -- crm_mon's XML ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeStatus:
    name: str
    type: str  # "member", "remote" (guest nodes are remote nodes with a container resource)
    online: bool
    unclean: bool
    container: str | None  # the resource a guest node runs in (id_as_resource)


@dataclass(frozen=True)
class ResourceStatus:
    id: str
    agent: str  # "ocf:custom:PyLXCDomain"
    role: str  # "Started", "Stopped", ...
    active: bool
    failed: bool
    managed: bool
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class ClusterStatus:
    dc: str | None
    nodes: dict[str, NodeStatus]
    resources: dict[str, ResourceStatus]
    failures: tuple[dict[str, str], ...]  # crm_mon's <failure> attributes

    def started_on(self, rsc: str) -> tuple[str, ...]:
        r = self.resources.get(rsc)
        return r.nodes if r is not None and r.role == "Started" and r.active else ()

    def online(self, node: str) -> bool:
        n = self.nodes.get(node)
        return n is not None and n.online


def _bool(value: str | None) -> bool:
    return value == "true"


def parse_crm_mon_xml(text: str) -> ClusterStatus:
    root = ET.fromstring(text)
    dc_el = root.find("./summary/current_dc")
    dc = dc_el.get("name") if dc_el is not None and _bool(dc_el.get("present")) else None
    nodes: dict[str, NodeStatus] = {}
    for n in root.findall("./nodes/node"):
        name = n.get("name", "")
        nodes[name] = NodeStatus(name=name, type=n.get("type", ""), online=_bool(n.get("online")),
                                 unclean=_bool(n.get("unclean")),
                                 container=n.get("id_as_resource"))
    resources: dict[str, ResourceStatus] = {}
    for r in root.iter("resource"):
        rid = r.get("id", "")
        resources[rid] = ResourceStatus(
            id=rid, agent=r.get("resource_agent", ""), role=r.get("role", ""),
            active=_bool(r.get("active")), failed=_bool(r.get("failed")),
            managed=_bool(r.get("managed")),
            nodes=tuple(n.get("name", "") for n in r.findall("node")))
    failures = tuple(dict(f.attrib) for f in root.findall("./failures/failure"))
    return ClusterStatus(dc=dc, nodes=nodes, resources=resources, failures=failures)


# -- Pacemaker's log and fencing history -------------------------------------------------------

# OCF results as the controller names them in its log, lower-cased: Pacemaker 2.1 writes "ok",
# "not running", 3.0 "OK", "Not running" (crm_mon's text too; its XML says what it always said).
OCF_RESULTS = {"ok": 0, "error": 1, "invalid parameter": 2, "unimplemented feature": 3,
               "insufficient privileges": 4, "not installed": 5, "not configured": 6,
               "not running": 7, "promoted": 8, "failed promoted": 9, "failed master": 9,
               "master": 8}
_RESULT_LINE = re.compile(r"Result of (\S+) operation for (\S+) on (\S+): ([^|\n]*?)\s*"
                          r"(?:\|([^\n]*))?$", re.M)


@dataclass(frozen=True)
class OperationResult:
    """One "Result of OP operation for RSC on NODE: RESULT | details" line of the controller.
    ``rc`` is the OCF exit code (from the ``rc=`` detail where the line has one, else from the
    result's words), None when the operation did not complete (timed out, cancelled, ...)."""
    operation: str
    rsc: str
    node: str
    result: str
    rc: int | None
    start: int  # offsets of the line in the text it was read from
    end: int


def operation_results(log: str) -> list[OperationResult]:
    out: list[OperationResult] = []
    for m in _RESULT_LINE.finditer(log):
        details = dict(re.findall(r"(\S+?)=(\S*)", m.group(5) or ""))
        word = re.sub(r"\s*\(.*$", "", m.group(4)).strip().lower()  # "(exit reason)" after it
        rc: int | None = OCF_RESULTS.get(word)
        if details.get("rc", "").lstrip("-").isdigit() and rc is not None:
            rc = int(details["rc"])
        out.append(OperationResult(m.group(1), m.group(2), m.group(3), m.group(4).strip(), rc,
                                   m.start(), m.end()))
    return out


@dataclass(frozen=True)
class Result:
    """A step of :func:`find_in_order`: an operation's result (``node`` None: any node;
    ``rc`` None: any result)."""
    operation: str
    rsc: str
    node: str | None = None
    rc: int | None = 0

    def matches(self, r: OperationResult) -> bool:
        return (r.operation == self.operation and r.rsc == self.rsc
                and self.node in (None, r.node) and self.rc in (None, r.rc))

    def found_in(self, results: Sequence[OperationResult]) -> bool:
        return any(self.matches(r) for r in results)


def find_in_order(log: str, steps: Sequence[str | Result]) -> str | None:
    """None when every step (a regular expression, or an operation's result) is found in
    ``log``, each after the one before; else the first step that is not."""
    results = operation_results(log)
    pos = 0
    for step in steps:
        if isinstance(step, Result):
            found = next((r for r in results if r.start >= pos and step.matches(r)), None)
            end = found.end if found is not None else None
        else:
            m = re.compile(step).search(log, pos)
            end = m.end() if m is not None else None
        if end is None:
            return f"{step} (after position {pos})"
        pos = end
    return None


def parse_fence_history(xml_text: str) -> list[dict[str, str]]:
    """``stonith_admin --history NODE --output-as=xml``: one dict per fencing action
    (action, target, status, ...), the XML's attributes; the text output's words differ
    between Pacemaker versions."""
    root = ET.fromstring(xml_text)
    return [dict(e.attrib) for e in root.iter("fence_event")]


# pid 1 of the guest-node container. It shares the node's root filesystem; /run and /dev/shm
# are the container's own tmpfs. pacemaker-remoted runs as a child, so killing it leaves the
# container up (the cluster must notice and recover the guest itself).
GUEST_INIT = r"""#!/bin/sh
# guest-node init: $1 = directory for events and logs, $2 = pacemaker-remoted binary
D=$1; REMOTED=$2
rpid=
stop() { kill $rpid 2>/dev/null; echo "STOP signal" >> "$D/events"; exit 0; }
trap stop TERM
ip link set lo up
# the never-twice oracle (tests/harness/oracle.py): one line per write to a file every
# ~100 ms, a new random boot id per start; the writer dies with the container (it is in the
# container's PID namespace, whose init this is)
bootid=$(cat /proc/sys/kernel/random/uuid)
( n=0
  while :; do
    read up _ < /proc/uptime; echo "ORACLE $bootid $n $up" >> "$D/oracle"; n=$((n+1))
    sleep 0.1
  done ) </dev/null >/dev/null 2>&1 &
mkdir -p /run/pacemaker /run/resource-agents /run/crm /run/lock
export PCMK_logfile=$D/pacemaker-remoted.log PCMK_logfacility=none
"$REMOTED" >> "$D/remoted.out" 2>&1 &
rpid=$!
echo "BOOT remoted=$rpid $(ip -o -4 addr show eth0 2>/dev/null | awk '{print $4}')" >> "$D/events"
while :; do sleep 1 & wait $!; done
"""


# -- a cluster node --------------------------------------------------------------------------


class ClusterNode(NsNode):
    """One cluster node: libvirtd, corosync and pacemakerd in its own namespaces. Commands
    that read or change the cluster (cibadmin, crm_mon, ...) work from any live node."""

    def __init__(self, spec: NodeSpec, cluster_dir: Path, layout: Layout) -> None:
        super().__init__(spec.name, spec.netns, Path(cluster_dir) / spec.name, PIDFILES)
        self.spec = spec
        self.layout = layout
        self.cluster_dir = Path(cluster_dir)
        self.state_dir = self.dir
        # Below the cluster's directory, same path on every node.
        self.guests_dir = self.cluster_dir / "guests"
        self.shared_dir = self.cluster_dir / "shared"

    # -- facts -----------------------------------------------------------------------------

    @property
    def node_name(self) -> str:
        return self.name

    @property
    def socket(self) -> Path:
        return self.run_dir / "libvirt" / "libvirt-sock"

    def uri(self, driver: str = "lxc") -> str:
        """A libvirt URI reaching the node's libvirtd from outside its namespaces (inside
        them, it is plain ``lxc:///system`` / ``qemu:///system``)."""
        return f"{driver}+unix:///system?socket={self.socket}"

    @property
    def pacemaker_log(self) -> Path:
        """The Pacemaker daemons' log as seen from outside the node."""
        return self.dir / "log-pacemaker" / "pacemaker.log"

    def pacemaker_log_text(self) -> str:
        try:
            return self.pacemaker_log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.pacemaker_log_text().splitlines()[-lines:])

    def console_log(self, domain: str) -> Path:
        """A qemu guest's console log on this node (its domain XML names
        /var/log/libvirt/qemu/<domain>.console.log, which is per node)."""
        return self.dir / "log-libvirt" / "qemu" / f"{domain}.console.log"

    def running(self) -> bool:
        """Powered on: its corosync and pacemakerd run."""
        return self.pid("corosync") is not None and self.pid("pacemakerd") is not None

    # -- running things inside the node -------------------------------------------------------

    def cibadmin(self, *args: str, check: bool = True,
                 timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
        return self.exec(["cibadmin", *args], timeout_s, check)

    def crm_resource(self, *args: str, check: bool = False,
                     timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        return self.exec(["crm_resource", *args], timeout_s, check)

    def crm_mon_text(self, *extra: str) -> str:
        return self.exec(["crm_mon", "-1", *extra], 30.0, True).stdout

    def status(self) -> ClusterStatus:
        out = self.exec(["crm_mon", "-1", "-r", "--output-as=xml"], 30.0, True).stdout
        return parse_crm_mon_xml(out)

    def cib(self, scope: str | None = None) -> ET.Element:
        args = ["-Q"] + (["-o", scope] if scope else [])
        return ET.fromstring(self.cibadmin(*args).stdout)

    def wait_status(self, predicate: Callable[[ClusterStatus], bool], timeout_s: float, what: str,
                    interval_s: float = 0.25) -> ClusterStatus:
        """Poll crm_mon until ``predicate(status)`` holds; the status that satisfied it.
        Raises HarnessError with the last crm_mon output otherwise."""
        box: list[ClusterStatus] = []

        def check() -> bool:
            try:
                st = self.status()
            except (HarnessError, ET.ParseError):
                return False
            box[:] = [st]
            return bool(predicate(st))

        if not wait_until(check, timeout_s, interval_s):
            try:
                text = self.crm_mon_text("-r", "--show-detail")
            except HarnessError as exc:
                text = f"(crm_mon failed: {exc})"
            raise HarnessError(f"not within {timeout_s:.0f}s: {what}\n{text}")
        return box[0]

    def fence_history(self, target: str) -> list[dict[str, str]]:
        proc = self.exec(["stonith_admin", "--history", target, "--output-as=xml"], 30.0, True)
        return parse_fence_history(proc.stdout)

    def set_meta(self, rsc: str, name: str, value: str) -> None:
        self.crm_resource("--resource", rsc, "--meta", "--set-parameter", name,
                          "--parameter-value", value, check=True)

    def set_property(self, name: str, value: str) -> None:
        self.exec(["crm_attribute", "-t", "crm_config", "-n", name, "-v", value], check=True)

    def get_property(self, name: str) -> str | None:
        proc = self.exec(["crm_attribute", "-t", "crm_config", "-n", name, "-G", "-q"])
        return proc.stdout.strip() if proc.returncode == 0 else None

    def cleanup(self, rsc: str) -> None:
        self.crm_resource("--cleanup", "--resource", rsc, check=True)

    def add_primitive(self, rsc: str, agent: str, params: Mapping[str, str],
                      meta: Mapping[str, str] | None = None, monitor_interval: str = "5s",
                      op_timeout: str = "60s", provider: str = "custom",
                      avoid_nodes: Sequence[str] = (), prefer_node: str | None = None,
                      ops: Mapping[str, str] | None = None,
                      monitor_attrs: Mapping[str, str] | None = None,
                      discover_avoided: bool = True) -> None:
        """Create ``ocf:<provider>:<agent>`` stopped, add location constraints (-INFINITY on
        ``avoid_nodes``, INFINITY on ``prefer_node``), then set target-role=Started.

        ``ops`` (operation name -> timeout) replaces the default start/stop/monitor
        operations (all ``op_timeout``); the monitor recurs every ``monitor_interval``, with
        ``monitor_attrs`` as its instance attributes (e.g. OCF_CHECK_LEVEL).
        ``discover_avoided`` False: no probes on ``avoid_nodes`` either (resource-discovery
        never: the agent is not installed on a guest node, and its probe there fails with
        "not installed").

        The resource and its constraints are one CIB update (merged into the configuration):
        created one after the other, a transition computed in between probed the resource on
        the nodes its constraint was about to hide it from (the soak saw "not installed" from
        a guest node). Created stopped, then started: never placed before its constraints."""
        discovery = "" if discover_avoided else " resource-discovery='never'"
        constraints = [f"<rsc_location id={quoteattr(f'{rsc}-avoid-{node}')} "
                       f"rsc={quoteattr(rsc)} node={quoteattr(node)} score='-INFINITY'"
                       f"{discovery}/>" for node in avoid_nodes]
        if prefer_node is not None:
            constraints.append(f"<rsc_location id={quoteattr(f'{rsc}-on-{prefer_node}')} "
                               f"rsc={quoteattr(rsc)} node={quoteattr(prefer_node)} "
                               f"score='INFINITY'/>")
        self.cibadmin("-M", "-o", "configuration", "-X",
                      "<configuration><resources>"
                      + primitive_xml(rsc, agent, params, meta, monitor_interval, op_timeout,
                                      provider, ops, monitor_attrs)
                      + "</resources><constraints>" + "".join(constraints)
                      + "</constraints></configuration>")
        if (meta or {}).get("target-role") is None:
            self.set_meta(rsc, "target-role", "Started")

    def delete_resource(self, rsc: str) -> None:
        """Remove ``rsc`` and its location constraints from the CIB (stop it first)."""
        for el in self.cib("constraints").iter("rsc_location"):
            if el.get("rsc") == rsc:
                self.cibadmin("-D", "-o", "constraints", "-X",
                              f"<rsc_location id={quoteattr(el.get('id', ''))}/>")
        self.cibadmin("-D", "-o", "resources", "-X", f"<primitive id={quoteattr(rsc)}/>")

    def operations(self, rsc: str) -> list[dict[str, str]]:
        """The resource's operation history in the CIB status section (lrm_rsc_op), with
        the node each one ran on (``on_node``)."""
        status = self.cib("status")
        out = []
        for state in status.iter("node_state"):
            for op in state.iter("lrm_rsc_op"):
                if op.get("id", "").startswith(f"{rsc}_"):
                    out.append({**op.attrib, "on_node": state.get("uname", "")})
        return out

    # -- libvirt -----------------------------------------------------------------------------

    def list_domains(self, driver: str = "lxc") -> dict[str, bool]:
        """Every domain the node's libvirtd knows for ``driver``: name -> active."""
        return with_connection(
            lambda c: {str(d.name()): bool(d.isActive()) for d in c.listAllDomains(0)},
            self.uri(driver), 10.0, f"list {driver} domains")

    def libvirtd_answers(self) -> bool:
        libvirt = import_libvirt()
        try:
            with_connection(lambda c: c.getLibVersion(), self.uri("lxc"), 5.0, "ping")
            return True
        except (CallTimeout, libvirt.libvirtError):
            return False

    def qemu_pids(self, domain: str) -> list[int]:
        """qemu processes of ``domain`` running on this node (its network namespace)."""
        return sorted(p for p in netns_pids(self.netns)
                      if read_comm(p).startswith("qemu-system") and pid_alive(p)
                      and f"guest={domain}," in " ".join(read_cmdline(p)))

    # -- guest node (container) ------------------------------------------------------------

    def guest_dir(self, domain: str = GUEST_DOMAIN) -> Path:
        return self.guests_dir / domain

    def guest_events(self, domain: str = GUEST_DOMAIN) -> list[str]:
        try:
            return (self.guest_dir(domain) / "events").read_text().splitlines()
        except OSError:
            return []

    def write_guest_node_xml(self, domain: str = GUEST_DOMAIN, address: str = GUEST_ADDRESS,
                             mac: str | None = None) -> Path:
        """The libvirt-lxc domain XML of a container running pacemaker-remoted at
        ``address`` on the node's bridge (``mac``: its fixed MAC address, as a guest that
        moves between nodes needs; libvirt picks a new one per start otherwise); its path
        (the resource's config)."""
        remoted = pacemaker_remoted()
        d = self.guest_dir(domain)
        d.mkdir(parents=True, exist_ok=True)
        init = d / "init.sh"
        init.write_text(GUEST_INIT)
        init.chmod(0o755)
        path = d / f"{domain}.xml"
        path.write_text(container_guest_xml(domain, init, d, remoted, address, mac))
        return path

    def controller_pids(self, domain: str) -> list[int]:
        """Live ``libvirt_lxc --name DOMAIN`` controllers (of this node: its netns)."""
        out = []
        for pid in netns_pids(self.netns):
            if read_comm(pid) != "libvirt_lxc" or not pid_alive(pid):
                continue
            argv = read_cmdline(pid)
            if any(a == "--name" and b == domain for a, b in zip(argv, argv[1:], strict=False)):
                out.append(pid)
        return sorted(out)

    def container_init_pid(self, domain: str = GUEST_DOMAIN) -> int | None:
        for ctl in self.controller_pids(domain):
            for child in children(ctl):
                if pid_alive(child):
                    return child
        return None

    def remoted_pid(self, domain: str = GUEST_DOMAIN) -> int | None:
        """Host pid of pacemaker-remoted inside the guest container."""
        init = self.container_init_pid(domain)
        if init is None:
            return None
        for pid in descendants(init):
            if read_comm(pid) == "pacemaker-remot" and pid_alive(pid):
                return pid
        return None

    # -- set-up ------------------------------------------------------------------------------

    def prepare(self, authkey: bytes, corosync_conf: str, hosts: str, seed_cib: str) -> None:
        """The node's directories from nothing (once per cluster start)."""
        for sub in ("run", "log", "mnt") + tuple(s for _, s in BIND_DIRS):
            shutil.rmtree(self.dir / sub, ignore_errors=True)
        for target, sub in BIND_DIRS:
            (self.dir / sub).mkdir(parents=True)
            # The mount point itself: on a machine where libvirt/Pacemaker never ran (their
            # packages create none of these), the bind mount inside the node would fail.
            Path(target).mkdir(parents=True, exist_ok=True)
        for sub in ("log", "mnt/cgroup"):
            (self.dir / sub).mkdir(parents=True)
        cache = self.dir / "cache-libvirt"
        if SYSTEM_QEMU_CACHE.is_dir():
            # libvirtd keeps its probed QEMU capabilities here: seeded, it starts in well
            # under a second instead of ~16 s (it re-probes stale ones itself).
            shutil.copytree(SYSTEM_QEMU_CACHE, cache / "qemu", symlinks=True)
        (self.dir / "log-libvirt" / "qemu").mkdir()
        etc = self.dir / "etc-libvirt"
        shutil.rmtree(etc)
        shutil.copytree("/etc/libvirt", etc, symlinks=True)
        for sub in EMPTIED_LIBVIRT_DIRS:
            shutil.rmtree(etc / sub, ignore_errors=True)
        (etc / "qemu").mkdir()
        for name, text in libvirt_config(self.spec).items():
            (etc / name).write_text(text)
        uid = pwd.getpwnam("hacluster").pw_uid
        gid = grp.getgrnam("haclient").gr_gid
        lib = self.dir / "lib-pacemaker"
        for sub in ("cib", "pengine", "blackbox", "cores"):
            (lib / sub).mkdir()
            os.chown(lib / sub, uid, gid)
            (lib / sub).chmod(0o750)
        (lib / "cib" / "cib.xml").write_text(seed_cib)
        os.chown(lib / "cib" / "cib.xml", uid, gid)
        (lib / "cib" / "cib.xml").chmod(0o600)
        logp = self.dir / "log-pacemaker"
        os.chown(logp, uid, gid)
        logp.chmod(0o770)
        key = self.dir / "etc-pacemaker" / "authkey"
        key.write_bytes(authkey)
        os.chown(key, 0, gid)
        key.chmod(0o640)
        (self.dir / "corosync.conf").write_text(corosync_conf)
        (self.dir / "hosts").write_text(hosts)

    def _namespace_script(self) -> str:
        d = self.dir
        cdir = self.cluster_dir
        lines = [
            f"hostname {self.name}",
            # this namespace's sysfs, the machine's cgroup tree moved over it
            f"mount --rbind /sys/fs/cgroup {d / 'mnt/cgroup'}",
            "mount -t sysfs -o nosuid,nodev,noexec sysfs /sys",
            f"mount --move {d / 'mnt/cgroup'} /sys/fs/cgroup",
        ]
        if hybrid_cgroups():
            lines.append(f"umount {UNIFIED_CGROUP}")
        lines += [f"mount --bind {d / sub} {target}" for target, sub in BIND_DIRS]
        lines.append(f"mount --bind {d / 'hosts'} /etc/hosts")
        rd = cdir / "resource.d"
        for provider in sorted(p for p in rd.iterdir() if p.name != "custom"):
            lines.append(f"mount --bind {OCF_RESOURCE_D / provider.name} {provider}")
        lines += [
            f"mkdir -p {OCF_RESOURCE_D}",
            f"mount --rbind {rd} {OCF_RESOURCE_D}",
            # the fence agent where Pacemaker looks for it, in this mount namespace only
            f"mount -t overlay overlay -o lowerdir={cdir / 'sbin'}:/usr/sbin /usr/sbin",
            "mount -t tmpfs -o mode=1777,size=64m tmpfs /dev/shm",
            f"mount --bind {self.run_dir} /run",
            "mkdir -p /run/lock /run/resource-agents /run/crm /run/pacemaker /run/libvirt",
        ]
        if self.layout.rsctmp_size:
            lines.append(f"mount -t tmpfs -o mode=755,size={self.layout.rsctmp_size} tmpfs "
                         "/run/resource-agents")
        lines += [f"mount --bind {src} {target}" for src, target in self.layout.file_binds]
        lines += [
            "chown hacluster:haclient /run/crm /run/pacemaker",
            # something that lives as long as the node: nsenter's target, whatever else stops
            "setsid sleep 2147483647 </dev/null >/dev/null 2>&1 &",
            "echo $! > /run/anchor.pid",
            "virtlogd -d -p /run/libvirt/virtlogd.pid",
            "libvirtd -d --listen -f /etc/libvirt/libvirtd.conf -p /run/libvirt/libvirtd.pid",
        ]
        return "\n".join(lines) + "\n"

    def boot_libvirt(self) -> None:
        """Power on, first part: an empty /run (as after a reboot), the namespaces, virtlogd
        and libvirtd."""
        shutil.rmtree(self.run_dir, ignore_errors=True)
        (self.run_dir / "libvirt").mkdir(parents=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.enter(self._namespace_script())

    def wait_libvirtd(self, end: float) -> None:
        while not (self.pid("libvirtd") is not None and self.libvirtd_answers()):
            if time.monotonic() >= end:
                raise HarnessError(f"{self.name}: libvirtd did not answer; see "
                                   f"{self.dir / 'log-libvirt' / 'libvirtd.log'}")
            time.sleep(0.1)

    def start_corosync(self) -> None:
        self.spawn("corosync", ["corosync", "-f", "-c", str(self.dir / "corosync.conf")], {})

    def wait_corosync(self, end: float) -> None:
        while self.exec(["corosync-cfgtool", "-s"], 5.0).returncode != 0:
            if self.pid("corosync") is None or time.monotonic() >= end:
                raise HarnessError(f"{self.name}: corosync did not start; see "
                                   f"{self.dir / 'log-pacemaker' / 'corosync.log'}")
            time.sleep(0.1)

    def start_pacemaker(self, delay_s: float = 0.0) -> None:
        """pacemakerd, at once or ``delay_s`` later (its pidfile names the waiting shell,
        which then becomes pacemakerd)."""
        argv = ["pacemakerd"] if delay_s <= 0 else \
            ["/bin/sh", "-c", f"sleep {delay_s:g}; exec pacemakerd"]
        self.spawn("pacemakerd", argv, {"PCMK_logfile": PACEMAKER_LOG, "PCMK_logfacility": "none"})

    def boot(self, timeout_s: float = 60.0, pacemaker_delay_s: float = 0.0) -> None:
        """Power on: namespaces, libvirtd, corosync, pacemakerd (``pacemaker_delay_s`` later;
        it does not wait for the cluster; see Cluster.wait_dc)."""
        end = time.monotonic() + timeout_s
        self.boot_libvirt()
        self.wait_libvirtd(end)
        self.start_corosync()
        self.wait_corosync(end)
        self.start_pacemaker(pacemaker_delay_s)

    def wait_dc(self, end: float) -> None:
        while True:
            try:
                # crmadmin may block before the controller is ready, whatever -t says.
                proc = self.exec(["crmadmin", "-D", "-t", "1000"], timeout_s=3.0)
                if "Designated" in proc.stdout:
                    return
            except CallTimeout:
                pass
            for d in ("corosync", "pacemakerd"):
                if self.pid(d) is None:
                    raise HarnessError(f"{self.name}: {d} exited during start-up; see "
                                       f"{self.dir}\n{self.log_tail()}")
            if time.monotonic() >= end:
                raise HarnessError(f"no DC elected; see {self.pacemaker_log}\n"
                                   f"{self.log_tail()}")
            time.sleep(0.2)

    # -- stop --------------------------------------------------------------------------------

    def destroy_domains(self) -> list[str]:
        done: list[str] = []
        if not (netns_exists(self.netns) and self.pid("libvirtd") is not None
                and self.libvirtd_answers()):
            return done
        libvirt = import_libvirt()
        for driver in ("lxc", "qemu"):
            def destroy_all(conn: Any) -> list[str]:
                names = []
                for dom in conn.listAllDomains(0):
                    try:
                        if dom.isActive():
                            dom.destroy()
                        if dom.isPersistent():
                            dom.undefine()
                        names.append(str(dom.name()))
                    except libvirt.libvirtError:
                        pass
                return names

            try:
                for name in with_connection(destroy_all, self.uri(driver), 30.0,
                                            f"destroy {driver} domains"):
                    done.append(f"{self.name}: removed {driver} domain {name}")
            except (CallTimeout, libvirt.libvirtError) as exc:
                done.append(f"{self.name}: could not list {driver} domains: {exc}")
        return done

    def marks(self) -> tuple[str, ...]:
        return (str(self.dir), str(PCMK_REMOTE_DIR))

    def shutdown(self, stop_timeout_s: float) -> list[str]:
        """Everything of this node stopped: libvirt's domains destroyed, libvirtd and
        virtlogd stopped, whatever is left killed (call after pacemakerd and corosync)."""
        done = self.destroy_domains()
        if netns_exists(self.netns):
            for daemon in ("libvirtd", "virtlogd"):
                pid = self.pid(daemon)
                if pid is not None:
                    terminate(pid, 20.0)
                    done.append(f"{self.name}: stopped {daemon} ({pid})")
        for pid in self.power_cut(self.marks()):
            done.append(f"{self.name}: killed {read_comm(pid) or pid}")
        for name in PIDFILES.values():
            (self.run_dir / name).unlink(missing_ok=True)
        return done

    def kill_libvirtd(self) -> int:
        """SIGKILL the node's libvirtd; its pid."""
        pid = self.pid("libvirtd")
        if pid is None:
            raise HarnessError(f"{self.name}: libvirtd is not running")
        os.kill(pid, signal.SIGKILL)
        if not wait_until(lambda: not pid_alive(pid), 10.0, 0.02):
            raise HarnessError(f"libvirtd {pid} survived SIGKILL")
        return pid

    def restart_libvirtd(self) -> None:
        if self.pid("libvirtd") is not None:
            return
        (self.run_dir / PIDFILES["libvirtd"]).unlink(missing_ok=True)
        self.daemonize(["libvirtd", "-d", "--listen", "-f", "/etc/libvirt/libvirtd.conf", "-p",
                        "/run/libvirt/libvirtd.pid"], 60.0)
        self.wait_libvirtd(time.monotonic() + 60.0)


def primitive_xml(rsc: str, agent: str, params: Mapping[str, str],
                  meta: Mapping[str, str] | None = None, monitor_interval: str = "5s",
                  op_timeout: str = "60s", provider: str = "custom",
                  ops: Mapping[str, str] | None = None,
                  monitor_attrs: Mapping[str, str] | None = None) -> str:
    """An OCF primitive, created stopped unless ``meta`` names a target-role."""
    def nvpairs(prefix: str, items: Mapping[str, str]) -> str:
        return "".join(f"<nvpair id={quoteattr(f'{rsc}-{prefix}-{k}')} name={quoteattr(k)} "
                       f"value={quoteattr(v)}/>" for k, v in items.items())

    all_meta = {"target-role": "Stopped", **(meta or {})}
    timeouts = dict(ops) if ops else {"monitor": op_timeout, "start": op_timeout,
                                      "stop": op_timeout}
    def op_attrs(name: str) -> str:
        if name != "monitor" or not monitor_attrs:
            return ""
        return (f"<instance_attributes id={quoteattr(f'{rsc}-monitor-ia')}>"
                f"{nvpairs('monitor-ia', monitor_attrs)}</instance_attributes>")

    op_xml = "".join(
        f"<op id={quoteattr(f'{rsc}-{name}')} name={quoteattr(name)} "
        f"interval={quoteattr(monitor_interval if name == 'monitor' else '0s')} "
        f"timeout={quoteattr(t)}>{op_attrs(name)}</op>" for name, t in timeouts.items())
    return (f"<primitive id={quoteattr(rsc)} class='ocf' provider={quoteattr(provider)} "
            f"type={quoteattr(agent)}>"
            f"<instance_attributes id={quoteattr(rsc + '-ia')}>{nvpairs('ia', params)}"
            f"</instance_attributes>"
            f"<meta_attributes id={quoteattr(rsc + '-meta')}>{nvpairs('meta', all_meta)}"
            f"</meta_attributes><operations>{op_xml}</operations></primitive>")


def create_node_bridge(netns: str, address: str) -> None:
    """The node's bridge ``BRIDGE`` in ``netns``, up, with the node's ``address``.

    Its MAC address is set, as a host's bridge has its NIC's: a bridge whose address
    nobody set takes the lowest of its ports' and changes as they come and go. Guest taps
    (fe:54:...) can be lower than the uplink veth's random address; a guest migrating in or
    out then changed the node's MAC, the peer's ARP entry went stale and corosync lost the
    link for seconds: both nodes fenced (soak seed 3)."""
    octets = [int(o) for o in address.split(".")]
    mac = "02:70:" + ":".join(f"{o:02x}" for o in octets)
    _run(["ip", "-n", netns, "link", "add", BRIDGE, "address", mac, "type", "bridge"])
    _run(["ip", "-n", netns, "addr", "add", f"{address}/{PREFIX}", "dev", BRIDGE])
    _run(["ip", "-n", netns, "link", "set", BRIDGE, "up"])


def container_guest_xml(domain: str, init: Path, guest_dir: Path, remoted: Path,
                        address: str, mac: str | None = None) -> str:
    mac_xml = f"\n      <mac address={quoteattr(mac)}/>" if mac else ""
    return f"""<domain type='lxc'>
  <name>{escape(domain)}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>exe</type>
    <init>{escape(str(init))}</init>
    <initarg>{escape(str(guest_dir))}</initarg>
    <initarg>{escape(str(remoted))}</initarg>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{LXC_EMULATOR}</emulator>
    <filesystem type='ram' accessmode='passthrough'>
      <source usage='16384' units='KiB'/><target dir='/run'/>
    </filesystem>
    <filesystem type='ram' accessmode='passthrough'>
      <source usage='65536' units='KiB'/><target dir='/dev/shm'/>
    </filesystem>
    <interface type='bridge'>{mac_xml}
      <source bridge={quoteattr(BRIDGE)}/>
      <ip address={quoteattr(address)} prefix='{PREFIX}'/>
      <target dev={quoteattr(('v' + domain)[-15:])}/>
      <guest dev='eth0'/>
    </interface>
    <console type='pty'/>
  </devices>
</domain>
"""


# -- the cluster -----------------------------------------------------------------------------


class Cluster:
    """The cluster nodes of ``layout`` (see the module docstring)."""

    def __init__(self, state_dir: Path = DEFAULT_STATE_DIR, layout: Layout = ONE_NODE,
                 start_timeout_s: float = 90.0, stop_timeout_s: float = 120.0) -> None:
        self.dir = Path(state_dir)
        self.layout = layout
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.nodes = [ClusterNode(spec, self.dir, layout) for spec in layout.nodes]
        self.started_in_s: float | None = None
        self._switch: subprocess.Popen[bytes] | None = None

    @classmethod
    def load(cls, state_dir: Path) -> Cluster:
        """The cluster described by ``state_dir/cluster.json`` (the fence agent's view)."""
        data = json.loads((Path(state_dir) / "cluster.json").read_text())
        return cls(Path(state_dir), Layout.from_json(data))

    # -- facts -------------------------------------------------------------------------------

    def node(self, name: str) -> ClusterNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise HarnessError(f"no cluster node {name!r} (nodes: {self.names})")

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    @property
    def shared_dir(self) -> Path:
        return self.dir / "shared"

    @property
    def guests_dir(self) -> Path:
        return self.dir / "guests"

    @property
    def authkey(self) -> bytes:
        return (self.dir / "authkey").read_bytes()

    @property
    def fence_log(self) -> Path:
        return self.dir / "fence.log"

    def switch_pid(self) -> int | None:
        """The power switch: a process of ours in the machine's own namespaces, which the
        fence agent (run by Pacemaker inside a node) enters to power nodes off and on."""
        pid = read_pid(self.dir / "switch.pid")
        if pid is None or not pid_alive(pid) or read_comm(pid) != "sleep" \
                or read_cmdline(pid)[1:] != [SWITCH_MARK]:
            return None
        return pid

    def _start_switch(self) -> None:
        self._switch = subprocess.Popen(["sleep", SWITCH_MARK], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True, env=_env())
        (self.dir / "switch.pid").write_text(f"{self._switch.pid}\n")

    def _stop_switch(self) -> str | None:
        pid = self.switch_pid()
        (self.dir / "switch.pid").unlink(missing_ok=True)
        if pid is not None:
            terminate(pid, 5.0)
        if self._switch is not None:
            self._switch.wait(timeout=10)
            self._switch = None
        return None if pid is None else f"power switch ({pid}) stopped"

    def fence_events(self) -> list[str]:
        try:
            return self.fence_log.read_text().splitlines()
        except OSError:
            return []

    def live(self, exclude: Sequence[str] = ()) -> ClusterNode:
        """A node whose Pacemaker runs (to run cluster-wide commands on)."""
        for n in self.nodes:
            if n.name not in exclude and n.running():
                return n
        raise HarnessError(f"no cluster node runs (excluding {list(exclude)})")

    def other(self, name: str) -> ClusterNode:
        others = [n for n in self.nodes if n.name != name]
        if len(others) != 1:
            raise HarnessError(f"{name} has no single other node")
        return others[0]

    # cluster-wide commands, run on a live node
    def status(self) -> ClusterStatus:
        return self.live().status()

    def wait_status(self, predicate: Callable[[ClusterStatus], bool], timeout_s: float,
                    what: str, interval_s: float = 0.25) -> ClusterStatus:
        """Like ClusterNode.wait_status, asking whichever node runs at each poll (a node may
        be fenced meanwhile)."""
        box: list[ClusterStatus] = []

        def check() -> bool:
            try:
                st = self.live().status()
            except (HarnessError, ET.ParseError):
                return False
            box[:] = [st]
            return bool(predicate(st))

        if not wait_until(check, timeout_s, interval_s):
            try:
                text = self.live().crm_mon_text("-r", "--show-detail")
            except HarnessError as exc:
                text = f"(crm_mon failed: {exc})"
            raise HarnessError(f"not within {timeout_s:.0f}s: {what}\n{text}")
        return box[0]

    def crm_mon_text(self, *extra: str) -> str:
        return self.live().crm_mon_text(*extra)

    # -- start / stop ------------------------------------------------------------------------

    def _seed_cib(self) -> str:
        resources = ""
        if self.layout.fencing:
            resources = FENCE_PRIMITIVE.format(dev=FENCE_DEVICE, agent=FENCE_AGENT,
                                               cdir=quoteattr(str(self.dir)),
                                               hosts=quoteattr(" ".join(self.names)))
        return SEED_CIB.format(stonith="true" if self.layout.fencing else "false",
                               resources=resources)

    def _corosync_conf(self) -> str:
        nodes = "".join(f"    node {{\n        ring0_addr: {n.address}\n        name: {n.name}\n"
                        f"        nodeid: {n.nodeid}\n    }}\n" for n in self.layout.nodes)
        two = "    two_node: 1\n" if len(self.layout.nodes) == 2 else ""
        return COROSYNC_CONF.format(token=self.layout.token_ms, nodes=nodes, two_node=two)

    def _hosts(self) -> str:
        return ("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
                + "".join(f"{n.address} {n.name}\n" for n in self.layout.nodes))

    def _prepare(self) -> None:
        for sub in ("resource.d", "sbin", "shared", "guests"):
            shutil.rmtree(self.dir / sub, ignore_errors=True)
        for sub in ("shared", "guests", "sbin"):
            (self.dir / sub).mkdir(parents=True)
        self.fence_log.unlink(missing_ok=True)
        authkey = os.urandom(4096)
        (self.dir / "authkey").write_bytes(authkey)
        (self.dir / "authkey").chmod(0o600)
        data = asdict(self.layout)
        (self.dir / "cluster.json").write_text(json.dumps(data, indent=1) + "\n")
        # The system's providers (heartbeat, pacemaker) plus ours, installed by the Makefile.
        rd = self.dir / "resource.d"
        rd.mkdir()
        if OCF_RESOURCE_D.is_dir():
            for provider in sorted(OCF_RESOURCE_D.iterdir()):
                if provider.name != "custom" and provider.is_dir():
                    (rd / provider.name).mkdir()
        proc = subprocess.run(["make", "-s", "install-agents", f"OCF_DIR={rd / 'custom'}"],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                              check=False)
        if proc.returncode != 0:
            raise HarnessError(f"make install-agents failed: {proc.stderr.strip()}")
        install_fence_agent(self.dir / "sbin" / FENCE_AGENT)
        for node in self.nodes:
            node.prepare(authkey, self._corosync_conf(), self._hosts(), self._seed_cib())

    def _create_network(self) -> None:
        for spec in self.layout.nodes:
            create_netns(spec.netns)
            create_node_bridge(spec.netns, spec.address)
        if len(self.layout.nodes) == 2:
            a, b = self.layout.nodes
            _run(["ip", "link", "add", UPLINK, "netns", a.netns, "type", "veth", "peer",
                  "name", UPLINK, "netns", b.netns])
            for spec in (a, b):
                _run(["ip", "-n", spec.netns, "link", "set", UPLINK, "master", BRIDGE])
                _run(["ip", "-n", spec.netns, "link", "set", UPLINK, "up"])

    def start(self) -> Cluster:
        """Create the namespaces and start every node; wait for the DC and every node
        online. Cleans up what a crashed run left first; on failure stops what it started."""
        for tool in ("libvirtd", "virtlogd", "corosync", "pacemakerd", "cibadmin", "crm_mon",
                     "crm_resource", "ip", "nsenter", "unshare", "make", LXC_EMULATOR):
            if shutil.which(tool, path=_env()["PATH"]) is None and not os.access(tool, os.X_OK):
                raise HarnessError(f"{tool} is not installed (make deps-system)")
        self.stop()
        started = time.monotonic()
        end = started + self.start_timeout_s
        try:
            # libvirt 9.0's qemu driver fails to start without its built-in user (on a fresh
            # machine nothing created it before these tests, which may run first).
            ensure_qemu_user()
            pacemaker_remoted()
            self.dir.mkdir(parents=True, exist_ok=True)
            self._prepare()
            self._start_switch()
            self._create_network()
            # in step, so that the nodes' daemons start together
            for node in self.nodes:
                node.boot_libvirt()
            for node in self.nodes:
                node.wait_libvirtd(end)
                node.start_corosync()
            for node in self.nodes:
                node.wait_corosync(end)
                node.start_pacemaker()
            self.nodes[0].wait_dc(end)
            self.nodes[0].wait_status(
                lambda st: all(st.online(n) for n in self.names),
                max(1.0, end - time.monotonic()), f"nodes {self.names} online")
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - started
        return self

    def stop(self) -> list[str]:
        """Stop everything (see the module docstring). Idempotent; what it did."""
        done: list[str] = []
        # Every pacemakerd at once: the cluster then stops its resources instead of moving
        # them from one stopping node to the next.
        pms = [(n, n.pid("pacemakerd")) for n in self.nodes if netns_exists(n.netns)]
        t0 = time.monotonic()
        for _, pid in pms:
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
        for node, pid in pms:
            if pid is not None:
                ok = terminate(pid, max(1.0, self.stop_timeout_s - (time.monotonic() - t0)))
                done.append(f"{node.name}: pacemakerd ({pid}) stopped in "
                            f"{time.monotonic() - t0:.1f}s" + ("" if ok else " (killed)"))
        for node in self.nodes:
            cs = node.pid("corosync") if netns_exists(node.netns) else None
            if cs is not None:
                terminate(cs, 30.0)
                done.append(f"{node.name}: corosync ({cs}) stopped")
        survivors: list[str] = []
        for node in self.nodes:
            try:
                done += node.shutdown(self.stop_timeout_s)
            except HarnessError as exc:
                survivors.append(str(exc))
        for node in self.nodes:
            problem = delete_netns(node.netns)
            if problem:
                survivors.append(problem)
            elif not netns_exists(node.netns):
                done.append(f"{node.name}: network namespace gone")
        for cg in leftover_cgroups():
            try:
                for sub in sorted(cg.rglob("*"), key=lambda p: -len(p.parts)):
                    if sub.is_dir():
                        sub.rmdir()
                cg.rmdir()
                done.append(f"removed cgroup {cg}")
            except OSError as exc:
                survivors.append(f"cgroup {cg}: {exc.strerror}")
        stopped = self._stop_switch()
        if stopped:
            done.append(stopped)
        strays = [p for n in self.nodes for p in n.processes(n.marks())]
        if strays:
            survivors.append(f"processes {sorted(set(strays))}")
        if survivors:
            raise HarnessError("cluster teardown left: " + "; ".join(survivors))
        return done

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def install_fence_agent(path: Path) -> None:
    """tests/harness/fence_pyvd with the venv's interpreter in its shebang and the
    repository on its import path (Pacemaker runs it with a minimal environment)."""
    src = (Path(__file__).with_name(FENCE_AGENT)).read_text()
    lines = src.splitlines(keepends=True)
    lines[0] = f"#!{VENV_PYTHON}\n"
    text = "".join(lines).replace("@REPO_ROOT@", str(REPO_ROOT))
    path.write_text(text)
    path.chmod(0o755)


def leftover_cgroups() -> list[Path]:
    """cgroups libvirt made for our domains and did not remove (a killed libvirt_lxc
    controller's, after libvirtd's restart): ``machine/lxc-<pid>-pyvd-cl-*.libvirt-lxc``."""
    found: list[Path] = []
    for machine in CGROUP_ROOT.glob("*/machine"):
        for pattern in (f"lxc-*-{DOMAIN_PREFIX}*.libvirt-lxc",
                        f"qemu-*-{DOMAIN_PREFIX}*.libvirt-qemu"):
            found.extend(p for p in machine.glob(pattern) if p.is_dir())
    return sorted(found)


def main(argv: list[str]) -> int:
    usage = ("usage: python -m tests.harness.cluster start one|two | stop | status\n"
             "  stop/status act on every cluster described below " + str(DEFAULT_STATE_DIR))
    if not argv or argv[0] not in ("start", "stop", "status") \
            or (argv[0] == "start" and argv[1:] not in (["one"], ["two"])) \
            or (argv[0] != "start" and len(argv) != 1):
        print(usage, file=sys.stderr)
        return 2
    from .twohosts import SharedHostLock

    with SharedHostLock():
        if argv[0] == "start":
            layout = TWO_NODES if argv[1] == "two" else ONE_NODE
            cluster = Cluster(DEFAULT_STATE_DIR / f"manual-{argv[1]}", layout)
            cluster.start()
            print(f"cluster {cluster.names} up in {cluster.started_in_s:.1f}s "
                  f"(state in {cluster.dir})")
            print(cluster.crm_mon_text())
            return 0
        found = sorted(DEFAULT_STATE_DIR.glob("*/cluster.json"))
        for path in found:
            cluster = Cluster.load(path.parent)
            print(f"{cluster.dir}:")
            if argv[0] == "stop":
                for line in cluster.stop():
                    print(f"  {line}")
            else:
                print(f"  power switch {cluster.switch_pid()}")
                for n in cluster.nodes:
                    print(f"  {n.name} {({d: n.pid(d) for d in PIDFILES})}")
        if not found:
            print(f"no cluster state below {DEFAULT_STATE_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
