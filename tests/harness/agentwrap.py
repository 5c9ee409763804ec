"""A thin wrapper around a resource agent, for the soak (tests/cluster/soak.py): Pacemaker runs
the wrapper where it would run the agent (bound over the agent's path inside every cluster
node, tests/harness/cluster.py ``Layout.file_binds``), the wrapper runs the real agent with
the same arguments and environment and passes its output and exit code through, and appends
one JSON line per call to a log: the resource, the action, its interval and check level, the
exit code, when it ran and how long it took. After a stop that answered 0 it looks at once
for processes of that domain still running on that node (qemu of the domain in the node's
network namespace, the container's libvirt_lxc controller there and everything below it, and
a container's processes left without a controller) and logs them: the agent must never say
"stopped" while the guest still runs.

This is test code, not the product: it lives in the harness and is bound over the agents
inside the test cluster's nodes only. For the soak's self-test it can also lie: a stop of a
resource named in the "lie" file answers 0 without running the agent at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

WRAPPER = r'''#!/usr/bin/python3 -I
"""Soak wrapper (tests/harness/agentwrap.py) around @REAL@."""
import json
import os
import re
import subprocess
import sys
import time

REAL = @REAL_Q@
LOG = @LOG_Q@
LIE = @LIE_Q@
SNAPSHOT = @SNAPSHOT@


def read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return b"" if "b" in mode else ""


def domain_of(config):
    text = read(config)
    m = re.search(r"<name>\s*([^<]+?)\s*</name>", text)
    t = re.search(r"<domain[^>]*\stype=['\"](\w+)['\"]", text)
    return (m.group(1) if m else None), (t.group(1) if t else None)


def snapshot(domain, driver):
    """Processes of the domain still running on this node."""
    mine = os.readlink("/proc/self/ns/net")
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        stat = read(f"/proc/{pid}/stat")
        if not stat or stat[stat.rfind(")") + 2] in "ZX":
            continue
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        procs[pid] = (ppid, read(f"/proc/{pid}/comm").strip())
    kids = {}
    for pid, (ppid, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)

    def netns(pid):
        try:
            return os.readlink(f"/proc/{pid}/ns/net")
        except OSError:
            return None

    def below(pid):
        out, todo = [], list(kids.get(pid, []))
        while todo:
            p = todo.pop()
            out.append(p)
            todo.extend(kids.get(p, []))
        return out

    left = []
    for pid, (ppid, comm) in procs.items():
        argv = read(f"/proc/{pid}/cmdline", "rb").split(b"\0")
        argv = [a.decode("utf-8", "replace") for a in argv]
        if driver != "lxc" and comm.startswith("qemu-system") \
                and any(a.startswith(f"guest={domain},") or a == f"guest={domain}"
                        for a in argv) and netns(pid) == mine:
            left.append({"pid": pid, "comm": comm, "what": "emulator"})
        if driver == "lxc" and comm == "libvirt_lxc" and netns(pid) == mine \
                and any(a == "--name" and b == domain for a, b in zip(argv, argv[1:])):
            left.append({"pid": pid, "comm": comm, "what": "controller"})
            for p in below(pid):
                if p in procs:
                    left.append({"pid": p, "comm": procs[p][1], "what": "container"})
    if driver == "lxc":
        # a container's processes whose controller is gone: whose node they were is not
        # known any more, and none may be left when a stop says 0
        mark = f"LIBVIRT_LXC_NAME={domain}".encode()
        for pid, (ppid, comm) in procs.items():
            if mark not in read(f"/proc/{pid}/environ", "rb").split(b"\0"):
                continue
            p, orphan = ppid, True
            while p in procs and p > 1:
                if procs[p][1] == "libvirt_lxc":
                    orphan = False
                    break
                p = procs[p][0]
            if orphan:
                left.append({"pid": pid, "comm": comm, "what": "container without controller"})
    return left


def main():
    args = sys.argv[1:]
    action = args[0] if args else ""
    env = os.environ
    rsc = env.get("OCF_RESOURCE_INSTANCE", "")
    t0 = time.time()
    m0 = time.monotonic()
    lied = action == "stop" and rsc in read(LIE).split()
    rc = 0 if lied else subprocess.call([REAL, *args])
    took = time.monotonic() - m0
    if action in ("meta-data", "validate-all", ""):
        return rc
    rec = {"t": round(t0, 3), "t_end": round(time.time(), 3), "node": os.uname().nodename,
           "rsc": rsc, "agent": os.path.basename(REAL), "action": action,
           "interval_ms": int(env.get("OCF_RESKEY_CRM_meta_interval", "0") or 0),
           "check_level": env.get("OCF_CHECK_LEVEL", ""), "rc": rc,
           "ms": round(took * 1000), "pid": os.getpid()}
    if lied:
        rec["lied"] = True
    if SNAPSHOT and action == "stop" and rc == 0:
        domain, driver = domain_of(env.get("OCF_RESKEY_config", ""))
        rec["domain"] = domain
        if domain:
            rec["left"] = snapshot(domain, driver)
            rec["snapshot_ms"] = round((time.monotonic() - m0 - took) * 1000)
    line = (json.dumps(rec, sort_keys=True) + "\n").encode()
    try:
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError:
        pass
    return rc


sys.exit(main())
'''


def wrapper_text(real: Path, log: Path, lie: Path, snapshot: bool = True) -> str:
    """``snapshot=False``: no look for processes after a stop 0 (benchmarks that only want
    each operation's time, bench/evacuate.py)."""
    return (WRAPPER.replace("@REAL_Q@", json.dumps(str(real)))
            .replace("@SNAPSHOT@", repr(snapshot))
            .replace("@LOG_Q@", json.dumps(str(log)))
            .replace("@LIE_Q@", json.dumps(str(lie)))
            .replace("@REAL@", str(real)))


def wrapper_paths(run_dir: Path, cluster_dir: Path, agents: Iterable[tuple[str, str]],
                  ocf_root: Path) -> list[tuple[Path, Path, Path]]:
    """For each (provider, agent): where its wrapper is written (below ``run_dir``), the real
    agent as the cluster's nodes still see it (the cluster's own resource.d) and the path the
    wrapper is bound over in every node (below ``ocf_root``, the resource.d directory)."""
    return [(run_dir / "wrappers" / provider / agent,
             cluster_dir / "resource.d" / provider / agent,
             ocf_root / provider / agent) for provider, agent in agents]


def write_wrapper(path: Path, real: Path, log: Path, lie: Path,
                  snapshot: bool = True) -> Path:
    """The wrapper of ``real`` at ``path`` (executable), logging to ``log``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(wrapper_text(real, log, lie, snapshot))
    path.chmod(0o755)
    return path


def read_log(path: Path, offset: int = 0) -> tuple[list[dict[str, object]], int]:
    """The records appended to the wrapper log since byte ``offset``, and the new offset
    (a line being written stays for the next read)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    out = []
    for raw in data[:end].splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            out.append({"malformed": raw.decode("utf-8", "replace")[:200]})
    return out, offset + end
