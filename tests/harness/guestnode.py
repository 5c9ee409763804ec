"""A KVM-style Pacemaker guest node: a tiny qemu (TCG) VM that runs pacemaker-remoted.

As in the Pacemaker Remote guide, the guest boots the host's kernel (the PVH ``vmlinux``
extracted by tests/harness/guest.py) and runs ``pacemaker-remoted`` (from the
``pacemaker-remote`` package, unpacked: it conflicts with the installed ``pacemaker``) with the
cluster's authkey, on its own address on the cluster's bridge.

Its root file system is an initramfs this module builds from the host's files (busybox,
pacemaker-remoted and the shared libraries ``ldd`` says it needs, ``/usr/lib/ocf``), not the
host's ``/`` over virtio-9p: qemu refuses to migrate a guest that has a 9p export mounted
("Migration is disabled when VirtFS export path '/' is mounted in the guest using mount_tag
'hostroot'", verified with qemu 7.2 here; docs/cluster-tests.md), and this guest must live-
migrate. The initramfs is guest RAM, so it moves with the guest. The cluster's authkey is a
second, tiny archive appended to the cached one (the kernel unpacks concatenated archives).

Kernel modules are loaded in dependency order derived from ``modules.dep`` (virtio_ring before
virtio: the other way round every virtio module fails with "Unknown symbol"), and init fails
loudly (``GN-FAIL`` on the console, no remoted) when one does not load.

Besides pacemaker-remoted the guest runs

* the **oracle writer**: every ~100 ms one line ``ORACLE <boot id> <counter> <uptime>`` in a
  single write to the virtio-serial port ``org.pyvd.oracle``, which the domain XML connects
  to ONE file in the cluster's shared directory opened for append by whichever qemu runs the
  guest (see tests/harness/oracle.py for why and for the checker);
* a **control port** (TCP 7000, busybox ``nc -ll``): ``kill-remoted`` SIGKILLs
  pacemaker-remoted (the guide's recovery test), ``ping`` answers ``pong <boot id>``;
* busybox ``acpid``: the ACPI power button (``virsh shutdown``) stops remoted and powers off.

Console markers (ttyS0): GN-INIT, GN-MODULES, GN-NET, GN-REMOTED-START, GN-LISTEN,
GN-REMOTED-EXIT, GN-POWERBUTTON, GN-FAIL; each carries the guest's uptime.
"""

from __future__ import annotations

import grp
import gzip
import hashlib
import os
import pwd
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

from .common import REPO_ROOT, HarnessError
from .guest import BUSYBOX, EMULATOR, Cpio, build_artifacts, shared_libraries, zstd_decompress
from .oracle import Oracle

if TYPE_CHECKING:
    from .cluster import Cluster

GUESTNODE_CACHE_DIR = REPO_ROOT / "build" / "guestnode"
ORACLE_PORT_NAME = "org.pyvd.oracle"
CONTROL_PORT = 7000
REMOTE_PORT = 3121
# Leaf modules the guest needs; their dependencies come from modules.dep.
WANTED_MODULES = ("kernel/drivers/virtio/virtio_pci.ko", "kernel/drivers/net/virtio_net.ko",
                  "kernel/drivers/char/virtio_console.ko", "kernel/drivers/acpi/button.ko",
                  "kernel/drivers/input/evdev.ko")
# Copied whole into the guest: the OCF agents (ocf:pacemaker:Dummy) and their shell library.
OCF_TREE = Path("/usr/lib/ocf")

