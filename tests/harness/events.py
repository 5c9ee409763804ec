"""libvirt domain events as a test sees them: lifecycle, watchdog, I/O error, agent
connected/disconnected, each with the monotonic time it arrived.

libvirt-python delivers events only through an event loop the process registers before it
opens the connection; the harness registers libvirt's default implementation once and runs
it in a daemon thread (it never blocks exit)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Callable

from .common import DEFAULT_URI, bounded, wait_until
from .domains import import_libvirt

_LOOP_LOCK = threading.Lock()
_LOOP_STARTED = False


def ensure_event_loop() -> None:
    """Register libvirt's default event loop and run it in a daemon thread (once)."""
    global _LOOP_STARTED
    with _LOOP_LOCK:
        if _LOOP_STARTED:
            return
        libvirt = import_libvirt()
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-event-loop", daemon=True).start()
        _LOOP_STARTED = True


@dataclass(frozen=True)
class DomainEvent:
    at: float  # time.monotonic() when it arrived
    domain: str
    kind: str  # "lifecycle", "watchdog", "io-error", "agent"
    # lifecycle: (event, detail) codes; watchdog: (action,); io-error: (path, alias,
    # action, reason); agent: (state, reason)
    detail: tuple[Any, ...]


class DomainEvents:
    """Records the events of every domain (or of ``name`` only) from ``open()`` (or ``with``)
    to ``close()``."""

    def __init__(self, uri: str = DEFAULT_URI, name: str | None = None) -> None:
        self.uri = uri
        self.name = name
        self.events: list[DomainEvent] = []
        self._lock = threading.Lock()
        self._conn: Any = None
        self._callbacks: list[int] = []

    def _add(self, dom: Any, kind: str, *detail: Any) -> None:
        name = str(dom.name())
        if self.name is not None and name != self.name:
            return
        with self._lock:
            self.events.append(DomainEvent(time.monotonic(), name, kind, tuple(detail)))

    def open(self) -> DomainEvents:
        ensure_event_loop()
        libvirt = import_libvirt()
        self._conn = bounded(lambda: libvirt.open(self.uri), 15.0, f"connect {self.uri}")
        handlers: list[tuple[int, Callable[..., None]]] = [
            (libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
             lambda _c, dom, event, detail, _o: self._add(dom, "lifecycle", event, detail)),
            (libvirt.VIR_DOMAIN_EVENT_ID_WATCHDOG,
             lambda _c, dom, action, _o: self._add(dom, "watchdog", action)),
            (libvirt.VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON,
             lambda _c, dom, path, alias, action, reason, _o:
             self._add(dom, "io-error", path, alias, action, reason)),
            (libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE,
             lambda _c, dom, state, reason, _o: self._add(dom, "agent", state, reason)),
        ]
        for event_id, handler in handlers:
            self._callbacks.append(self._conn.domainEventRegisterAny(None, event_id, handler,
                                                                     None))
        return self

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return

        def close_conn() -> None:
            for cb in self._callbacks:
                try:
                    conn.domainEventDeregisterAny(cb)
                except Exception:  # noqa: BLE001 - the connection may be broken already
                    pass
            conn.close()

        self._callbacks = []
        try:
            bounded(close_conn, 10.0, "close event connection")
        except Exception:  # noqa: BLE001 - a dead libvirtd: nothing left to release
            pass

    def of_kind(self, kind: str) -> list[DomainEvent]:
        with self._lock:
            return [e for e in self.events if e.kind == kind]

    def wait_for(self, kind: str, timeout_s: float,
                 match: Callable[[DomainEvent], bool] | None = None) -> DomainEvent | None:
        """The first recorded event of ``kind`` (and ``match``), waiting up to ``timeout_s``."""
        found: list[DomainEvent] = []

        def seen() -> bool:
            for e in self.of_kind(kind):
                if match is None or match(e):
                    found.append(e)
                    return True
            return False

        wait_until(seen, timeout_s, 0.05)
        return found[0] if found else None

    def __enter__(self) -> DomainEvents:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
