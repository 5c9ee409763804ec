"""Writing the state record for a domain found or started running (core/record.py is the
record itself). The record is a convenience: failing to write it never fails the action (the
domain stays findable by its owner tag, core/ownership.py)."""

from __future__ import annotations

from ..deadline import Deadline
from ..virt.domain import Domain
from ..virt.domxml import DomainIdentity
from . import record
from .context import QUERY_BOUND_S, Context
from .record import ConfigStamp, DomainRecord


class _Unknown:
    """What a recorder does not know (the watchdog's action): kept from an earlier record of
    the same running domain, else read from the running domain itself."""


UNKNOWN = _Unknown()


def _save(ctx: Context, rec: DomainRecord, quiet: bool) -> None:
    try:
        record.save(ctx.record_path, rec)
    except OSError as exc:
        (ctx.log.debug if quiet else ctx.log.warning)(
            f"cannot write state file {ctx.record_path}: {exc.strerror}; the domain stays "
            "findable by its owner tag")


def rerecord_uuid(ctx: Context, rec: DomainRecord, uuid: str) -> None:
    """The recorded domain ``rec`` was found by name running under another ``uuid``
    (re-created from the same config, which names no uuid): record the one that runs."""
    ctx.log.warning(f"domain {rec.name} runs with uuid {uuid}, not the recorded "
                    f"{rec.uuid} (re-created outside the cluster?): recording it")
    _save(ctx, rec._replace(uuid=uuid), quiet=True)


def _live_watchdog(ctx: Context, dom: Domain, deadline: Deadline) -> str | None:
    """The watchdog action of the running domain (None: none, or it cannot be read)."""
    if not ctx.profile.guest_devices:
        return None
    from ..errors import AgentError, LibvirtFact
    from ..virt.devices import guest_devices

    try:
        xml = dom.xml_desc(deadline.bound(QUERY_BOUND_S))
        return guest_devices(xml.encode(), f"the live definition of {dom.name}").watchdog_action
    except (LibvirtFact, AgentError) as exc:
        ctx.log.debug(f"watchdog of {dom.name} not known: "
                      f"{exc.message if isinstance(exc, LibvirtFact) else exc.reason}")
        return None


def record_running(ctx: Context, dom: Domain, ident: DomainIdentity, uri: str,
                   stamp: ConfigStamp, config_uuid: str | None, deadline: Deadline,
                   quiet: bool = False, watchdog: str | None | _Unknown = UNKNOWN,
                   tagged: bool = False) -> None:
    """Record the domain ``dom`` (started from, or found matching, the config ``stamp``).

    Re-recording the same running domain (same name and uuid: a monitor after a config edit,
    a start that finds it running) keeps what was learnt about it: when it was started (the
    guest agent's miss count and the watchdog dump check count from then) and its watchdog.
    A domain recorded here for the first time is tagged with its owner unless ``tagged``
    (start wrote the tag into the XML it created the domain from)."""
    uuid = dom.uuid_or_none() or ident.uuid
    previous = record.load(ctx.record_path)
    same = previous is not None and previous.name == ident.name and previous.uuid == uuid
    if watchdog is UNKNOWN:
        watchdog = previous.watchdog if same and previous is not None \
            else _live_watchdog(ctx, dom, deadline)
    assert not isinstance(watchdog, _Unknown)
    rec = record.new_record(ident, uuid, uri, stamp, config_uuid, watchdog)
    if same and previous is not None:
        rec = rec._replace(started_at=previous.started_at)
    elif not tagged:
        from .ownership import tag_domain

        tag_domain(ctx, dom, deadline)
    _save(ctx, rec, quiet)


def forget_record(ctx: Context) -> None:
    """The domain no longer runs here (stopped, or migrated away): remove its record. A
    record that cannot be removed (HA_RSCTMP read-only) fails nothing: a stale one only makes
    the next actions look for a domain that is gone."""
    for trouble in record.remove(ctx.record_path):
        ctx.log.warning(f"{trouble} (a stale state record only makes the next actions look "
                        "for a domain that is gone)")
