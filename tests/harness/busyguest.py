"""A busy test guest: it dirties its memory at a set rate and reports a heartbeat.

Production guests that are hard to migrate keep rewriting a working set; the idle test guest
never meets that problem. This guest runs ``pyvd-busy``, a small static program built from
source at test time (gcc -static), started by its init with the rate and the working-set size
from the kernel command line (``harness.busy=RATE_MIB_S,WSS_MIB`` and ``harness.beat=MS``). It
rewrites one byte of each page of a WSS-MiB buffer, RATE MiB of pages per second, and writes
``HB <boot id> <sequence>`` every MS milliseconds to its second serial port (ttyS1).

On the host the port is a unix socket (``<serial type='unix' mode='bind'>``) at a path below
/var/lib/libvirt/qemu, which each libvirt host (twohosts.py, cluster nodes) has of its own;
a HeartbeatReader per host connects to it and stamps every beat with the host's monotonic
clock, so a migration's guest-visible downtime is the gap between the last beat on the source
and the first on the target, and a reboot is a second boot id."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import DEFAULT_CACHE_DIR, HarnessError
from .guest import GuestArtifacts, domain_xml

BUSY_MARKER = "HARNESS-BUSY started"
# Where each libvirt host keeps the heartbeat sockets (its own /var/lib/libvirt).
SOCKET_DIR = "/var/lib/libvirt/qemu/pyvd-heartbeat"

BUSY_C = r"""
/* pyvd-busy: dirty RATE MiB of pages per second in a WSS-MiB working set and write a
   heartbeat line "HB <boot id> <seq>" every BEAT milliseconds to PORT (PyVirtualDomain's
   test harness). Never blocks on the port: a beat nobody reads is dropped. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: pyvd-busy RATE_MIB_S WSS_MIB BEAT_MS PORT\n");
        return 2;
    }
    double rate = atof(argv[1]);
    long wss = atol(argv[2]);
    double beat = atof(argv[3]) / 1000.0;
    char boot[64] = "unknown";
    FILE *b = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (b) {
        if (fgets(boot, sizeof boot, b)) boot[strcspn(boot, "\n")] = 0;
        fclose(b);
    }
    long pages = wss > 0 ? wss * 256 : 1;
    volatile unsigned char *mem = malloc((size_t)pages * 4096);
    if (!mem) { perror("malloc"); return 1; }
    for (long i = 0; i < pages; i++) mem[i * 4096] = 1;
    int fd = -1;
    double start = now(), next_beat = start, dirtied = 0;
    long seq = 0, idx = 0;
    for (;;) {
        double t = now();
        double due = rate * 256.0 * (t - start);
        /* Never more than 50 ms of work behind: after the guest was paused (a migration's
           downtime) a backlog would starve the heartbeat. */
        if (due - dirtied > rate * 256.0 * 0.05) dirtied = due - rate * 256.0 * 0.05;
        while (rate > 0 && dirtied < due) {
            mem[idx * 4096] += 1;
            idx = (idx + 1) % pages;
            dirtied += 1;
        }
        if (t >= next_beat) {
            if (fd < 0) fd = open(argv[4], O_WRONLY | O_NONBLOCK | O_NOCTTY);
            if (fd >= 0) {
                char line[128];
                int n = snprintf(line, sizeof line, "HB %s %ld\n", boot, seq);
                if (write(fd, line, n) < 0 && errno != EAGAIN) { close(fd); fd = -1; }
            }
            seq++;
            next_beat += beat;
            if (next_beat < t) next_beat = t + beat;
        }
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
}
"""

BUSY_SCRIPT = r"""#!/bin/sh
arg=$(sed -n 's/.*harness\.busy=\([0-9.]*,[0-9]*\).*/\1/p' /proc/cmdline)
[ -n "$arg" ] || exec sleep 100000
beat=$(sed -n 's/.*harness\.beat=\([0-9]*\).*/\1/p' /proc/cmdline)
port=/dev/ttyS1
stty -F $port raw -echo 2>/dev/null
echo "HARNESS-BUSY started rate,wss=$arg beat=${beat:-20} port=$port" > /dev/console
exec /usr/bin/pyvd-busy "${arg%,*}" "${arg#*,}" "${beat:-20}" "$port" 2>/dev/console
"""
BUSY_INITTAB = """::sysinit:/etc/rc.sh
::respawn:/etc/tick.sh
::respawn:/etc/busy.sh
::shutdown:/bin/sh -c 'echo "HARNESS-SHUTDOWN uptime=$(cut -d" " -f1 /proc/uptime)" > /dev/console'
"""


def build_busy_binary(cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """Compile pyvd-busy (static: the initramfs has no C library), once per source."""
    key = hashlib.sha256(BUSY_C.encode()).hexdigest()[:12]
    out = Path(cache_dir) / f"pyvd-busy-{key}"
    if out.is_file():
        return out
    cc = shutil.which("gcc")
    if cc is None:
        raise HarnessError("gcc is needed to build the busy test guest (build-essential)")
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.with_suffix(".c")
    src.write_text(BUSY_C)
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    r = subprocess.run([cc, "-static", "-O2", "-o", str(tmp), str(src)], capture_output=True,
                       text=True, timeout=120)
    if r.returncode != 0:
        raise HarnessError(f"cannot build pyvd-busy: {r.stderr.strip()}")
    os.replace(tmp, out)
    return out


def busy_initramfs(artifacts: GuestArtifacts, cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """The test initramfs plus an appended archive with pyvd-busy and an init that runs it
    (the kernel unpacks concatenated archives, later files replacing earlier ones)."""
    from .guest import Cpio

    binary = build_busy_binary(cache_dir)
    key = hashlib.sha256((BUSY_C + BUSY_SCRIPT + BUSY_INITTAB).encode()).hexdigest()[:12]
    out = Path(cache_dir) / artifacts.key / f"initramfs-busy-{key}.cpio.gz"
    if out.is_file():
        return out
    extra = Cpio()
    extra.directory("usr")
    extra.directory("usr/bin")
    extra.file("usr/bin/pyvd-busy", binary.read_bytes(), 0o755)
    extra.file("etc/inittab", BUSY_INITTAB.encode())
    extra.file("etc/busy.sh", BUSY_SCRIPT.encode(), 0o755)
    data = artifacts.initramfs.read_bytes() + gzip.compress(extra.finish(), mtime=0)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return out


def socket_path(name: str) -> str:
    """The heartbeat socket of domain ``name``, as each libvirt host sees it."""
    return f"{SOCKET_DIR}/{name}.sock"


def busy_domain_xml(name: str, artifacts: GuestArtifacts, virt_type: str,
                    console_log: Path | str, *, rate_mib_s: float, wss_mib: int,
                    beat_ms: int = 20, memory_mib: int = 256, uuid: str | None = None,
                    extra_cmdline: str = "") -> str:
    """A test guest running pyvd-busy, with its heartbeat channel."""
    from dataclasses import replace

    arts = replace(artifacts, initramfs=busy_initramfs(artifacts))
    cmdline = f"harness.busy={rate_mib_s:g},{int(wss_mib)} harness.beat={int(beat_ms)}"
    xml = domain_xml(name, "graceful", arts, virt_type, console_log, uuid=uuid,
                     memory_mib=memory_mib, extra_cmdline=f"{cmdline} {extra_cmdline}".strip())
    # A second serial port (the 8250 UART is built into the kernel). Not a virtio-serial
    # port: with the virtio_console module loaded, a guest dirtying memory panicked on the
    # target after a precopy migration under TCG (qemu 7.2), in the hrtimer interrupt.
    port = (f"  <serial type='unix'><source mode='bind' path='{socket_path(name)}'/>"
            "<target port='1'/></serial>\n  </devices>")
    return xml.replace("</devices>", port, 1)


@dataclass
class Beat:
    t: float  # host monotonic time it arrived
    host: str
    boot: str
    seq: int


def _connect_unix(sock: socket.socket, path: Path) -> None:
    """Connect to a unix socket whatever its path's length: a path longer than sun_path
    (107 bytes; a cluster node's directory below a checkout at /check/work/main is) is
    reached through the directory opened with O_PATH (/proc/self/fd/N/NAME)."""
    if len(os.fsencode(str(path))) < 100:
        sock.connect(str(path))
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        sock.connect(f"/proc/self/fd/{fd}/{path.name}")
    finally:
        os.close(fd)


@dataclass
class HeartbeatReader:
    """Reads one guest's heartbeats on every host it may run on: ``sockets`` maps a host
    name to the socket's path as seen from here. Connects (and reconnects) on its own."""

    sockets: dict[str, Path]
    beats: list[Beat] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> HeartbeatReader:
        for host, path in self.sockets.items():
            t = threading.Thread(target=self._read, args=(host, path), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _read(self, host: str, path: Path) -> None:
        while not self._stop.is_set():
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    _connect_unix(s, path)
                    s.settimeout(0.2)
                    buf = b""
                    while not self._stop.is_set():
                        try:
                            chunk = s.recv(65536)
                        except TimeoutError:
                            continue
                        if not chunk:
                            break
                        now = time.monotonic()
                        buf += chunk
                        *lines, buf = buf.split(b"\n")
                        with self._lock:
                            for line in lines:
                                parts = line.decode(errors="replace").split()
                                if len(parts) == 3 and parts[0] == "HB" and parts[2].isdigit():
                                    self.beats.append(Beat(now, host, parts[1], int(parts[2])))
            except OSError:
                pass
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2.0)

    def mark(self) -> float:
        return time.monotonic()

    def since(self, t0: float) -> list[Beat]:
        with self._lock:
            return [b for b in self.beats if b.t >= t0]

    def wait_beats(self, host: str, after: float, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if any(b.host == host for b in self.since(after)):
                return True
            time.sleep(0.05)
        return False

    def boot_ids(self, t0: float = 0.0) -> list[str]:
        seen: list[str] = []
        for b in self.since(t0):
            if b.boot not in seen:
                seen.append(b.boot)
        return seen

    def switch_gap(self, source: str, target: str, t0: float) -> float:
        """The guest-visible downtime of a migration from ``source`` to ``target``: from the
        last beat received from the source to the first from the target (inf: none yet)."""
        beats = self.since(t0)
        first = min((b.t for b in beats if b.host == target), default=None)
        if first is None:
            return float("inf")
        last = max((b.t for b in beats if b.host == source and b.t <= first), default=t0)
        return first - last

    def longest_gap(self, t0: float, t1: float | None = None) -> float:
        """The longest time without a beat (from any host) between t0 and t1 (now)."""
        beats = sorted(b.t for b in self.since(t0) if t1 is None or b.t <= t1)
        if len(beats) < 2:
            return float("inf")
        return max(b - a for a, b in zip(beats, beats[1:], strict=False))
