"""A real single-node corosync 3 + Pacemaker 2.1 cluster, without systemd, for cluster tests.

The cluster node ("pyvd-node1") is a network namespace plus a private mount and UTS namespace:

* network: loopback (corosync's ring) and a bridge 10.79.0.1/24 that guest containers attach
  to. No address of the test exists outside the namespace.
* mounts: a sysfs of the namespace (libvirt finds the bridge under /sys/class/net) with the
  machine's cgroup tree moved over (without the hybrid layout's empty cgroup2 mount, which
  breaks libvirt-lxc); per-run directories of the state dir bound over ``/run``,
  ``/var/lib/libvirt``, ``/var/cache/libvirt``, ``/var/log/libvirt``, ``/etc/libvirt``,
  ``/var/lib/pacemaker``, ``/var/log/pacemaker``, ``/var/lib/corosync``, ``/etc/pacemaker``
  (its own authkey) and ``/usr/lib/ocf/resource.d`` (the system's providers plus ``custom``,
  where ``make install-agents`` put our agents); a private tmpfs on ``/dev/shm``.
* daemons: virtlogd + libvirtd (``qemu:///system`` and ``lxc:///system`` inside), corosync
  (knet on 127.0.0.1) and pacemakerd, the CIB seeded with stonith-enabled=false and
  dc-deadtime=2s so the first election takes seconds, not ~21 s.

A guest node ("guest1") is a libvirt-lxc container of that libvirtd sharing the node's root
filesystem, in its own network namespace (Pacemaker's IPC uses abstract unix sockets, per
network namespace) with 10.79.0.2 on the bridge, running ``pacemaker-remoted`` from the
``pacemaker-remote`` package (it conflicts with ``pacemaker``, so it is ``apt-get download``-ed
and unpacked under build/cluster/ once) as a child of its init.

Every command against the cluster runs inside the namespaces (``nsenter`` into an anchor
process). ``stop()`` stops pacemakerd (SIGTERM: it stops the resources), then corosync,
destroys what libvirt still runs, stops libvirtd and virtlogd, kills whatever is left of ours
by pid, and deletes the network namespace; it raises if anything survives::

    with ClusterNode() as node:
        node.cibadmin("-C", "-o", "resources", "-X", xml)
        node.crm_mon_text()

Command line (hand use, clean-up after a crash)::

    .venv/bin/python -m tests.harness.cluster start|stop|status
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from .common import (
    CLEAN_PATH,
    REPO_ROOT,
    CallTimeout,
    HarnessError,
    all_pids,
    pid_alive,
    read_cmdline,
    read_comm,
    terminate,
    wait_until,
)
from .domains import import_libvirt, with_connection
from .lxc import LXC_EMULATOR, descendants
from .nsnode import UNIFIED_CGROUP, hybrid_cgroups, read_pid
from .nsnode import children as _children
from .nsnode import clean_env as _env
from .nsnode import mount_ns as _mount_ns
from .nsnode import netns_exists as _netns_exists
from .nsnode import netns_pids as _netns_pids
from .nsnode import run as _run

NETNS = "pyvd-cluster"
NODE_NAME = "pyvd-node1"
BRIDGE = "pyvdbr0"
HOST_ADDRESS = "10.79.0.1"
PREFIX = 24
GUEST_NODE = "guest1"
# Every domain of the cluster tests is named DOMAIN_PREFIX...: teardown finds their leftovers
# (cgroups of containers whose controller was killed) by it.
DOMAIN_PREFIX = "pyvd-cl-"
GUEST_DOMAIN = f"{DOMAIN_PREFIX}guest1"
GUEST_ADDRESS = "10.79.0.2"
REMOTE_PORT = 3121
CLUSTER_BUILD_DIR = REPO_ROOT / "build" / "cluster"
DEFAULT_STATE_DIR = CLUSTER_BUILD_DIR / "state"
PCMK_REMOTE_DIR = CLUSTER_BUILD_DIR / "pcmk-remote"
OCF_RESOURCE_D = Path("/usr/lib/ocf/resource.d")
SYSTEM_QEMU_CACHE = Path("/var/cache/libvirt/qemu")
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Inside the node's namespaces.
PACEMAKER_LOG = "/var/log/pacemaker/pacemaker.log"
# mount point (inside the node) -> subdirectory of the state dir bound over it
BIND_DIRS = (("/var/lib/libvirt", "lib-libvirt"), ("/var/cache/libvirt", "cache-libvirt"),
             ("/var/log/libvirt", "log-libvirt"), ("/etc/libvirt", "etc-libvirt"),
             ("/var/lib/pacemaker", "lib-pacemaker"), ("/var/log/pacemaker", "log-pacemaker"),
             ("/var/lib/corosync", "lib-corosync"), ("/etc/pacemaker", "etc-pacemaker"))
# Emptied in the private /etc/libvirt: no domain, network or pool of the machine is
# (auto)started by the node's libvirtd.
EMPTIED_LIBVIRT_DIRS = ("qemu", "lxc", "storage", "secrets", "nwfilter")
# Daemons we start, by pidfile below the node's /run (= state_dir/run).
PIDFILES = {"anchor": "anchor.pid", "virtlogd": "libvirt/virtlogd.pid",
            "libvirtd": "libvirt/libvirtd.pid", "corosync": "corosync-harness.pid",
            "pacemakerd": "pacemakerd-harness.pid"}
PACEMAKER_DAEMONS = ("pacemakerd", "pacemaker-based", "pacemaker-fenced", "pacemaker-execd",
                     "pacemaker-attrd", "pacemaker-schedulerd", "pacemaker-controld")

# No crm_feature_set: pacemaker-based discards updates from a CIB claiming a newer one.
SEED_CIB = """<cib validate-with="pacemaker-3.8" epoch="1" num_updates="0" admin_epoch="0">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="cib-bootstrap-options-stonith-enabled" name="stonith-enabled"
                value="false"/>
        <nvpair id="cib-bootstrap-options-dc-deadtime" name="dc-deadtime" value="2s"/>
        <nvpair id="cib-bootstrap-options-cluster-recheck-interval"
                name="cluster-recheck-interval" value="1min"/>
      </cluster_property_set>
    </crm_config>
    <nodes/>
    <resources/>
    <constraints/>
  </configuration>
  <status/>
