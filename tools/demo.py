"""Demo: boot a tiny real guest under the agent and walk it through its life cycle.

Starts its own libvirtd (stopped again at the end, by pid), builds the guest (host kernel +
busybox initramfs), then runs the agent exactly as Pacemaker would and prints each exit code.
Run as root from the repository: `make demo`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.common import CLEAN_PATH, DEFAULT_CACHE_DIR, HostLock  # noqa: E402
from tests.harness.domains import domain_state, remove_domain  # noqa: E402
from tests.harness.guest import (  # noqa: E402
    ACPID_MARKER,
    POWERBUTTON_MARKER,
    build_artifacts,
    console_text,
    detect_virt_type,
    domain_xml,
    wait_for_console,
)
from tests.harness.libvirtd import Libvirtd  # noqa: E402

AGENT = ROOT / "agents" / "PyVirtualDomain"
NAMES = {0: "SUCCESS", 1: "ERR_GENERIC", 2: "ERR_ARGS", 3: "ERR_UNIMPLEMENTED", 4: "ERR_PERM",
         5: "ERR_INSTALLED", 6: "ERR_CONFIGURED", 7: "NOT_RUNNING"}


def agent(action: str, env: dict[str, str], **meta: str) -> int:
    full = {"PATH": CLEAN_PATH, **env}
    full.update({f"OCF_RESKEY_CRM_meta_{k}": v for k, v in meta.items()})
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, str(AGENT), action], env=full, capture_output=True,
                       text=True, timeout=200)
    took = time.monotonic() - t0
    label = action + (" (probe)" if action == "monitor" and "interval" not in meta else "")
    print(f"  {label:<22} rc={r.returncode} {NAMES.get(r.returncode, '?'):<15} {took:6.2f}s")
    for line in r.stderr.splitlines():
        print(f"      | {line}")
    return r.returncode


def main() -> int:
    if os.geteuid() != 0:
        print("the demo runs libvirtd and a guest: run it as root", file=sys.stderr)
        return 2
    work = ROOT / "build" / "demo"
    work.mkdir(parents=True, exist_ok=True)
    name = "pyvd-demo"
    failures = 0
    lock = HostLock()
    lock.acquire()
    daemon = Libvirtd()
    print("== starting libvirtd (first start probes qemu, ~15 s)")
    daemon.start()
    try:
        arts = build_artifacts(DEFAULT_CACHE_DIR)
        virt = detect_virt_type(arts, DEFAULT_CACHE_DIR)
        print(f"== guest: kernel {arts.kernel_version}, <domain type='{virt}'>"
              f"{' (TCG: KVM does not boot guests here)' if virt == 'qemu' else ''}")
        console = work / f"{name}.console.log"
        cfg = work / f"{name}.xml"
        cfg.write_text(domain_xml(name, "graceful", arts, virt, console))
        env = {"OCF_RESKEY_config": str(cfg), "OCF_RESKEY_hypervisor": "qemu:///system",
               "OCF_RESOURCE_INSTANCE": name, "HA_RSCTMP": str(work / "state")}
        print(f"== agent {AGENT} on {cfg}")
        steps = [("validate-all", {}, 0), ("monitor", {}, 7),
                 ("start", {"timeout": "60000"}, 0),
                 ("monitor", {"interval": "10000", "timeout": "30000"}, 0)]
        for action, meta, want in steps:
            failures += agent(action, env, **meta) != want
            print(f"      libvirt says: {domain_state(name) or 'no such domain'}")
        print("== waiting for the guest's acpid (a shutdown request needs a listener)")
        wait_for_console(console, ACPID_MARKER, 30)
        failures += agent("stop", env, timeout="60000") != 0
        graceful = POWERBUTTON_MARKER in console_text(console)
        print(f"      libvirt says: {domain_state(name) or 'no such domain'};"
              f" guest console: {'powered off by ACPI' if graceful else 'no ACPI shutdown'}")
        failures += agent("monitor", env, interval="10000") != 7
        failures += agent("stop", env) != 0
    finally:
        remove_domain(name)
        print("== stopping libvirtd")
        daemon.stop()
        lock.release()
    print("== demo", "FAILED" if failures else "passed: every exit code as expected")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
