"""Demo: a tiny real guest under the agent, through its whole life on a two-node "cluster".

Starts two libvirt hosts (hostA, hostB: each its own libvirtd in its own network, mount and
UTS namespaces, joined by a veth pair that exists only inside them), builds the guest (host
kernel + busybox initramfs), then runs the agent exactly as Pacemaker's executor would on each
node: validate-all, probe, start, monitor, live migration A -> B, monitor on both, stop.
Prints every exit code and what each libvirtd says; stops everything it started at the end.
Run as root from the repository: `make demo`.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.guest import (  # noqa: E402
    ACPID_MARKER,
    POWERBUTTON_MARKER,
    build_artifacts,
    console_text,
    domain_xml,
    wait_for_console,
)
from tests.harness.twohosts import NODE_NAMES, SharedHostLock, TwoHosts  # noqa: E402

NAMES = {0: "SUCCESS", 1: "ERR_GENERIC", 2: "ERR_ARGS", 3: "ERR_UNIMPLEMENTED", 4: "ERR_PERM",
         5: "ERR_INSTALLED", 6: "ERR_CONFIGURED", 7: "NOT_RUNNING"}


def main() -> int:
    if os.geteuid() != 0:
        print("the demo runs libvirtd and a guest: run it as root", file=sys.stderr)
        return 2
    virt = os.environ.get("PYVD_TEST_VIRT_TYPE", "").strip() or "qemu"
    name = "pyvd-demo"
    failures = 0
    print("== building the guest (host kernel + busybox initramfs)")
    arts = build_artifacts()
    print(f"   kernel {arts.kernel_version}, <domain type='{virt}'>"
          f"{' (TCG: KVM does not boot guests on this machine)' if virt == 'qemu' else ''}")
    print("== starting two libvirt hosts in network namespaces: hostA, hostB")
    with SharedHostLock(), TwoHosts() as hosts, \
            tempfile.TemporaryDirectory(prefix="pyvd-demo-") as tmp:
        work = Path(tmp)
        config = work / f"{name}.xml"
        # Console logs live in each host's private /var/log/libvirt, as on real nodes.
        console = Path("/var/log/libvirt/qemu") / f"{name}.console.log"
        config.write_text(domain_xml(name, "graceful", arts, virt, console))
        params = {"config": str(config), "hypervisor": "qemu:///system",
                  "migration_transport": "tcp"}

        def agent(host: str, action: str, want: int, **kw: object) -> None:
            nonlocal failures
            r = hosts.run_agent(host, action, params, instance=name,
                                state_dir=work / f"state-{host}", **kw)  # type: ignore[arg-type]
            label = f"host{host}: {action}" + (
                " (probe)" if action == "monitor" and not kw.get("interval_ms") else "")
            mark = "" if r.rc == want else f"   <-- expected {want}"
            print(f"  {label:<28} rc={r.rc} {NAMES.get(r.rc, '?'):<15} {r.elapsed_s:6.2f}s{mark}")
            for line in r.stderr.splitlines():
                print(f"      | {line}")
            states = hosts.states(name)
            print(f"      libvirt: hostA {states['A'] or 'no such domain'}, "
                  f"hostB {states['B'] or 'no such domain'}")
            failures += r.rc != want

        print(f"== the agent, as Pacemaker runs it on each node, on {config.name}")
        agent("A", "validate-all", 0, timeout_ms=5000)
        agent("A", "monitor", 7, timeout_ms=20000)
        agent("A", "start", 0, timeout_ms=60000)
        agent("A", "monitor", 0, timeout_ms=20000, interval_ms=10000)
        console_a = hosts.host_dir("A") / "log" / "qemu" / console.name
        wait_for_console(console_a, ACPID_MARKER, 60)
        time.sleep(1.0)
        print("== live migration hostA -> hostB (migrate_to on A, then migrate_from on B)")
        agent("A", "migrate_to", 0, timeout_ms=120000, migrate_target=NODE_NAMES["B"],
              migrate_source=NODE_NAMES["A"])
        agent("B", "migrate_from", 0, timeout_ms=60000, migrate_target=NODE_NAMES["B"],
              migrate_source=NODE_NAMES["A"])
        agent("A", "monitor", 7, timeout_ms=20000, interval_ms=10000)
        agent("B", "monitor", 0, timeout_ms=20000, interval_ms=10000)
        agent("A", "stop", 0, timeout_ms=60000)
        print("== graceful stop on hostB")
        agent("B", "stop", 0, timeout_ms=60000)
        console_b = hosts.host_dir("B") / "log" / "qemu" / console.name
        acpi = POWERBUTTON_MARKER in console_text(console_b)
        print(f"      guest console on hostB: "
              f"{'powered off by ACPI' if acpi else 'no ACPI shutdown seen'}")
        agent("B", "monitor", 7, timeout_ms=20000, interval_ms=10000)
        print("== stopping both hosts")
    print("== demo", "FAILED" if failures else "passed: every exit code as expected")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
