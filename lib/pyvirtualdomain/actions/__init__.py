"""One module per OCF action. Nothing is imported here: cli.py loads only the module of the
action it runs (a monitor never imports start, stop or the migration code)."""

from __future__ import annotations

from typing import Callable

from ..core.context import Context


def load(action: str) -> Callable[[Context], None] | None:
    """The function implementing ``action``, or None when no agent implements it."""
    if action in ("monitor", "status"):
        from .monitor import monitor

        return monitor
    if action == "start":
        from .start import start

        return start
    if action == "stop":
        from .stop import stop

        return stop
    if action == "validate-all":
        from .validate import validate_all

        return validate_all
    if action == "migrate_to":
        from .migrate import migrate_to

        return migrate_to
    if action == "migrate_from":
        from .migrate import migrate_from

        return migrate_from
    return None



