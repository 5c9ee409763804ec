"""What every benchmark here measures the same way: wall and CPU time of one command."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.common import CLEAN_PATH


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
