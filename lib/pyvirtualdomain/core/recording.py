"""Writing the state record for a domain found or started running (core/record.py is the
record itself). The record is a convenience: failing to write it never fails the action."""

from __future__ import annotations

from ..virt.domain import Domain
from ..virt.domxml import DomainIdentity
from . import record
from .context import Context
from .record import ConfigStamp, DomainRecord


def rerecord_uuid(ctx: Context, rec: DomainRecord, uuid: str) -> None:
    """The recorded domain ``rec`` was found by name running under another ``uuid``
    (re-created from the same config, which names no uuid): record the one that runs."""
    ctx.log.warning(f"domain {rec.name} runs with uuid {uuid}, not the recorded "
                    f"{rec.uuid} (re-created outside the cluster?): recording it")
    try:
        record.save(ctx.record_path, rec._replace(uuid=uuid))
    except OSError as exc:
        ctx.log.debug(f"cannot write state file {ctx.record_path}: {exc.strerror}")


def record_running(ctx: Context, dom: Domain, ident: DomainIdentity, uri: str,
                   stamp: ConfigStamp, config_uuid: str | None, quiet: bool = False,
                   watchdog: str | None = None) -> None:
    """Record the domain ``dom`` (started from, or found matching, the config ``stamp``)."""
    uuid = dom.uuid_or_none() or ident.uuid
    try:
        record.save(ctx.record_path, record.new_record(ident, uuid, uri, stamp, config_uuid,
                                                       watchdog))
    except OSError as exc:
        (ctx.log.debug if quiet else ctx.log.warning)(
            f"cannot write state file {ctx.record_path}: {exc.strerror}")