</cib>
"""

COROSYNC_CONF = """totem {{
    version: 2
    cluster_name: pyvd-test
    transport: knet
    crypto_cipher: none
    crypto_hash: none
    token: 1000
}}
nodelist {{
    node {{
        ring0_addr: 127.0.0.1
        name: {node}
        nodeid: 1
    }}
}}
quorum {{
    provider: corosync_votequorum
}}
logging {{
    to_logfile: yes
    logfile: {log}
    to_stderr: no
    to_syslog: no
    timestamp: on
}}
"""

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
mkdir -p /run/pacemaker /run/resource-agents /run/crm /run/lock
export PCMK_logfile=$D/pacemaker-remoted.log PCMK_logfacility=none
"$REMOTED" >> "$D/remoted.out" 2>&1 &
rpid=$!
echo "BOOT remoted=$rpid $(ip -o -4 addr show eth0 2>/dev/null | awk '{print $4}')" >> "$D/events"
while :; do sleep 1 & wait $!; done
"""


def netns_exists(name: str = NETNS) -> bool:
    return _netns_exists(name)


def netns_pids(name: str = NETNS) -> list[int]:
    return _netns_pids(name)


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


# -- the node --------------------------------------------------------------------------------


class ClusterNode:
    """The single cluster node "pyvd-node1" (see the module docstring)."""

    def __init__(self, state_dir: Path = DEFAULT_STATE_DIR, start_timeout_s: float = 90.0,
                 stop_timeout_s: float = 120.0) -> None:
        self.state_dir = Path(state_dir)
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.run_dir = self.state_dir / "run"  # the node's /run
        self.log_dir = self.state_dir / "log"
        self.guests_dir = self.state_dir / "guests"
        self._children: list[subprocess.Popen[bytes]] = []
        self.started_in_s: float | None = None

    # -- facts -----------------------------------------------------------------------------

    @property
    def node_name(self) -> str:
        return NODE_NAME

    @property
    def socket(self) -> Path:
        return self.run_dir / "libvirt" / "libvirt-sock"

    def uri(self, driver: str = "lxc") -> str:
        """A libvirt URI reaching the node's libvirtd from outside its namespaces (inside
        them, it is plain ``lxc:///system`` / ``qemu:///system``)."""
        return f"{driver}+unix:///system?socket={self.socket}"

    def pid(self, daemon: str) -> int | None:
        """Our daemon's pid while it runs (checked by name and network namespace)."""
        pid = read_pid(self.run_dir / PIDFILES[daemon])
        if pid is None or not pid_alive(pid):
            return None
        comm = read_comm(pid)
        if daemon != "anchor" and comm != daemon:
            return None
        if pid not in netns_pids():
            return None
        return pid

    @property
    def pacemaker_log(self) -> Path:
        """The Pacemaker daemons' log as seen from outside the node."""
        return self.state_dir / "log-pacemaker" / "pacemaker.log"

    def pacemaker_log_text(self) -> str:
        try:
            return self.pacemaker_log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.pacemaker_log_text().splitlines()[-lines:])

    # -- running things inside the node -------------------------------------------------------

    def nsenter_argv(self) -> list[str]:
        anchor = self.pid("anchor")
        if anchor is None:
            raise HarnessError(f"the cluster node's namespaces are gone (no anchor process; "
                               f"state in {self.state_dir})")
        return ["nsenter", "-t", str(anchor), "-n", "-m", "-u", "--"]

    def exec(self, argv: Sequence[str], timeout_s: float = 60.0, check: bool = False,
             env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the node's network, mount and UTS namespaces."""
        return _run(self.nsenter_argv() + list(argv), timeout_s, check, env)

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
                      avoid_nodes: Sequence[str] = (), prefer_node: str | None = None) -> None:
        """Create ``ocf:<provider>:<agent>`` stopped, add location constraints (-INFINITY on
        ``avoid_nodes``, INFINITY on ``prefer_node``), then set target-role=Started.

        A constraint names its resource (IDREF), so it can only follow the resource; created
        started, a VM resource could land on a guest node before its constraint exists."""
        def nvpairs(prefix: str, items: Mapping[str, str]) -> str:
            return "".join(f"<nvpair id={quoteattr(f'{rsc}-{prefix}-{k}')} name={quoteattr(k)} "
                           f"value={quoteattr(v)}/>" for k, v in items.items())

        all_meta = {"target-role": "Stopped", **(meta or {})}
        xml = (f"<primitive id={quoteattr(rsc)} class='ocf' provider={quoteattr(provider)} "
               f"type={quoteattr(agent)}>"
               f"<instance_attributes id={quoteattr(rsc + '-ia')}>{nvpairs('ia', params)}"
               f"</instance_attributes>"
               f"<meta_attributes id={quoteattr(rsc + '-meta')}>{nvpairs('meta', all_meta)}"
               f"</meta_attributes><operations>"
               f"<op id={quoteattr(rsc + '-monitor')} name='monitor' "
               f"interval={quoteattr(monitor_interval)} timeout={quoteattr(op_timeout)}/>"
               f"<op id={quoteattr(rsc + '-start')} name='start' interval='0s' "
               f"timeout={quoteattr(op_timeout)}/>"
               f"<op id={quoteattr(rsc + '-stop')} name='stop' interval='0s' "
               f"timeout={quoteattr(op_timeout)}/></operations></primitive>")
        self.cibadmin("-C", "-o", "resources", "-X", xml)
        for node in avoid_nodes:
            self.cibadmin("-C", "-o", "constraints", "-X",
                          f"<rsc_location id={quoteattr(f'{rsc}-avoid-{node}')} "
                          f"rsc={quoteattr(rsc)} node={quoteattr(node)} score='-INFINITY'/>")
        if prefer_node is not None:
            self.cibadmin("-C", "-o", "constraints", "-X",
                          f"<rsc_location id={quoteattr(f'{rsc}-on-{prefer_node}')} "
                          f"rsc={quoteattr(rsc)} node={quoteattr(prefer_node)} "
                          f"score='INFINITY'/>")
        if (meta or {}).get("target-role") is None:
            self.set_meta(rsc, "target-role", "Started")

    def delete_resource(self, rsc: str) -> None:
        """Remove ``rsc`` and its location constraints from the CIB (stop it first)."""
        self.cibadmin("-D", "-o", "constraints", "-A", f"//rsc_location[@rsc='{rsc}']",
                      check=False)
        self.cibadmin("-D", "-o", "resources", "-X", f"<primitive id={quoteattr(rsc)}/>")

    def operations(self, rsc: str) -> list[dict[str, str]]:
        """The resource's operation history in the CIB status section (lrm_rsc_op)."""
        status = self.cib("status")
        return [dict(op.attrib) for op in status.iter("lrm_rsc_op")
                if op.get("id", "").startswith(f"{rsc}_")]

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

    # -- guest node ------------------------------------------------------------------------

    def guest_dir(self, domain: str = GUEST_DOMAIN) -> Path:
        return self.guests_dir / domain

    def guest_events(self, domain: str = GUEST_DOMAIN) -> list[str]:
        try:
            return (self.guest_dir(domain) / "events").read_text().splitlines()
        except OSError:
            return []

    def write_guest_node_xml(self, domain: str = GUEST_DOMAIN,
                             address: str = GUEST_ADDRESS) -> Path:
        """The libvirt-lxc domain XML of a container running pacemaker-remoted at
        ``address`` on the node's bridge; its path (the resource's config)."""
        remoted = pacemaker_remoted()
        d = self.guest_dir(domain)
        d.mkdir(parents=True, exist_ok=True)
        init = d / "init.sh"
        init.write_text(GUEST_INIT)
        init.chmod(0o755)
        xml = f"""<domain type='lxc'>
  <name>{escape(domain)}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>exe</type>
    <init>{escape(str(init))}</init>
    <initarg>{escape(str(d))}</initarg>
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
    <interface type='bridge'>
      <source bridge={quoteattr(BRIDGE)}/>
      <ip address={quoteattr(address)} prefix='{PREFIX}'/>
      <target dev={quoteattr(('v' + domain)[-15:])}/>
      <guest dev='eth0'/>
    </interface>
    <console type='pty'/>
  </devices>
</domain>
"""
        path = d / f"{domain}.xml"
        path.write_text(xml)
        return path

    def controller_pids(self, domain: str) -> list[int]:
        """Live ``libvirt_lxc --name DOMAIN`` controllers (of this node: its netns)."""
        ours = set(netns_pids())
        out = []
        for pid in ours:
            if read_comm(pid) != "libvirt_lxc" or not pid_alive(pid):
                continue
            argv = read_cmdline(pid)
            if any(a == "--name" and b == domain for a, b in zip(argv, argv[1:], strict=False)):
                out.append(pid)
        return sorted(out)

    def container_init_pid(self, domain: str = GUEST_DOMAIN) -> int | None:
        for ctl in self.controller_pids(domain):
            for child in _children(ctl):
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

    # -- start / stop ----------------------------------------------------------------------

    def _prepare(self) -> None:
        for sub in ("run", "log", "guests", "resource.d", "mnt") + tuple(s for _, s in BIND_DIRS):
            shutil.rmtree(self.state_dir / sub, ignore_errors=True)
        for _, sub in BIND_DIRS:
            (self.state_dir / sub).mkdir(parents=True)
        for sub in ("run", "log", "guests", "mnt/cgroup"):
            (self.state_dir / sub).mkdir(parents=True)
        (self.run_dir / "libvirt").mkdir()
        cache = self.state_dir / "cache-libvirt"
        if SYSTEM_QEMU_CACHE.is_dir():
            # libvirtd keeps its probed QEMU capabilities here: seeded, it starts in well
            # under a second instead of ~16 s (it re-probes stale ones itself).
            shutil.copytree(SYSTEM_QEMU_CACHE, cache / "qemu", symlinks=True)
        (self.state_dir / "log-libvirt" / "qemu").mkdir()
        etc = self.state_dir / "etc-libvirt"
        shutil.rmtree(etc)
        shutil.copytree("/etc/libvirt", etc, symlinks=True)
        for sub in EMPTIED_LIBVIRT_DIRS:
            shutil.rmtree(etc / sub, ignore_errors=True)
        (etc / "qemu").mkdir()
        (etc / "libvirtd.conf").write_text(
            'listen_tls = 0\nlisten_tcp = 0\nauth_unix_rw = "none"\n'
            'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n')
        # cgroup_controllers: the machine's other libvirtd shares the cgroup tree.
        (etc / "qemu.conf").write_text('user = "root"\ngroup = "root"\n'
                                       'security_driver = "none"\ncgroup_controllers = [ ]\n')
        uid = pwd.getpwnam("hacluster").pw_uid
        gid = grp.getgrnam("haclient").gr_gid
        lib = self.state_dir / "lib-pacemaker"
        for sub in ("cib", "pengine", "blackbox", "cores"):
            (lib / sub).mkdir()
            os.chown(lib / sub, uid, gid)
            (lib / sub).chmod(0o750)
        (lib / "cib" / "cib.xml").write_text(SEED_CIB)
        os.chown(lib / "cib" / "cib.xml", uid, gid)
        (lib / "cib" / "cib.xml").chmod(0o600)
        logp = self.state_dir / "log-pacemaker"
        os.chown(logp, uid, gid)
        logp.chmod(0o770)
        key = self.state_dir / "etc-pacemaker" / "authkey"
        key.write_bytes(os.urandom(4096))
        os.chown(key, 0, gid)
        key.chmod(0o640)
        # The system's providers (heartbeat, pacemaker) plus ours, installed by the Makefile.
        rd = self.state_dir / "resource.d"
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
        (self.state_dir / "corosync.conf").write_text(
            COROSYNC_CONF.format(node=NODE_NAME, log=self.log_dir / "corosync.log"))

    def _namespace_script(self) -> str:
        sd = self.state_dir
        lines = [
            f"hostname {NODE_NAME}",
            # this namespace's sysfs, the machine's cgroup tree moved over it
            f"mount --rbind /sys/fs/cgroup {sd / 'mnt/cgroup'}",
            "mount -t sysfs -o nosuid,nodev,noexec sysfs /sys",
            f"mount --move {sd / 'mnt/cgroup'} /sys/fs/cgroup",
        ]
        if hybrid_cgroups():
            lines.append(f"umount {UNIFIED_CGROUP}")
        lines += [f"mount --bind {sd / sub} {target}" for target, sub in BIND_DIRS]
        rd = sd / "resource.d"
        for provider in sorted(p for p in rd.iterdir() if p.name != "custom"):
            lines.append(f"mount --bind {OCF_RESOURCE_D / provider.name} {provider}")
        lines += [
            f"mkdir -p {OCF_RESOURCE_D}",
            f"mount --rbind {rd} {OCF_RESOURCE_D}",
            "mount -t tmpfs -o mode=1777,size=64m tmpfs /dev/shm",
            f"mount --bind {self.run_dir} /run",
            "mkdir -p /run/lock /run/resource-agents /run/crm /run/pacemaker /run/libvirt",
            "chown hacluster:haclient /run/crm /run/pacemaker",
            # something that lives as long as the node: nsenter's target, whatever else stops
            "setsid sleep 2147483647 </dev/null >/dev/null 2>&1 &",
            "echo $! > /run/anchor.pid",
            "virtlogd -d -p /run/libvirt/virtlogd.pid",
            "libvirtd -d -f /etc/libvirt/libvirtd.conf -p /run/libvirt/libvirtd.pid",
        ]
        return "\n".join(lines) + "\n"

    def _create_network(self) -> None:
        _run(["ip", "netns", "add", NETNS])
        _run(["ip", "-n", NETNS, "link", "set", "lo", "up"])
        _run(["ip", "-n", NETNS, "link", "add", BRIDGE, "type", "bridge"])
        _run(["ip", "-n", NETNS, "addr", "add", f"{HOST_ADDRESS}/{PREFIX}", "dev", BRIDGE])
        _run(["ip", "-n", NETNS, "link", "set", BRIDGE, "up"])

    def _spawn(self, daemon: str, argv: Sequence[str], env: Mapping[str, str]) -> int:
        out = open(self.log_dir / f"{daemon}.out", "ab")  # noqa: SIM115 - the child keeps it
        try:
            proc = subprocess.Popen(self.nsenter_argv() + list(argv), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=out, env=_env(env), cwd="/",
                                    start_new_session=True)
        finally:
            out.close()
        self._children.append(proc)
        # nsenter (no --fork) execs the daemon: the pid is the daemon's.
        (self.run_dir / PIDFILES[daemon]).write_text(f"{proc.pid}\n")
        return proc.pid

    def _wait_libvirtd(self, end: float) -> None:
        while not (self.pid("libvirtd") is not None and self.libvirtd_answers()):
            if time.monotonic() >= end:
                raise HarnessError(f"the node's libvirtd did not answer; see "
                                   f"{self.state_dir / 'log-libvirt' / 'libvirtd.log'}")
            time.sleep(0.1)

    def _wait_dc(self, end: float) -> None:
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
                    raise HarnessError(f"{d} exited during start-up; see {self.log_dir} and "
                                       f"{self.pacemaker_log}\n{self.log_tail()}")
            if time.monotonic() >= end:
                raise HarnessError(f"no DC elected; see {self.pacemaker_log}\n"
                                   f"{self.log_tail()}")
            time.sleep(0.2)

    def start(self) -> ClusterNode:
        """Create the namespaces and start libvirtd, corosync and pacemakerd; wait for the
        DC. Cleans up what a crashed run left first; on failure stops what it started."""
        for tool in ("libvirtd", "virtlogd", "corosync", "pacemakerd", "cibadmin", "crm_mon",
                     "crm_resource", "ip", "nsenter", "unshare", "make", LXC_EMULATOR):
            if shutil.which(tool, path=CLEAN_PATH) is None and not os.access(tool, os.X_OK):
                raise HarnessError(f"{tool} is not installed (make deps-system)")
        self.stop()
        started = time.monotonic()
        end = started + self.start_timeout_s
        try:
            pacemaker_remoted()
            self._prepare()
            self._create_network()
            with open(self.log_dir / "namespace.out", "wb") as out:
                proc = subprocess.run(
                    ["nsenter", f"--net=/run/netns/{NETNS}", "unshare", "--mount", "--uts",
                     "--propagation", "private", "/bin/sh", "-ec", self._namespace_script()],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=60, check=False,
                    env=_env())
            if proc.returncode != 0:
                raise HarnessError(f"the node's set-up script exited with {proc.returncode}: "
                                   f"{(self.log_dir / 'namespace.out').read_text()}")
            self._wait_libvirtd(end)
            self._spawn("corosync", ["corosync", "-f", "-c",
                                     str(self.state_dir / "corosync.conf")], {})
            while self.exec(["corosync-cfgtool", "-s"], 5.0).returncode != 0:
                if self.pid("corosync") is None or time.monotonic() >= end:
                    raise HarnessError(f"corosync did not start; see {self.log_dir}")
                time.sleep(0.1)
            self._spawn("pacemakerd", ["pacemakerd"],
                        {"PCMK_logfile": PACEMAKER_LOG, "PCMK_logfacility": "none"})
            self._wait_dc(end)
            for name, value in (("stonith-enabled", "false"), ("dc-deadtime", "2s")):
                if self.get_property(name) != value:
                    self.set_property(name, value)
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - started
        return self

    def _reap(self) -> None:
        for proc in self._children:
            try:
                proc.wait(timeout=0)
            except subprocess.TimeoutExpired:
                pass
        self._children = [p for p in self._children if p.returncode is None]

    def _our_stray_pids(self) -> list[int]:
        """Processes of ours outside the network namespace: what runs below a container
        (its own namespaces) or what a killed controller left, found by the state dir or
        the pacemaker-remoted path in their command line."""
        marks = (str(self.state_dir), str(PCMK_REMOTE_DIR))
        root_mnt = _mount_ns(1)
        out = []
        for pid in all_pids():
            argv = read_cmdline(pid)
            if not any(m in a for a in argv for m in marks):
                continue
            # Only processes in a mount namespace of ours (the node's or a container's):
            # never someone's `tail build/cluster/state/...` on the machine itself.
            if _mount_ns(pid) not in (None, root_mnt) and pid_alive(pid):
                out.append(pid)
        return out

    def stop(self) -> list[str]:
        """Stop everything (see the module docstring). Idempotent; what it did."""
        done: list[str] = []
        pm = self.pid("pacemakerd") if netns_exists() else None
        if pm is not None:
            t0 = time.monotonic()
            ok = terminate(pm, self.stop_timeout_s)
            done.append(f"pacemakerd ({pm}) stopped in {time.monotonic() - t0:.1f}s"
                        + ("" if ok else " (killed)"))
        cs = self.pid("corosync") if netns_exists() else None
        if cs is not None:
            terminate(cs, 30.0)
            done.append(f"corosync ({cs}) stopped")
        if netns_exists() and self.pid("libvirtd") is not None and self.libvirtd_answers():
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
                        done.append(f"removed {driver} domain {name}")
                except (CallTimeout, libvirt.libvirtError) as exc:
                    done.append(f"could not list {driver} domains: {exc}")
        if netns_exists():
            for daemon in ("libvirtd", "virtlogd"):
                pid = self.pid(daemon)
                if pid is not None:
                    terminate(pid, 20.0)
                    done.append(f"stopped {daemon} ({pid})")
        # Whatever is left: the anchor, stray pacemaker daemons, containers, qemu.
        left = set(netns_pids())
        for pid in list(left):
            left.update(descendants(pid))
        left.update(self._our_stray_pids())
        for pid in sorted(left):
            comm = read_comm(pid)
            if terminate(pid, 5.0):
                done.append(f"killed {comm} ({pid})")
        self._reap()
        survivors: list[str] = []
        if netns_exists():
            alive = [p for p in netns_pids() if pid_alive(p)]
            if alive:
                survivors.append(f"netns {NETNS}: pids {alive}")
            else:
                proc = _run(["ip", "netns", "del", NETNS], check=False)
                if proc.returncode != 0:
                    survivors.append(f"ip netns del {NETNS}: {proc.stderr.strip()}")
                else:
                    done.append(f"deleted netns {NETNS}")
        for cg in leftover_cgroups():
            try:
                for sub in sorted(cg.rglob("*"), key=lambda p: -len(p.parts)):
                    if sub.is_dir():
                        sub.rmdir()
                cg.rmdir()
                done.append(f"removed cgroup {cg}")
            except OSError as exc:
                survivors.append(f"cgroup {cg}: {exc.strerror}")
        strays = [p for p in self._our_stray_pids() if pid_alive(p)]
        if strays:
            survivors.append(f"processes {strays}")
        for name in PIDFILES.values():
            (self.run_dir / name).unlink(missing_ok=True)
        if survivors:
            raise HarnessError("cluster teardown left: " + "; ".join(survivors))
        return done

    def kill_libvirtd(self) -> int:
        """SIGKILL the node's libvirtd; its pid."""
        pid = self.pid("libvirtd")
        if pid is None:
            raise HarnessError("the node's libvirtd is not running")
        os.kill(pid, signal.SIGKILL)
        if not wait_until(lambda: not pid_alive(pid), 10.0, 0.02):
            raise HarnessError(f"libvirtd {pid} survived SIGKILL")
        return pid

    def restart_libvirtd(self) -> None:
        if self.pid("libvirtd") is not None:
            return
        (self.run_dir / PIDFILES["libvirtd"]).unlink(missing_ok=True)
        self.exec(["libvirtd", "-d", "-f", "/etc/libvirt/libvirtd.conf", "-p",
                   "/run/libvirt/libvirtd.pid"], 60.0, True)
        self._wait_libvirtd(time.monotonic() + 60.0)

    def __enter__(self) -> ClusterNode:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


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
    usage = "usage: python -m tests.harness.cluster start|stop|status"
    if len(argv) != 1 or argv[0] not in ("start", "stop", "status"):
        print(usage, file=sys.stderr)
        return 2
    from .twohosts import SharedHostLock

    node = ClusterNode()
    with SharedHostLock():
        if argv[0] == "start":
            node.start()
            print(f"cluster node up in {node.started_in_s:.1f}s")
            print(node.crm_mon_text())
        elif argv[0] == "stop":
            for line in node.stop():
                print(line)
        else:
            print({d: node.pid(d) for d in PIDFILES})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
