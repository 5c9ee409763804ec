"""Facts about one libvirt domain, and the operations on it. No policy here.

Every per-domain call is a method named for what it does; the virDomain itself
(``virdomain``) is for the virt/ modules only."""

from __future__ import annotations

from enum import Enum
from typing import Any, Mapping, Sequence

from ..errors import DomainNotFound, NoMetadata, classify_libvirt_error
from ..owner import OWNER_NS, OWNER_PREFIX, Owner, owner_element, parse_owner_element
from .connection import Hypervisor, PendingCall
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


# The domain exists and holds its guest's memory: for Pacemaker it runs.
RUNNING_STATES = frozenset({DomainState.RUNNING, DomainState.BLOCKED, DomainState.PAUSED,
                            DomainState.SHUTDOWN, DomainState.PMSUSPENDED})
# Its vCPUs execute (or wait for work): what start and migrate_from wait for.
EXECUTING_STATES = frozenset({DomainState.RUNNING, DomainState.BLOCKED})
# Stopped by libvirt, a user or the guest, and resumable.
SUSPENDED_STATES = frozenset({DomainState.PAUSED, DomainState.PMSUSPENDED})

# libvirt's virDomainPausedReason, in words.
PAUSED_REASONS = {0: "for an unknown reason", 1: "by a user", 2: "for a migration",
                  3: "for a save", 4: "for a core dump", 5: "by a disk I/O error",
                  6: "by its watchdog", 7: "from a snapshot", 8: "while shutting down",
                  9: "for a snapshot", 10: "after the guest crashed", 11: "while starting up",
                  12: "for post-copy", 13: "after a failed post-copy", 14: "after an API error"}
PAUSED_MIGRATION = 2
PAUSED_IOERROR = 5
PAUSED_WATCHDOG = 6
PAUSED_CRASHED = 10
PAUSED_STARTING_UP = 11

# libvirt's state reasons (virDomainRunningReason / virDomainPausedReason) for post-copy.
RUNNING_POSTCOPY = 10
RUNNING_POSTCOPY_FAILED = 11
PAUSED_POSTCOPY = 12
PAUSED_POSTCOPY_FAILED = 13


def in_postcopy(state: DomainState, reason: int) -> bool:
    """The domain takes part in a post-copy migration that passed its switch-over (running or
    failed): from then on neither side holds all of the guest's memory."""
    if state == DomainState.RUNNING:
        return reason in (RUNNING_POSTCOPY, RUNNING_POSTCOPY_FAILED)
    if state == DomainState.PAUSED:
        return reason in (PAUSED_POSTCOPY, PAUSED_POSTCOPY_FAILED)
    return False


def arrived(state: DomainState, reason: int) -> bool:
    """Whether a domain on the target of a migration has arrived: it runs, or it is paused
    for another reason than the incoming migration itself (it was paused on the source, or
    migrated with --suspend: libvirt then calls it paused by the user)."""
    if state in EXECUTING_STATES:
        return not postcopy_failed(state, reason)
    return state == DomainState.PAUSED and reason not in (
        PAUSED_MIGRATION, PAUSED_STARTING_UP, PAUSED_POSTCOPY, PAUSED_POSTCOPY_FAILED)


def postcopy_failed(state: DomainState, reason: int) -> bool:
    """A post-copy migration of the domain failed after the switch-over: this side cannot run
    the guest (the rest of its memory is on the other host)."""
    return (state, reason) in ((DomainState.RUNNING, RUNNING_POSTCOPY_FAILED),
                               (DomainState.PAUSED, PAUSED_POSTCOPY_FAILED))


SHUTDOWN_FLAG_NAMES = {
    "acpi": "VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN",
    "agent": "VIR_DOMAIN_SHUTDOWN_GUEST_AGENT",
    "initctl": "VIR_DOMAIN_SHUTDOWN_INITCTL",
    "signal": "VIR_DOMAIN_SHUTDOWN_SIGNAL",
    "paravirt": "VIR_DOMAIN_SHUTDOWN_PARAVIRT",
}


class DomainInfo:
    """virDomainGetInfo: what the utilization attributes need (a plain class: the monitor
    imports this module, and a NamedTuple costs it a tenth of a millisecond to define)."""

    __slots__ = ("max_memory_kib", "memory_kib", "vcpus")

    def __init__(self, max_memory_kib: int, memory_kib: int, vcpus: int) -> None:
        self.max_memory_kib = max_memory_kib
        self.memory_kib = memory_kib
        self.vcpus = vcpus


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
    def dirty_bytes_per_s(self) -> int:
        return self.dirty_rate_pages * (self._int("memory_page_size") or 4096)

    @property
    def iteration(self) -> int:
        return self._int("memory_iteration")


