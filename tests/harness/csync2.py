"""Two csync2 nodes on one machine, for sync_config_on_stop tests.

Nodes "nodea" and "nodeb" share one private network namespace (their addresses, 127.0.0.1
and 127.0.0.2, exist only on its loopback) and each runs in its own mount and UTS namespace,
where the node's hostname is set and ``/etc/csync2.cfg``, ``/var/lib/csync2`` and
``/etc/hosts`` are bind mounts of per-test files. So a plain ``csync2 -x`` on node A, as the
agent runs it, reads the test's configuration and database and talks to node B's real
``csync2 -ii`` server; nothing of the machine's own csync2 set-up is read or changed.

The group's directory has the same path on both nodes, as in a cluster: node B sees its own
copy of it (a bind mount of ``nodeb/files``), which the test reads from outside.

Everything started here is stopped by pid (the server, then any process left in the network
namespace), and the namespace deleted, also on failure::

    with Csync2Pair(workdir, synced_dir) as pair:
        pair.run_on("A", ["csync2", "-x"])
        pair.peer_copy(path)
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from .common import CLEAN_PATH, HarnessError, pid_alive, read_comm, terminate, wait_until
from .nsnode import create_netns, delete_netns
from .nsnode import netns_pids as _netns_pids
from .nsnode import run as _run

NETNS = "pyvd-csync2"
NODES = {"A": ("nodea", "127.0.0.1"), "B": ("nodeb", "127.0.0.2")}
SYSTEM_CONFIG = Path("/etc/csync2.cfg")
SYSTEM_DB_DIR = Path("/var/lib/csync2")
PORT = 30865  # csync2's default; only inside the pair's network namespace

# Run inside the node's fresh mount + UTS namespaces: become the node, then exec "$@".
# $1 hostname, $2 node dir, $3 shared dir, $4 synced dir (bound only when $5 is "peer").
NODE_SCRIPT = """
hostname "$1"
mount --bind "$3/csync2.cfg" /etc/csync2.cfg
mount --bind "$2/db" /var/lib/csync2
mount --bind "$3/hosts" /etc/hosts
if [ "$5" = peer ]; then mount --bind "$2/files" "$4"; fi
shift 5
exec "$@"
"""


def netns_pids(name: str = NETNS) -> list[int]:
    return _netns_pids(name)


def config_text(synced_dir: Path, key: Path) -> str:
    a, b = NODES["A"][0], NODES["B"][0]
    return (f"# test csync2 group: {a} and {b}, plain TCP (no SSL keys or certificates)\n"
            f"nossl * *;\n\ngroup pyvd\n{{\n\thost {a} {b};\n\tkey {key};\n"
            f"\tinclude {synced_dir};\n}}\n")


class Csync2Pair:
    """A csync2 group of two nodes: A (where the agent runs) and B (a real csync2 server)."""

    def __init__(self, workdir: Path, synced_dir: Path, netns: str = NETNS,
                 start_timeout_s: float = 10.0, stop_timeout_s: float = 10.0) -> None:
        self.workdir = Path(workdir)
        self.synced_dir = Path(synced_dir)
        self.netns = netns
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.server_pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._server_log: Path = self.node_dir("B") / "csync2.log"

    # -- facts -------------------------------------------------------------------------------

    def node_dir(self, node: str) -> Path:
        return self.workdir / NODES[node][0]

    def hostname(self, node: str) -> str:
        return NODES[node][0]

    def peer_copy(self, path: Path) -> Path:
        """Where node B's copy of ``path`` (a file in the synced directory) is seen from
        outside the namespaces."""
        return self.node_dir("B") / "files" / Path(path).relative_to(self.synced_dir)

    def server_log(self) -> str:
        try:
            return self._server_log.read_text(errors="replace")
        except OSError:
            return ""

    def server_running(self) -> bool:
        pid = self.server_pid
        return pid is not None and pid_alive(pid) and read_comm(pid) == "csync2"

    # -- running things on a node ------------------------------------------------------------

    def node_argv(self, node: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run as on node X: in the pair's network namespace, with node X's
        hostname, csync2 configuration, database and /etc/hosts (the process is exec'd: its
        pid is the one the caller starts)."""
        role = "peer" if node == "B" else "local"
        return ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--uts",
                "--propagation", "private", "/bin/sh", "-ec", NODE_SCRIPT, "csync2-node",
                self.hostname(node), str(self.node_dir(node)), str(self.workdir),
                str(self.synced_dir), role, *argv]

    def run_on(self, node: str, argv: Sequence[str], timeout_s: float = 30.0,
               check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(self.node_argv(node, argv), timeout_s, check)

    # -- node B's server ---------------------------------------------------------------------

    def start_server(self) -> None:
        """Start ``csync2 -ii -v`` (stand-alone server, foreground) on node B; returns once
        it waits for connections."""
        if self.server_running():
            return
        log = open(self._server_log, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(self.node_argv("B", ["csync2", "-ii", "-v"]),
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    env={"PATH": CLEAN_PATH, "LANG": "C"},
                                    start_new_session=True)
        finally:
            log.close()
        self.server_pid = proc.pid
        self._proc = proc
        if not wait_until(lambda: self._listening() or proc.poll() is not None,
                          self.start_timeout_s, 0.05) or proc.poll() is not None:
            raise HarnessError(f"csync2 server on {self.hostname('B')} did not start "
                               f"(rc {proc.poll()}):\n{self.server_log()}")

    def _listening(self) -> bool:
        ss = _run(["ip", "netns", "exec", self.netns, "ss", "-Hltn", f"sport = :{PORT}"],
                  check=False)
        return ss.returncode == 0 and "LISTEN" in ss.stdout

    def freeze_server(self) -> None:
        """SIGSTOP node B's server: connections are still accepted (by the kernel, into the
        listen backlog) but never answered, like a hung peer."""
        if not self.server_running():
            raise HarnessError("csync2 server is not running")
        assert self.server_pid is not None
        os.kill(self.server_pid, signal.SIGSTOP)

    def stop_server(self) -> None:
        """Stop node B's server by its pid (SIGCONT, SIGTERM, then SIGKILL)."""
        pid = self.server_pid
        if pid is None:
            return
        terminate(pid, self.stop_timeout_s, 5.0)
        if self._proc is not None:
            self._proc.wait(timeout=self.stop_timeout_s)  # reap it
        self._proc = None
        self.server_pid = None

    # -- start / stop ------------------------------------------------------------------------

    def _prepare(self) -> None:
        for path in (SYSTEM_CONFIG, SYSTEM_DB_DIR):
            if not path.exists():
                raise HarnessError(f"{path} is missing: the csync2 package creates it (it is "
                                   "only a mount point here)")
        key = self.workdir / "csync2.key"
        for node in NODES:
            (self.node_dir(node) / "db").mkdir(parents=True, exist_ok=True)
        (self.node_dir("B") / "files").mkdir(parents=True, exist_ok=True)
        self.synced_dir.mkdir(parents=True, exist_ok=True)
        if not key.exists():
            _run(["csync2", "-k", str(key)])
        (self.workdir / "csync2.cfg").write_text(config_text(self.synced_dir, key))
        (self.workdir / "hosts").write_text(
            "127.0.0.1 localhost\n" + "".join(f"{addr} {name}\n"
                                             for name, addr in NODES.values()))

    def start(self) -> Csync2Pair:
        """Create the network namespace and start node B's server. Cleans up what an earlier
        crashed run left; on failure, stops what it started."""
        self.stop()
        try:
            self._prepare()
            create_netns(self.netns)
            self.start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> list[str]:
        """Stop the server, kill by pid whatever else still runs in the network namespace
        (csync2 children, a left-over agent), delete the namespace. Idempotent."""
        done: list[str] = []
        if self.server_pid is not None:
            done.append(f"stopped csync2 server ({self.server_pid})")
            self.stop_server()
        for pid in netns_pids(self.netns):
            comm = read_comm(pid)
            terminate(pid, self.stop_timeout_s, 5.0)
            done.append(f"killed {comm} ({pid})")
        if Path("/run/netns", self.netns).exists():
            end = time.monotonic() + self.stop_timeout_s
            while netns_pids(self.netns) and time.monotonic() < end:
                time.sleep(0.05)
            problem = delete_netns(self.netns)
            if problem:
                raise HarnessError(problem)
            done.append(f"deleted netns {self.netns}")
        return done

    def __enter__(self) -> Csync2Pair:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
