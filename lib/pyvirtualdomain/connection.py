"""Opening the hypervisor, and running every libvirt call with a bound on its duration.

libvirt-python calls block until libvirtd answers; a frozen daemon never answers. Each call
therefore runs in a worker thread and the caller waits at most the bound it was given. After a
call has been abandoned the connection is treated as dead: nothing else is sent on it.
The workers are bare ``_thread`` threads (a lock and a thread are all this needs, and the
``threading`` module costs every monitor an import); like daemon threads, nothing waits for
them when the agent exits.
"""

from __future__ import annotations

import _thread
import os
import re
import time
from typing import Any, Callable, Mapping, TypeVar

from .deadline import Deadline
from .errors import HypervisorTimeout, HypervisorUnavailable, LibvirtFact, classify_libvirt_error

T = TypeVar("T")

# Default URI per <domain type=...> when neither the parameter nor libvirt's configuration
# names one; what "virsh uri" gives on a host running that hypervisor as root.
URI_BY_VIRT_TYPE = {"lxc": "lxc:///system", "xen": "xen:///system", "test": "test:///default"}
FALLBACK_URI = "qemu:///system"
KNOWN_DRIVERS = frozenset({
    "qemu", "kvm", "lxc", "xen", "libxl", "test", "vbox", "vmware", "vmwarews", "vmwarefusion",
    "vmwareplayer", "esx", "gsx", "vpx", "hyperv", "vz", "bhyve", "openvz", "ch", "phyp",
})


def import_libvirt() -> Any:
    import libvirt

    # libvirt's default handler prints every error to stderr; errors reach us as exceptions.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


def _uri_default_from_conf(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition("=")
                if sep and key.strip() == "uri_default":
                    return value.strip().strip("\"'") or None
    except OSError:
        return None
    return None


def default_uri(virt_type: str, environ: Mapping[str, str]) -> str:
    """The URI used when the hypervisor parameter is unset (see the metadata)."""
    env_uri = environ.get("LIBVIRT_DEFAULT_URI", "").strip()
    if env_uri:
        return env_uri
    if os.geteuid() == 0:
        conf = "/etc/libvirt/libvirt.conf"
    else:
        base = environ.get("XDG_CONFIG_HOME") or os.path.join(environ.get("HOME", "/"), ".config")
        conf = os.path.join(base, "libvirt", "libvirt.conf")
    return _uri_default_from_conf(conf) or URI_BY_VIRT_TYPE.get(virt_type, FALLBACK_URI)


# [user@]host-or-[IPv6][:port], any part may be empty (local URIs have no authority).
_AUTHORITY = r"^(?:[^@/\s\[\]]*@)?(?:\[[0-9A-Fa-f:.]+\]|[^\[\]/\s:@]*)(?::\d*)?$"


def _authority_pattern() -> re.Pattern[str]:
    """Compiled on first use (re caches it): a local URI never pays the ~0.4 ms."""
    return re.compile(_AUTHORITY)


def _split_uri(uri: str) -> tuple[str, str] | None:
    """(scheme, authority) of a libvirt URI, or None when it has no "scheme://".
    (Not urllib.parse: it costs the monitor path a few ms of imports.)"""
    scheme, sep, rest = uri.partition("://")
    if not sep or not scheme:
        return None
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    return scheme, authority


def uri_problem(uri: str) -> str | None:
    """Why a URI is not a usable libvirt URI, or None."""
    parts = _split_uri(uri.strip())
    if parts is None or any(c.isspace() for c in uri.strip()):
        return f"hypervisor URI {uri!r} is not a libvirt URI (e.g. qemu:///system)"
    driver = parts[0].split("+", 1)[0]
    if driver not in KNOWN_DRIVERS:
        return f"hypervisor URI {uri!r} names no libvirt driver ({driver!r} is unknown)"
    if parts[1] and not _authority_pattern().match(parts[1]):
        return f"hypervisor URI {uri!r} has a malformed host part {parts[1]!r}"
    return None


def is_local_uri(uri: str) -> bool:
    """True when the hypervisor runs on this host (no host part in the URI)."""
    parts = _split_uri(uri)
    return parts is not None and parts[1] == ""


MIN_CALL_S = 0.5


def bounded(fn: Callable[[], T], timeout_s: float, what: str, libvirt: Any) -> T:
    """Run ``fn`` for at most ``timeout_s``; map libvirt errors to facts."""
    box: dict[str, Any] = {}
    done = _thread.allocate_lock()
    done.acquire()

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box["error"] = exc
        finally:
            done.release()

    _thread.start_new_thread(run, ())
    if not done.acquire(True, max(0.0, timeout_s)):
        raise HypervisorTimeout(f"{what}: libvirt did not answer within {timeout_s:.1f}s")
    if "error" in box:
        exc = box["error"]
        if isinstance(exc, libvirt.libvirtError):
            raise classify_libvirt_error(exc, libvirt) from None
        raise exc
    return box["value"]  # type: ignore[no-any-return]


class Hypervisor:
    """One open libvirt connection; every call bounded in time."""

    def __init__(self, uri: str, conn: Any, libvirt: Any) -> None:
        self.uri = uri
        self.conn = conn
        self.libvirt = libvirt
        self.hung = False

    def call(self, fn: Callable[[], T], timeout_s: float, what: str) -> T:
        if self.hung:
            raise HypervisorTimeout(f"{what}: libvirt stopped answering earlier in this action")
        try:
            # A bound near zero (a phase of the action about to end) would call a healthy
            # daemon hung and send the action down its last-resort path: every call gets at
            # least MIN_CALL_S, which the action's margin absorbs.
            return bounded(fn, max(MIN_CALL_S, timeout_s), what, self.libvirt)
        except HypervisorTimeout:
            self.hung = True
            raise

    def close(self) -> None:
        # Closing sends a message to the daemon; never on one that stopped answering.
        if not self.hung:
            try:
                bounded(self.conn.close, 1.0, "close", self.libvirt)
            except LibvirtFact:
                self.hung = True


def open_hypervisor(uri: str, deadline: Deadline, retry_for_s: float = 0.0,
                    attempt_s: float = 5.0) -> Hypervisor:
    """Connect, retrying while libvirtd is unreachable for up to ``retry_for_s`` seconds
    (it may be restarting). A connection that hangs is not retried."""
    libvirt = import_libvirt()
    retry_end = deadline.now() + retry_for_s
    pause = 0.1
    while True:
        try:
            conn = bounded(lambda: libvirt.open(uri), deadline.bound(attempt_s),
                           f"connect {uri}", libvirt)
            return Hypervisor(uri, conn, libvirt)
        except HypervisorUnavailable:
            if deadline.now() + pause >= min(retry_end, deadline.end):
                raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
