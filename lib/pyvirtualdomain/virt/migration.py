"""The blocking libvirt migration call, run in a worker thread (imported only by migrate_to)."""

from __future__ import annotations

import threading
from typing import Any


class MigrationRun:
    """The blocking libvirt migration call, run in a worker thread so the caller can watch the
    job, steer it and abort it before the deadline."""

    def __init__(self, fn: Any) -> None:
        self._fn = fn
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="libvirt:migrate", daemon=True)

    def _run(self) -> None:
        try:
            self._fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self.error = exc
        finally:
            self.done.set()

    def start(self) -> None:
        self._thread.start()

    def wait(self, timeout_s: float) -> bool:
        return self.done.wait(max(0.0, timeout_s))
