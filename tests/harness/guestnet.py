"""A network for test guests that exists only inside a network namespace the test makes.

libvirtd (and so qemu) live in the host's network namespace, and libvirt opens a guest's tap
device there. So a guest joins the test network like this: the harness creates a persistent
tap in the host namespace (``<interface type='ethernet'>`` with ``managed='no'``: libvirt
only opens it), the domain is created *paused*, the tap is moved into the test namespace onto
its bridge (qemu keeps its descriptor, the device now lives in the other namespace), and the
domain resumes. The guest never sends a frame while its tap is in the host namespace, no
address is ever configured there, and deleting the namespace destroys the taps in it."""

from __future__ import annotations

import secrets
import subprocess
from types import TracebackType
from typing import Any

from .common import CLEAN_PATH, DEFAULT_URI, HarnessError
from .domains import import_libvirt, remove_domain, with_connection
from .guest import BUSYBOX

SUBNET = "10.213.0"  # only ever inside the test's namespace
BRIDGE = "br0"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                          env={"PATH": CLEAN_PATH, "LANG": "C"}, check=False)
    if check and proc.returncode != 0:
        raise HarnessError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def netns_exists(name: str) -> bool:
    return name in _ip("netns", "list").stdout.split()


def link_exists(name: str, netns: str | None = None) -> bool:
    args = (["-n", netns] if netns else []) + ["link", "show", "dev", name]
    return _ip(*args, check=False).returncode == 0


class GuestNetwork:
    """Namespace ``pyvd-net-<hex>`` with bridge br0 at 10.213.0.1/24; ``new_tap()`` hands out a
    tap and a guest address, ``start_guest()`` starts a domain on it, ``ping()`` pings from
    inside the namespace. ``close()`` removes the domains started on it, the namespace (and
    with it the taps moved there) and taps never moved; it raises if any remains."""

    def __init__(self, uri: str = DEFAULT_URI) -> None:
        self.netns = f"pyvd-net-{secrets.token_hex(3)}"
        self.uri = uri
        self.taps: list[str] = []
        self.domains: list[str] = []
        self._next_host = 2
        self._created = False

    def create(self) -> GuestNetwork:
        _ip("netns", "add", self.netns)
        self._created = True
        try:
            _ip("-n", self.netns, "link", "set", "lo", "up")
            _ip("-n", self.netns, "link", "add", BRIDGE, "type", "bridge")
            _ip("-n", self.netns, "addr", "add", f"{SUBNET}.1/24", "dev", BRIDGE)
            _ip("-n", self.netns, "link", "set", BRIDGE, "up")
        except BaseException:
            self.close()
            raise
        return self

    def new_tap(self) -> tuple[str, str]:
        """A new persistent tap in the host namespace (down, no address) and the address
        (CIDR) for the guest behind it."""
        tap = f"pyvdt{secrets.token_hex(3)}"
        _ip("tuntap", "add", "dev", tap, "mode", "tap")
        self.taps.append(tap)
        address = f"{SUBNET}.{self._next_host}/24"
        self._next_host += 1
        return tap, address

    def start_guest(self, name: str, xml: str, tap: str, timeout_s: float = 30.0) -> None:
        """Create the transient domain ``xml`` (whose interface uses ``tap``) paused, move
        the tap onto the namespace's bridge, then let the guest run."""
        libvirt = import_libvirt()
        self.domains.append(name)
        with_connection(lambda conn: conn.createXML(xml, libvirt.VIR_DOMAIN_START_PAUSED),
                        self.uri, timeout_s, f"create {name} paused")
        _ip("link", "set", "dev", tap, "netns", self.netns)
        _ip("-n", self.netns, "link", "set", "dev", tap, "master", BRIDGE)
        _ip("-n", self.netns, "link", "set", "dev", tap, "up")

        def resume(conn: Any) -> None:
            conn.lookupByName(name).resume()

        with_connection(resume, self.uri, timeout_s, f"resume {name}")

    def ping(self, address: str, count: int = 1, wait_s: int = 1) -> bool:
        """Whether ``address`` (no prefix length) answers ``count`` pings from the namespace.
        busybox's ping (busybox-static is a harness dependency; the host may have no other).
        Raises HarnessError when ping could not run at all, so that is never read as "no
        answer"."""
        proc = subprocess.run(["ip", "netns", "exec", self.netns, str(BUSYBOX), "ping", "-q",
                               "-c", str(count), "-W", str(wait_s), address.split("/")[0]],
                              capture_output=True, text=True, timeout=30 + count * wait_s,
                              env={"PATH": CLEAN_PATH, "LANG": "C"}, check=False)
        if proc.returncode != 0 and (proc.stderr.strip() or "packets transmitted"
                                     not in proc.stdout):
            raise HarnessError(f"ping {address} in {self.netns} did not run: "
                               f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc.returncode == 0

    def close(self) -> list[str]:
        done: list[str] = []
        for name in self.domains:
            done += [f"{name}: {d}" for d in remove_domain(name, self.uri)]
        if self._created and netns_exists(self.netns):
            _ip("netns", "del", self.netns)
            done.append(f"deleted netns {self.netns}")
        for tap in self.taps:
            if link_exists(tap):  # never moved into the namespace
                _ip("tuntap", "del", "dev", tap, "mode", "tap")
                done.append(f"deleted tap {tap}")
        left = [t for t in self.taps if link_exists(t)]
        if netns_exists(self.netns) or left:
            raise HarnessError(f"guest network teardown left netns {self.netns} "
                               f"{'present' if netns_exists(self.netns) else 'gone'}, "
                               f"taps {left}")
        self._created = False
        return done

    def __enter__(self) -> GuestNetwork:
        return self.create()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
