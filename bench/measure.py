"""What every benchmark here measures the same way: wall and CPU time of one command."""

from __future__ import annotations

import datetime
import os
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.common import CLEAN_PATH

# A line of a libvirt log (libvirtd's, a domain's qemu log, a client library's):
# "<date> <time>.<ms>+0000: <the rest>".
LIBVIRT_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\+0000: (.*)$")


def libvirt_log_lines(path: Path) -> list[tuple[float, str]]:
    """Each stamped line of a libvirt log as (epoch seconds, the rest); none if unreadable."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        m = LIBVIRT_LOG_LINE.match(line)
        if m:
            out.append((datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").replace(
                tzinfo=datetime.UTC).timestamp(), m.group(2)))
    return out


@dataclass
class Series:
    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    rcs: set[int] = field(default_factory=set)

    def add(self, wall: float, cpu: float, rc: int) -> None:
        self.wall_ms.append(wall)
        self.cpu_ms.append(cpu)
        self.rcs.add(rc)

    def med(self) -> float:
        return statistics.median(self.wall_ms)

    def cpu(self) -> float:
        return statistics.median(self.cpu_ms)


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall time (ms), CPU (ms: user+sys of the process and the children it waited for, from
    wait4's rusage) and exit code of one run."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, cwd="/")
    _, status, ru = os.wait4(proc.pid, 0)
    wall = (time.perf_counter() - t0) * 1000
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, (ru.ru_utime + ru.ru_stime) * 1000, proc.returncode


def cib_file(work: Path, resource: str, agent: str) -> Path:
    """An empty CIB file holding one primitive ``resource`` of ocf:custom:``agent``: both
    agents keep the resource's utilization attributes there (CIB_file), as in a cluster."""
    cib = work / "cib.xml"
    env = {"PATH": CLEAN_PATH, "CIB_file": str(cib)}
    cib.write_text(subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True,
                                  check=True, env=env).stdout)
    subprocess.run(["cibadmin", "-C", "-o", "resources", "-X",
                    f'<primitive id="{resource}" class="ocf" provider="custom" '
                    f'type="{agent}"/>'], check=True, env=env, capture_output=True)
    return cib


MEASURED_BEGIN, MEASURED_END = "<!-- measured:begin -->", "<!-- measured:end -->"


def run_facts(root: Path) -> dict[str, str]:
    """When, where and at which commit a benchmark ran (its report's first line)."""
    import platform

    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    return {"when": time.strftime("%Y-%m-%d %H:%M"), "node": platform.node(),
            "cores": str(os.cpu_count()), "commit": commit}


def write_measured(out: Path, text: str, new_doc: str) -> None:
    """Put ``text`` between the measured markers of the report ``out`` (the prose around
    them is the report's own); a report without markers gets them at its end, a missing one
    starts as ``new_doc``."""
    doc = out.read_text() if out.is_file() else new_doc
    if MEASURED_BEGIN in doc and MEASURED_END in doc:
        head, rest = doc.split(MEASURED_BEGIN, 1)
        doc = head + MEASURED_BEGIN + "\n" + text + MEASURED_END + rest.split(MEASURED_END, 1)[1]
    else:
        doc = doc.rstrip() + f"\n\n{MEASURED_BEGIN}\n{text}{MEASURED_END}\n"
    out.write_text(doc)
    print(f"wrote {out}")
