"""The agent's actions run in-process as cli.py runs them: each returns the Outcome (exit
code and reason) that the action's return or raised AgentError means."""

from __future__ import annotations

from typing import Callable, NamedTuple

from pyvirtualdomain.actions import load
from pyvirtualdomain.core.context import Context
from pyvirtualdomain.errors import AgentError
from pyvirtualdomain.ocf import OCFExit


class Outcome(NamedTuple):
    rc: OCFExit
    reason: str = ""


def run(action: str, ctx: Context) -> Outcome:
    fn = load(action)
    assert fn is not None, action
    try:
        fn(ctx)
    except AgentError as exc:
        return Outcome(exc.rc, exc.reason)
    return Outcome(OCFExit.SUCCESS)


def _named(action: str) -> Callable[[Context], Outcome]:
    return lambda ctx: run(action, ctx)


start = _named("start")
stop = _named("stop")
monitor = _named("monitor")
validate_all = _named("validate-all")
migrate_to = _named("migrate_to")
migrate_from = _named("migrate_from")
