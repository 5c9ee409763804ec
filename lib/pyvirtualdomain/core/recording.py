"""Writing the state record for a domain found or started running (core/record.py is the
record itself)."""

from __future__ import annotations

from ..virt.domain import Domain
from ..virt.domxml import DomainIdentity
from . import record as staterec
from .context import Context
from .target import Target


def _uuid_of(dom: Domain) -> str | None:
    try:
        return dom.uuid()
    except Exception:  # noqa: BLE001 - the record is a convenience; the XML's uuid will do
        return None


def _rerecord_uuid(ctx: Context, dom: Domain, target: Target) -> None:
    """The recorded domain was found by name under another UUID (re-created from the same
    config, which names no uuid): record the one that runs."""
    record = staterec.load(ctx.record_path)
    uuid = _uuid_of(dom)
    if record is None or uuid is None:
        return
    ctx.log.warning(f"domain {target.ident.name} runs with uuid {uuid}, not the recorded "
                    f"{target.ident.uuid} (re-created outside the cluster?): recording it")
    try:
        staterec.save(ctx.record_path, record._replace(uuid=uuid))
    except OSError as exc:
        ctx.log.debug(f"cannot write state file {ctx.record_path}: {exc.strerror}")


def _save_record(ctx: Context, dom: Domain, ident: DomainIdentity, uri: str, path: str,
                 mtime_ns: int, size: int, config_uuid: str | None,
                 quiet: bool = False) -> None:
    uuid = _uuid_of(dom) or ident.uuid
    try:
        staterec.save(ctx.record_path,
                      staterec.new_record(ident, uuid, uri, path, mtime_ns, size, config_uuid))
    except OSError as exc:
        (ctx.log.debug if quiet else ctx.log.warning)(
            f"cannot write state file {ctx.record_path}: {exc.strerror}")
