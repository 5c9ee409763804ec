"""MigrationRun: the blocking migration call in a worker thread."""

from __future__ import annotations

import threading

from pyvirtualdomain.errors import OperationFailed
from pyvirtualdomain.virt.migration import MigrationRun


def test_the_call_runs_in_the_background_and_its_error_is_kept():
    release = threading.Event()

    def call() -> None:
        release.wait(5)
        raise OperationFailed("migration job: unexpectedly failed")

    run = MigrationRun(call)
    run.start()
    assert not run.wait(0.05)  # still running: the caller can watch it
    release.set()
    assert run.wait(5)
    assert isinstance(run.error, OperationFailed)


def test_success_leaves_no_error():
    run = MigrationRun(lambda: None)
    run.start()
    assert run.wait(5) and run.error is None
