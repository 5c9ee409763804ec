"""Demo: the Pacemaker Remote guide's cluster on one machine, run by our agent.

Brings up two cluster nodes (pcmk-1, pcmk-2: corosync + Pacemaker + libvirtd each, in their own
network, mount and UTS namespaces, with fencing by the harness's fence agent), starts the guest
node guest1 (a tiny qemu/TCG VM running pacemaker-remoted) under ocf:custom:PyVirtualDomain
with a Dummy on it, moves it to the other node by live migration, then cuts the power of the
node it runs on and shows Pacemaker fence that node and recover the guest on the survivor.
``crm_mon`` is printed at each step; everything is torn down at the end.
Run as root from the repository: `make demo-cluster`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.cluster import (  # noqa: E402
    DEFAULT_STATE_DIR,
    DOMAIN_PREFIX,
    TWO_NODES,
    Cluster,
    ClusterStatus,
)
from tests.harness.guestnode import (  # noqa: E402
    GUIDE_MONITOR_INTERVAL,
    GUIDE_OPS,
    GuestNodeVM,
)
from tests.harness.twohosts import SharedHostLock  # noqa: E402

VM = "vm-guest1"
DUMMY = "dummy-g1"


def show(cl: Cluster, title: str) -> None:
    print(f"\n== {title}")
    text = cl.crm_mon_text("-r")
    for line in text.splitlines():
        if line.strip() and not line.startswith(("Cluster Summary", "  * Last", "  * Stack",
                                                 "Status of pacemakerd")):
            print(f"   {line}")


def up(node: str | None = None) -> Callable[[ClusterStatus], bool]:
    def check(st: ClusterStatus) -> bool:
        on = st.started_on(VM)
        return (st.online("guest1") and st.started_on(DUMMY) == ("guest1",) and len(on) == 1
                and (node is None or on == (node,)))
    return check


def main() -> int:
    if os.geteuid() != 0:
        print("the demo runs corosync, Pacemaker, libvirtd and a VM: run it as root",
              file=sys.stderr)
        return 2
    with SharedHostLock():
        cl = Cluster(DEFAULT_STATE_DIR / "demo-cluster", TWO_NODES)
        print("== starting the two cluster nodes pcmk-1 and pcmk-2 (fencing: fence_pyvd)")
        with cl:
            print(f"   up in {cl.started_in_s:.1f}s (state and logs in {cl.dir})")
            vm = GuestNodeVM(cl, "guest1", f"{DOMAIN_PREFIX}guest1",
                             TWO_NODES.guest_address(31), "52:54:00:50:00:31",
                             "5079d0de-0000-4000-8000-000000000031")
            vm.write()
            node = cl.live()
            print("== adding vm-guest1 (ocf:custom:PyVirtualDomain, meta remote-node=guest1 "
                  "allow-migrate=true) and a Dummy on guest1")
            node.add_primitive(VM, "PyVirtualDomain",
                               {"config": str(vm.config), "hypervisor": "qemu:///system",
                                "migration_transport": "tcp"},
                               meta={"remote-node": "guest1", "remote-addr": vm.address,
                                     "allow-migrate": "true"},
                               monitor_interval=GUIDE_MONITOR_INTERVAL, ops=GUIDE_OPS,
                               avoid_nodes=("guest1",))
            node.add_primitive(DUMMY, "Dummy", {}, provider="pacemaker",
                               monitor_interval="10s", op_timeout="20s",
                               avoid_nodes=tuple(cl.names), prefer_node="guest1")
            t0 = time.monotonic()
            st = cl.wait_status(up(), 120, "guest1 online with its Dummy")
            show(cl, f"guest1 online after {time.monotonic() - t0:.1f}s (boot id "
                     f"{vm.boot_id()})")
            src = st.started_on(VM)[0]
            dst = cl.other(src).name
            print(f"\n== crm_resource --move {VM} --node {dst}: a live migration")
            t0 = time.monotonic()
            node.crm_resource("--move", "--resource", VM, "--node", dst, check=True)
            cl.wait_status(up(dst), 150, f"{VM} on {dst}")
            node.crm_resource("--clear", "--resource", VM, check=True)
            show(cl, f"guest1 on {dst} after {time.monotonic() - t0:.1f}s, same boot id "
                     f"{vm.boot_id()}; oracle: {vm.oracle.check().summary()}")
            victim = cl.node(dst)
            survivor = cl.other(dst)
            print(f"\n== power cut of {dst}: its corosync SIGKILLed; Pacemaker on "
                  f"{survivor.name} must fence it before it recovers guest1")
            t0 = time.monotonic()
            pid = victim.pid("corosync")
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
            survivor.wait_status(up(survivor.name), 150, f"guest1 recovered on {survivor.name}")
            show(cl, f"guest1 recovered on {survivor.name} {time.monotonic() - t0:.1f}s after "
                     f"the power cut (new boot id {vm.boot_id()})")
            for line in cl.fence_events():
                print(f"   fence_pyvd: {line.split(' ', 1)[1]}")
            cl.wait_status(lambda st: all(st.online(n) for n in cl.names), 150,
                           f"{dst} rejoined")
            show(cl, f"{dst} rebooted and rejoined; libvirt there knows: "
                     f"{vm.states()[dst] or 'nothing of guest1'}")
            print(f"\n== oracle (guest1 never ran twice): {vm.oracle.check().summary()}")
            print("\n== tearing everything down")
    print("== demo passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