class Domain:
    def __init__(self, hv: Hypervisor, virdomain: Any) -> None:
        self.hv = hv
        self.virdomain = virdomain

    # -- finding and creating ------------------------------------------------------------

    @classmethod
    def lookup(cls, hv: Hypervisor, ident: DomainIdentity, timeout_s: float,
               name_fallback: bool = False) -> Domain:
        """The domain by UUID when known (names can be reused), else by name.

        ``name_fallback``: the UUID is only the one libvirt chose last time (the config names
        none), so a domain of that name re-created from the same config is this domain too."""
        conn = hv.virconnect
        if ident.uuid:
            try:
                dom = hv.call(lambda: conn.lookupByUUIDString(ident.uuid), timeout_s,
                              "lookup domain")
            except DomainNotFound:
                if not name_fallback:
                    raise
                dom = hv.call(lambda: conn.lookupByName(ident.name), timeout_s,
                              "lookup domain")
        else:
            dom = hv.call(lambda: conn.lookupByName(ident.name), timeout_s, "lookup domain")
        if dom is None:  # pragma: no cover - libvirt raises instead
            raise DomainNotFound(f"domain {ident.name} not found")
        return cls(hv, dom)

    @classmethod
    def lookup_state(cls, hv: Hypervisor, ident: DomainIdentity, timeout_s: float,
                     name_fallback: bool = False) -> tuple[Domain, DomainState, int]:
        """Look the domain up and read its state (and libvirt's reason code for it); each
        of the two calls bounded by ``timeout_s``. DomainNotFound when there is none."""
        dom = cls.lookup(hv, ident, timeout_s, name_fallback)
        state, reason = dom.state(timeout_s)
        return dom, state, reason

    @classmethod
    def running(cls, hv: Hypervisor, timeout_s: float) -> list[Domain]:
        """Every active domain on ``hv`` (running, paused, ...)."""
        conn = hv.virconnect
        flags = hv.flags("VIR_CONNECT_LIST_DOMAINS_ACTIVE")
        found = hv.call(lambda: conn.listAllDomains(flags), timeout_s, "list domains")
        return [cls(hv, d) for d in found or ()]

    @classmethod
    def create_transient(cls, hv: Hypervisor, xml: str, timeout_s: float) -> Domain:
        conn = hv.virconnect
        return cls(hv, hv.call(lambda: conn.createXML(xml, 0), timeout_s, "create domain"))

    # -- facts -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return str(self.virdomain.name())

    def uuid(self) -> str:
        return str(self.virdomain.UUIDString()).lower()

    def uuid_or_none(self) -> str | None:
        """The UUID, or None when libvirt-python cannot give it (no daemon call either way)."""
        try:
            return self.uuid()
        except Exception:  # noqa: BLE001 - callers fall back to the XML's uuid
            return None

    def id(self) -> int:
        """libvirt's id of the running domain (-1 when inactive); no daemon call."""
        return int(self.virdomain.ID())

    def owner(self, timeout_s: float) -> Owner | None:
        """The owner tag in the running domain's metadata; None when it has none."""
        flags = self.hv.flags("VIR_DOMAIN_AFFECT_LIVE")
        kind = self.hv.flags("VIR_DOMAIN_METADATA_ELEMENT")
        try:
            text = self.hv.call(lambda: self.virdomain.metadata(kind, OWNER_NS, flags),
                                timeout_s, "read metadata")
        except NoMetadata:
            return None
        return parse_owner_element(str(text))

    def set_owner(self, owner: Owner, timeout_s: float) -> None:
        """Write the owner tag into the running domain's metadata (it travels with a live
        migration; the persistent definition, if any, is not touched)."""
        flags = self.hv.flags("VIR_DOMAIN_AFFECT_LIVE")
        kind = self.hv.flags("VIR_DOMAIN_METADATA_ELEMENT")
        xml = owner_element(owner)
        self.hv.call(lambda: self.virdomain.setMetadata(kind, xml, OWNER_PREFIX, OWNER_NS,
                                                        flags), timeout_s, "write metadata")

    def state(self, timeout_s: float) -> tuple[DomainState, int]:
        code, reason = self.hv.call(lambda: self.virdomain.state(0), timeout_s,
                                    "get domain state")
        return DomainState.from_libvirt(int(code)), int(reason)

    def is_active(self, timeout_s: float) -> bool:
        return bool(self.hv.call(self.virdomain.isActive, timeout_s, "isActive"))

    def is_persistent(self, timeout_s: float) -> bool:
        return bool(self.hv.call(self.virdomain.isPersistent, timeout_s, "isPersistent"))

    def autostart(self, timeout_s: float) -> bool:
        return bool(self.hv.call(self.virdomain.autostart, timeout_s, "autostart"))

    def info(self, timeout_s: float) -> DomainInfo:
        raw = self.hv.call(self.virdomain.info, timeout_s, "domain info")
        return DomainInfo(max_memory_kib=int(raw[1]), memory_kib=int(raw[2]),
                          vcpus=int(raw[3]))

    def xml_desc(self, timeout_s: float, *, inactive: bool = False,
                 secure: bool = False) -> str:
        names = [n for n, on in (("VIR_DOMAIN_XML_INACTIVE", inactive),
                                 ("VIR_DOMAIN_XML_SECURE", secure)) if on]
        flags = self.hv.flags(*names)
        return str(self.hv.call(lambda: self.virdomain.XMLDesc(flags), timeout_s, "dump XML"))

    def agent_ping(self, timeout_s: float) -> None:
        """Ask the qemu guest agent to answer (guest-ping), waiting at most ``timeout_s``;
        GuestNotResponding or UnsupportedOperation (no agent channel) when it does not."""
        import libvirt_qemu

        wait = max(1, int(timeout_s))  # libvirt's own bound, in whole seconds
        self.hv.call(lambda: libvirt_qemu.qemuAgentCommand(
            self.virdomain, '{"execute":"guest-ping"}', wait, 0), timeout_s + 1.0,
            "guest agent ping")

    def job_stats(self, timeout_s: float) -> MigrationJob:
        stats = self.hv.call(lambda: self.virdomain.jobStats(0), timeout_s, "job statistics")
        return MigrationJob(dict(stats or {}))

    # -- operations ------------------------------------------------------------------------

    def request_shutdown(self, modes: tuple[str, ...]) -> PendingCall:
        """Ask the guest to shut down (``modes``: shutdown_mode names; none: the driver's
        default), without waiting: an ACPI request returns at once, one through the guest
        agent only when the guest is off (or after libvirt's own 60 s)."""
        flags = self.hv.flags(*(SHUTDOWN_FLAG_NAMES[m] for m in modes))
        how = "+".join(modes) or "default"
        return self.hv.start_call(lambda: self.virdomain.shutdownFlags(flags),
                                  f"shutdown ({how})")

    def destroy(self, timeout_s: float) -> None:
        self.hv.call(self.virdomain.destroy, timeout_s, "destroy")

    def resume(self, timeout_s: float) -> None:
        self.hv.call(self.virdomain.resume, timeout_s, "resume")

    def suspend(self, timeout_s: float) -> None:
        self.hv.call(self.virdomain.suspend, timeout_s, "suspend")

    def save_state(self, path: str, timeout_s: float) -> None:
        """Save the guest's RAM to ``path``; the domain stops."""
        self.hv.call(lambda: self.virdomain.save(path), timeout_s, "save state")

    def abort_job(self, timeout_s: float) -> None:
        self.hv.call(self.virdomain.abortJob, timeout_s, "abort job")

    def set_max_downtime(self, ms: int, timeout_s: float) -> None:
        self.hv.call(lambda: self.virdomain.migrateSetMaxDowntime(ms, 0), timeout_s,
                     "set max downtime")

    def start_postcopy(self, timeout_s: float) -> None:
        self.hv.call(lambda: self.virdomain.migrateStartPostCopy(0), timeout_s,
                     "start post-copy")

    def start_migration(self, dest: Hypervisor | None, dest_uri: str, flag_names: Sequence[str],
                        params: Mapping[str, str | int | list[str]]) -> PendingCall:
        """Start a live migration in the background: libvirt's call returns only when the
        migration ends, and the caller watches, steers or aborts the job meanwhile; its
        ``error`` is a fact. ``flag_names`` are VIR_MIGRATE_* and ``params``' keys
        VIR_MIGRATE_PARAM_* constant names. With ``dest`` the client drives the migration
        (managed, migrate3); without, the source daemon does (peer to peer, to ``dest_uri``)."""
        libvirt = self.hv.libvirt
        flags = self.hv.flags(*flag_names)
        typed = {str(getattr(libvirt, name)): value for name, value in params.items()}

        def migrate() -> None:
            try:
                if dest is None:
                    self.virdomain.migrateToURI3(dest_uri, typed, flags)
                else:
                    self.virdomain.migrate3(dest.virconnect, typed, flags)
            except libvirt.libvirtError as exc:
                raise classify_libvirt_error(exc, libvirt) from None

        return self.hv.start_call(migrate, "migrate")