INIT = r"""#!/bin/sh
# pid 1 of the guest node (initramfs root).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mark() { read up _ < /proc/uptime; echo "GN-$1 uptime=$up ${2:-}" > /dev/console; }
fail() { mark FAIL "$*"; while :; do sleep 3600; done; }
mark INIT
ip= name=guest dhbits=
for a in $(cat /proc/cmdline); do
  case "$a" in
    gn.ip=*) ip=${a#*=};; gn.name=*) name=${a#*=};; gn.dhbits=*) dhbits=${a#*=};;
  esac
done
for m in $(cat /etc/gn/modules); do
  insmod "/lib/modules/gn/$m" || fail "insmod $m"
done
mark MODULES
hostname "$name"
ip link set lo up
ip link set eth0 up || fail "no eth0"
[ -n "$ip" ] && { ip addr add "$ip" dev eth0 || fail "address $ip"; }
mark NET "$ip"
bootid=$(cat /proc/sys/kernel/random/boot_id)
# the oracle: one line per write to the virtio-serial port, every ~100 ms
port=
for p in /sys/class/virtio-ports/*; do
  [ "$(cat "$p/name" 2>/dev/null)" = ORACLE_PORT_NAME ] && port=/dev/${p##*/}
done
[ -n "$port" ] || fail "no virtio-serial port ORACLE_PORT_NAME"
( exec 3> "$port"; n=0
  while :; do
    read up _ < /proc/uptime; echo "ORACLE $bootid $n $up" >&3; n=$((n+1)); usleep 100000
  done ) &
mkdir -p /run/lock /run/crm /run/pacemaker /run/resource-agents /var/log/pacemaker/bundles \
         /var/lib/pacemaker/cib /var/lib/pacemaker/pengine /var/lib/pacemaker/blackbox \
         /var/lib/pacemaker/cores /tmp /var/tmp
chown -R hacluster:haclient /var/log/pacemaker /var/lib/pacemaker /run/crm /run/pacemaker
chmod 770 /var/log/pacemaker
chown root:haclient /etc/pacemaker/authkey && chmod 640 /etc/pacemaker/authkey || fail "no authkey"
chmod 1777 /tmp /var/tmp
acpid -c /etc/acpi -l /tmp/acpid.log || mark NOTE "acpid not started"
nc -ll -p CONTROL_PORT -e /etc/gn/control.sh &
mark REMOTED-START "boot_id=$bootid"
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C \
    PCMK_logfile=/var/log/pacemaker/pacemaker.log PCMK_logfacility=none \
    ${dhbits:+PCMK_dh_max_bits=$dhbits} /usr/sbin/pacemaker-remoted > /dev/console 2>&1 &
echo $! > /run/remoted.pid
( while ! grep -qE ':0C31 [0-9A-F:]+ 0A' /proc/net/tcp6 /proc/net/tcp 2>/dev/null; do
    usleep 50000
  done
  mark LISTEN "port 3121" ) &
wait $(cat /run/remoted.pid); rc=$?
mark REMOTED-EXIT "rc=$rc"
while :; do sleep 3600; done
"""

CONTROL = r"""#!/bin/sh
# One command per connection on the control port (the harness's remote hand in the guest).
read -r cmd _
case "$cmd" in
  kill-remoted) kill -9 "$(cat /run/remoted.pid)" && echo "killed $(cat /run/remoted.pid)";;
  ping) echo "pong $(cat /proc/sys/kernel/random/boot_id)";;
  *) echo "unknown command";;
esac
"""

POWER_BUTTON = r"""#!/bin/sh
read up _ < /proc/uptime; echo "GN-POWERBUTTON uptime=$up" > /dev/console
kill "$(cat /run/remoted.pid)" 2>/dev/null
i=0
while [ $i -lt 20 ] && kill -0 "$(cat /run/remoted.pid)" 2>/dev/null; do
  usleep 100000; i=$((i+1))
done
sync; poweroff -f
"""


class GuestCpio(Cpio):
    """guest.py's newc writer plus symbolic links."""

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())


@dataclass(frozen=True)
class GuestNodeImage:
    kernel: Path  # the PVH vmlinux (shared with the test guests)
    initramfs: Path  # cached: everything but the authkey
    key: str


