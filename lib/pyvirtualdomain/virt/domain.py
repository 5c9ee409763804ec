"""Facts about one libvirt domain, and the operations on it. No policy here."""

from __future__ import annotations

from enum import Enum
from typing import Any

from ..errors import DomainNotFound
from .connection import Hypervisor
from .domxml import DomainIdentity


class DomainState(Enum):
    NOSTATE = "no state"
    RUNNING = "running"
    BLOCKED = "blocked"
    PAUSED = "paused"
    SHUTDOWN = "shutting down"
    SHUTOFF = "shut off"
    CRASHED = "crashed"
    PMSUSPENDED = "suspended by guest power management"

    @classmethod
    def from_libvirt(cls, code: int) -> DomainState:
        order = [cls.NOSTATE, cls.RUNNING, cls.BLOCKED, cls.PAUSED, cls.SHUTDOWN, cls.SHUTOFF,
                 cls.CRASHED, cls.PMSUSPENDED]
        return order[code] if 0 <= code < len(order) else cls.NOSTATE


SHUTDOWN_FLAG_NAMES = {
    "acpi": "VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN",
    "agent": "VIR_DOMAIN_SHUTDOWN_GUEST_AGENT",
    "initctl": "VIR_DOMAIN_SHUTDOWN_INITCTL",
    "signal": "VIR_DOMAIN_SHUTDOWN_SIGNAL",
    "paravirt": "VIR_DOMAIN_SHUTDOWN_PARAVIRT",
}


class Domain:
    def __init__(self, hv: Hypervisor, dom: Any) -> None:
        self.hv = hv
        self.dom = dom

    @property
    def name(self) -> str:
        return str(self.dom.name())

    def uuid(self) -> str:
        return str(self.dom.UUIDString()).lower()

    def state(self, timeout_s: float) -> tuple[DomainState, int]:
        code, reason = self.hv.call(lambda: self.dom.state(0), timeout_s, "get domain state")
        return DomainState.from_libvirt(int(code)), int(reason)

    def is_active(self, timeout_s: float) -> bool:
        return bool(self.hv.call(self.dom.isActive, timeout_s, "isActive"))

    def is_persistent(self, timeout_s: float) -> bool:
        return bool(self.hv.call(self.dom.isPersistent, timeout_s, "isPersistent"))

    def autostart(self, timeout_s: float) -> bool:
        return bool(self.hv.call(self.dom.autostart, timeout_s, "autostart"))

    def shutdown(self, modes: tuple[str, ...], timeout_s: float) -> None:
        flags = 0
        for mode in modes:
            flags |= int(getattr(self.hv.libvirt, SHUTDOWN_FLAG_NAMES[mode]))
        self.hv.call(lambda: self.dom.shutdownFlags(flags), timeout_s, "shutdown")

    def destroy(self, timeout_s: float) -> None:
        self.hv.call(self.dom.destroy, timeout_s, "destroy")

    def resume(self, timeout_s: float) -> None:
        self.hv.call(self.dom.resume, timeout_s, "resume")


def lookup(hv: Hypervisor, ident: DomainIdentity, timeout_s: float,
           name_fallback: bool = False) -> Domain:
    """The domain by UUID when known (names can be reused), else by name.

    ``name_fallback``: the UUID is only the one libvirt chose last time (the config names
    none), so a domain of that name re-created from the same config is this domain too."""
    conn = hv.conn
    if ident.uuid:
        try:
            dom = hv.call(lambda: conn.lookupByUUIDString(ident.uuid), timeout_s,
                          "lookup domain")
        except DomainNotFound:
            if not name_fallback:
                raise
            dom = hv.call(lambda: conn.lookupByName(ident.name), timeout_s, "lookup domain")
    else:
        dom = hv.call(lambda: conn.lookupByName(ident.name), timeout_s, "lookup domain")
    if dom is None:  # pragma: no cover - libvirt raises instead
        raise DomainNotFound(f"domain {ident.name} not found")
    return Domain(hv, dom)


def create_transient(hv: Hypervisor, xml: str, timeout_s: float) -> Domain:
    conn = hv.conn
    dom = hv.call(lambda: conn.createXML(xml, 0), timeout_s, "create domain")
    return Domain(hv, dom)


class MigrationJob:
    """Facts from libvirt's job statistics for a running migration."""

    def __init__(self, stats: dict[str, Any]) -> None:
        self.stats = stats

    @property
    def active(self) -> bool:
        return int(self.stats.get("type", 0)) not in (0,)  # VIR_DOMAIN_JOB_NONE

    def _int(self, *keys: str) -> int:
        for key in keys:
            if key in self.stats:
                try:
                    return int(self.stats[key])
                except (TypeError, ValueError):
                    return 0
        return 0

    @property
    def remaining_bytes(self) -> int:
        return self._int("data_remaining", "memory_remaining")

    @property
    def processed_bytes(self) -> int:
        return self._int("data_processed", "memory_processed")

    @property
    def total_bytes(self) -> int:
        return self._int("data_total", "memory_total")

    @property
    def bytes_per_s(self) -> int:
        return self._int("memory_bps", "disk_bps")

    @property
    def dirty_rate_pages(self) -> int:
        return self._int("memory_dirty_rate")

    @property
    def iteration(self) -> int:
        return self._int("memory_iteration")


def job(dom: Domain, timeout_s: float) -> MigrationJob:
    stats = dom.hv.call(lambda: dom.dom.jobStats(0), timeout_s, "job statistics")
    return MigrationJob(dict(stats or {}))


def abort_job(dom: Domain, timeout_s: float) -> None:
    dom.hv.call(dom.dom.abortJob, timeout_s, "abort job")


def set_max_downtime(dom: Domain, ms: int, timeout_s: float) -> None:
    dom.hv.call(lambda: dom.dom.migrateSetMaxDowntime(ms, 0), timeout_s, "set max downtime")


def start_postcopy(dom: Domain, timeout_s: float) -> None:
    dom.hv.call(lambda: dom.dom.migrateStartPostCopy(0), timeout_s, "start post-copy")
