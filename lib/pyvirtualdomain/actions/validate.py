"""validate-all: parameters, the config file and what this node needs to run the domain;
at OCF_CHECK_LEVEL >= 10 also the hazards libvirt knows of and a guest node's reachability."""

from __future__ import annotations

from ..core.context import QUERY_BOUND_S, RUNNING_STATES, Context, Result, _require_valid_params
from ..core.definitions import _persistent_hazard
from ..core.target import _check_uri, _check_virt_type, _close, _connect
from ..errors import AgentError, ConfigError, DomainNotFound, LibvirtFact, NotInstalled
from ..ocf import OCFExit
from ..uri import is_local_uri
from ..virt.connection import Hypervisor
from ..virt.domain import Domain
from ..virt.domxml import DomainIdentity, load_domain


def validate_all(ctx: Context) -> Result:
    _require_valid_params(ctx)
    cfg, ident = load_domain(ctx.params.config)
    _check_virt_type(ctx, ident, cfg.path)
    uri = ctx.uri_for(ident)
    _check_uri(ctx, uri)
    try:
        cfg.data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config {cfg.path} is not UTF-8 text") from None
    if ident.emulator and is_local_uri(uri):
        import os

        if not os.access(ident.emulator, os.X_OK):
            raise NotInstalled(f"emulator {ident.emulator} named in {cfg.path} is not "
                               "installed (or not executable) on this node")
    import importlib.util

    # Found is enough: importing libvirt would triple validate-all's cost for nothing.
    if importlib.util.find_spec("libvirt") is None:
        raise NotInstalled("libvirt-python is not installed for this interpreter")
    if ctx.params.snapshot or ctx.params.monitor_scripts or ctx.params.backingfile:
        from ..features.backing import check_backing
        from ..features.monitor_scripts import check_monitor_scripts
        from ..features.snapshot import check_snapshot

        check_snapshot(ctx)
        check_backing(ctx)
        missing = check_monitor_scripts(ctx.params.monitor_scripts)
        if missing:
            raise NotInstalled("; ".join(missing))
    if ctx.env.check_level >= 10:
        return _validate_deep(ctx, ident, uri)
    return Result(OCFExit.SUCCESS)


AUTHKEY = "/etc/pacemaker/authkey"


REMOTE_PORT = 3121


def _validate_deep(ctx: Context, ident: DomainIdentity, uri: str) -> Result:
    """OCF_CHECK_LEVEL >= 10: ask the hypervisor about hazards to fencing (a persistent
    definition, autostart) and, for a guest node, whether Pacemaker Remote can be reached."""
    deadline = ctx.deadline("validate-all")
    guest_node = ctx.env.remote_node
    hv: Hypervisor | None = None
    running = False
    try:
        hv = _connect(ctx, uri, deadline, retry_for_s=0.0)
        try:
            dom = Domain.lookup(hv, ident, deadline.bound(QUERY_BOUND_S))
        except DomainNotFound:
            dom = None
        if dom is not None:
            state, _ = dom.state(deadline.bound(QUERY_BOUND_S))
            running = state in RUNNING_STATES
            _persistent_hazard(ctx, dom, deadline)
    except AgentError:
        raise
    except (LibvirtFact, ImportError) as f:
        why = f.message if isinstance(f, LibvirtFact) else str(f)
        raise AgentError(f"cannot check the domain on {uri}: {why}") from None
    finally:
        _close(hv)
    if guest_node is None:
        return Result(OCFExit.SUCCESS)
    import os

    if not os.path.isfile(AUTHKEY):
        raise NotInstalled(f"guest node {guest_node}: {AUTHKEY} does not exist on this node "
                           "(Pacemaker Remote needs the same key on hosts and guests)")
    addr = ctx.env.meta.get("remote_addr", "").strip() or guest_node
    try:
        port = int(ctx.env.meta.get("remote_port", "").strip() or REMOTE_PORT)
    except ValueError:
        raise ConfigError(f"meta remote-port={ctx.env.meta.get('remote_port')!r} is not a "
                          "port number") from None
    if not running:
        ctx.log.info(f"guest node {guest_node}: domain not running, {addr}:{port} not checked")
        return Result(OCFExit.SUCCESS)
    import socket

    try:
        with socket.create_connection((addr, port), timeout=deadline.bound(2.0)):
            pass
    except OSError as exc:
        return Result(OCFExit.ERR_GENERIC, f"guest node {guest_node}: pacemaker-remoted at "
                      f"{addr}:{port} does not accept TCP connections: {exc.strerror or exc}")
    ctx.log.info(f"guest node {guest_node}: {addr}:{port} accepts connections")
    return Result(OCFExit.SUCCESS)