def module_load_order(kernel_version: str, wanted: tuple[str, ...] = WANTED_MODULES,
                      moddir_root: Path = Path("/lib/modules")) -> list[str]:
    """The modules (paths relative to the kernel's module directory) to load for ``wanted``,
    dependencies first, from modules.dep. Built-in modules are left out."""
    moddir = moddir_root / kernel_version
    deps: dict[str, list[str]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()

    def strip(path: str) -> str:
        return re.sub(r"\.(xz|gz|zst)$", "", path)

    by_plain = {strip(m): m for m in deps}
    builtin = set()
    if (moddir / "modules.builtin").is_file():
        builtin = {strip(m) for m in (moddir / "modules.builtin").read_text().split()}
    order: list[str] = []
    seen: set[str] = set()

    def visit(plain: str, chain: tuple[str, ...]) -> None:
        if plain in seen or plain in builtin:
            return
        if plain in chain:
            raise HarnessError(f"module dependency loop: {' -> '.join(chain + (plain,))}")
        real = by_plain.get(plain)
        if real is None:
            raise HarnessError(f"{plain} is neither in {moddir}/modules.dep nor built in")
        # modules.dep lists the dependencies of a module so that modprobe loads them from
        # the last to the first; a depth-first walk gives the same guarantee either way.
        for dep in reversed(deps[real]):
            visit(strip(dep), chain + (plain,))
        seen.add(plain)
        order.append(real)

    for w in wanted:
        visit(strip(w), ())
    return order


def _module_data(moddir: Path, rel: str) -> bytes:
    data = (moddir / rel).read_bytes()
    if rel.endswith(".xz"):
        import lzma

        return lzma.decompress(data)
    if rel.endswith(".gz"):
        return gzip.decompress(data)
    if rel.endswith(".zst"):
        return zstd_decompress(data, str(moddir / rel))
    return data


def _guest_path(host_path: Path) -> str:
    """Where a host file goes in the guest: its name (the soname ldd gave) in its directory's
    real path below the merged /usr (the guest gets /lib -> usr/lib links as on Debian 12)."""
    real = Path(os.path.realpath(host_path.parent)) / host_path.name
    return str(real).lstrip("/")


def _builder_key(remoted: Path, kernel_version: str) -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    for p in (BUSYBOX, remoted, Path("/lib/modules") / kernel_version / "modules.dep"):
        st = p.stat()
        h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(kernel_version.encode())
    return h.hexdigest()[:12]


def build_image(remoted: Path, cache_dir: Path = GUESTNODE_CACHE_DIR) -> GuestNodeImage:
    """Kernel and the (authkey-less) initramfs of the guest node, cached in ``cache_dir``."""
    arts = build_artifacts()
    key = f"{arts.kernel_version}-{_builder_key(remoted, arts.kernel_version)}"
    out = Path(cache_dir) / key / "initramfs.cpio.gz"
    if out.is_file():
        return GuestNodeImage(kernel=arts.kernel, initramfs=out, key=key)
    moddir = Path("/lib/modules") / arts.kernel_version
    archive = GuestCpio()
    dirs: set[str] = set()

    def mkdirs(path: str) -> None:
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d and d not in dirs:
                dirs.add(d)
                archive.directory(d)

    for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "proc", "sys", "dev", "run", "tmp",
              "var/tmp", "var/log", "var/lib", "etc/pacemaker", "etc/acpi/PWRF", "etc/gn",
              "root", "usr/lib/modules/gn"):
        mkdirs(d)
    for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"),
                         ("lib64", "usr/lib64"), ("var/run", "/run")):
        archive.symlink(link, target)
    archive.chardev("dev/console", 5, 1)
    archive.file("usr/bin/busybox", BUSYBOX.read_bytes(), 0o755)
    listing = subprocess.run([str(BUSYBOX), "--list-full"], capture_output=True, text=True,
                             check=True, timeout=30).stdout.split()
    for applet in listing:
        # busybox --list-full names bin/sh, usr/bin/env, ...: all below the merged /usr
        path = applet if applet.startswith("usr/") else f"usr/{applet}"
        if path != "usr/bin/busybox":
            mkdirs(path.rsplit("/", 1)[0])
            archive.symlink(path, "/usr/bin/busybox")
    archive.file("usr/sbin/pacemaker-remoted", remoted.read_bytes(), 0o755)
    for lib in shared_libraries(remoted):
        gp = _guest_path(lib)
        mkdirs(gp.rsplit("/", 1)[0])
        if gp not in dirs:
            archive.file(gp, lib.read_bytes(), 0o755)
            dirs.add(gp)  # never twice (two sonames of one file)
    for src in sorted(OCF_TREE.rglob("*")):
        if "__pycache__" in src.parts:
            continue
        rel = str(src).lstrip("/")
        if src.is_symlink():
            archive.symlink(rel, os.readlink(src))
        elif src.is_dir():
            mkdirs(rel)
        elif src.is_file():
            mkdirs(rel.rsplit("/", 1)[0])
            archive.file(rel, src.read_bytes(), src.stat().st_mode & 0o777)
    order = module_load_order(arts.kernel_version)
    for rel in order:
        archive.file(f"usr/lib/modules/gn/{_module_name(rel)}", _module_data(moddir, rel))
    archive.file("etc/gn/modules", "".join(f"{_module_name(r)}\n" for r in order).encode())
    init = (INIT.replace("ORACLE_PORT_NAME", ORACLE_PORT_NAME)
            .replace("CONTROL_PORT", str(CONTROL_PORT)))
    archive.file("init", init.encode(), 0o755)
    archive.file("etc/gn/control.sh", CONTROL.encode(), 0o755)
    archive.file("etc/acpi/PWRF/00000080", POWER_BUTTON.encode(), 0o755)
    hac = pwd.getpwnam("hacluster")
    hgid = grp.getgrnam("haclient").gr_gid
    archive.file("etc/passwd", (f"root:x:0:0:root:/root:/bin/sh\n"
                                f"hacluster:x:{hac.pw_uid}:{hgid}::/var/lib/pacemaker:"
                                f"/usr/sbin/nologin\n").encode())
    archive.file("etc/group", f"root:x:0:\nhaclient:x:{hgid}:hacluster\n".encode())
    archive.file("etc/hosts", b"127.0.0.1 localhost\n")
    data = gzip.compress(archive.finish(), compresslevel=1, mtime=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return GuestNodeImage(kernel=arts.kernel, initramfs=out, key=key)


def _module_name(rel: str) -> str:
    return re.sub(r"\.(xz|gz|zst)$", "", rel.rsplit("/", 1)[-1])


def write_initrd(image: GuestNodeImage, authkey: bytes, out: Path) -> Path:
    """The guest's initrd: the cached image plus an appended archive holding ``authkey``."""
    extra = GuestCpio()
    extra.file("etc/pacemaker/authkey", authkey, 0o640)
    data = image.initramfs.read_bytes() + gzip.compress(extra.finish(), mtime=0)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return out


def domain_xml(name: str, image: GuestNodeImage, initrd: Path, *, address: str, prefix: int,
               bridge: str, mac: str, oracle_log: Path, console_log: str, node_name: str,
               uuid: str, memory_mib: int = 256, dh_bits: int = 1024) -> str:
    """The guest node's libvirt domain (TCG). The oracle channel appends to ``oracle_log``
    (one file in the shared directory, whichever node runs the guest); the console is logged
    per node (``console_log`` is a path inside the node's namespaces)."""
    cmdline = (f"console=ttyS0 quiet panic=-1 gn.ip={address}/{prefix} gn.name={node_name} "
               f"gn.dhbits={dh_bits}")
    return f"""<domain type='qemu'>
  <name>{escape(name)}</name>
  <uuid>{escape(uuid)}</uuid>
  <memory unit='MiB'>{int(memory_mib)}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(str(image.kernel))}</kernel>
    <initrd>{escape(str(initrd))}</initrd>
    <cmdline>{escape(cmdline)}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{EMULATOR}</emulator>
    <controller type='usb' model='none'/>
    <interface type='bridge'>
      <source bridge={quoteattr(bridge)}/>
      <mac address={quoteattr(mac)}/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'>
      <log file={quoteattr(console_log)} append='on'/>
      <target port='0'/>
    </serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <channel type='file'>
      <source path={quoteattr(str(oracle_log))} append='on'/>
      <target type='virtio' name={quoteattr(ORACLE_PORT_NAME)}/>
    </channel>
    <memballoon model='none'/>
  </devices>
</domain>
"""


# -- the guest node in a cluster ---------------------------------------------------------------

# The guide's operations for the VM resource of a guest node (name -> timeout); the monitor
# recurs every GUIDE_MONITOR_INTERVAL.
GUIDE_OPS = {"start": "90s", "stop": "90s", "monitor": "30s", "migrate_to": "120s",
             "migrate_from": "60s"}
GUIDE_MONITOR_INTERVAL = "10s"


class GuestNodeVM:
    """The guest node ``node_name`` (a TCG VM, libvirt domain ``domain``) of a two-node
    cluster (tests/harness/cluster.py): its files live in the cluster's shared directory
    (domain XML, initrd with the cluster's authkey, the oracle's file), the same path on
    both nodes, as shared storage would give."""

    def __init__(self, cluster: Cluster, node_name: str, domain: str, address: str,
                 mac: str, uuid: str, memory_mib: int = 256) -> None:
        self.cluster = cluster
        self.node_name = node_name
        self.domain = domain
        self.address = address
        self.mac = mac
        self.uuid = uuid
        self.memory_mib = memory_mib
        d = cluster.shared_dir
        self.config = d / f"{domain}.xml"
        self.initrd = d / f"{domain}.initrd"
        self.oracle = Oracle(d / f"{domain}.oracle")

    def write(self) -> Path:
        """Build (or reuse) the image and write the initrd and domain XML; the XML's path."""
        from .cluster import BRIDGE, PREFIX, pacemaker_remoted

        image = build_image(pacemaker_remoted())
        write_initrd(image, self.cluster.authkey, self.initrd)
        self.config.write_text(domain_xml(
            self.domain, image, self.initrd, address=self.address, prefix=PREFIX,
            bridge=BRIDGE, mac=self.mac, oracle_log=self.oracle.path,
            console_log=f"/var/log/libvirt/qemu/{self.domain}.console.log",
            node_name=self.node_name, uuid=self.uuid, memory_mib=self.memory_mib))
        return self.config

    def console(self, node: str) -> str:
        try:
            return self.cluster.node(node).console_log(self.domain).read_text(errors="replace")
        except OSError:
            return ""

    def states(self) -> dict[str, str | None]:
        """libvirt's word for the domain on each node (None: unknown there; "down": the
        node's libvirtd does not answer)."""
        from .domains import domain_facts

        out: dict[str, str | None] = {}
        for n in self.cluster.nodes:
            if n.pid("libvirtd") is None:
                out[n.name] = "down"
                continue
            try:
                facts = domain_facts(self.domain, n.uri("qemu"), 10.0)
            except Exception:  # noqa: BLE001 - a node being fenced
                out[n.name] = "down"
                continue
            out[n.name] = None if facts is None else facts.state
        return out

    def running_on(self) -> list[str]:
        return [n for n, s in self.states().items() if s == "running"]

    def qemu_count(self) -> dict[str, int]:
        return {n.name: len(n.qemu_pids(self.domain)) for n in self.cluster.nodes}

    def control(self, command: str, timeout_s: float = 10.0) -> str:
        """Send ``command`` to the guest's control port from a live node; its answer."""
        node = self.cluster.live()
        proc = node.exec(["busybox", "nc", "-w", "3", self.address, str(CONTROL_PORT)],
                         timeout_s, False, input_text=command + "\n")
        return proc.stdout.strip()

    def boot_id(self) -> str | None:
        """The running guest's boot id, asked over the network (None: no answer)."""
        try:
            answer = self.control("ping", 8.0)
        except HarnessError:
            return None
        return answer.split()[1] if answer.startswith("pong ") else None
