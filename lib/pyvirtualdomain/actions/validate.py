"""validate-all: parameters, the config file and what this node needs to run the domain;
at OCF_CHECK_LEVEL >= 10 also the hazards libvirt knows of and a guest node's reachability."""

from __future__ import annotations

import os

from ..core.context import QUERY_BOUND_S, Context, require_valid_params
from ..core.definitions import persistent_hazard
from ..core.outcomes import fact_to_error, libvirt_python_missing
from ..core.start_config import read_start_config
from ..core.target import close, connect
from ..deadline import Deadline
from ..errors import AgentError, ConfigError, DomainNotFound, LibvirtFact, NotInstalled
from ..uri import is_local_uri
from ..virt.connection import Hypervisor
from ..virt.devices import GUEST_AGENT_CHANNEL, guest_devices
from ..virt.domain import RUNNING_STATES, Domain
from ..virt.domxml import DomainIdentity

AUTHKEY = "/etc/pacemaker/authkey"
REMOTE_PORT = 3121
# A guest node's pacemaker-remoted answers a TCP connect at once when it runs.
REMOTE_CONNECT_BOUND_S = 2.0


def validate_all(ctx: Context) -> None:
    require_valid_params(ctx)
    cfg, ident, uri, _ = read_start_config(ctx)
    if ident.emulator and is_local_uri(uri) and not os.access(ident.emulator, os.X_OK):
        raise NotInstalled(f"emulator {ident.emulator} named in {cfg.path} is not installed "
                           "(or not executable) on this node")
    import importlib.util

    # Found is enough: importing libvirt would triple validate-all's cost for nothing.
    if importlib.util.find_spec("libvirt") is None:
        raise libvirt_python_missing()
    p = ctx.params
    if p.snapshot:
        from ..features.snapshot import check_snapshot

        check_snapshot(ctx)
    if p.backingfile or p.stateless or p.copyindirs.strip():
        from ..features.backing import check_backing

        check_backing(ctx)
    if p.monitor_scripts.strip():
        from ..features.monitor_scripts import check_monitor_scripts

        missing = check_monitor_scripts(p.monitor_scripts, ctx.environ.get("PATH"))
        if missing:
            raise NotInstalled("; ".join(missing))
    _check_guest_health(ctx, cfg.data, cfg.path, ident.virt_type)
    if ctx.env.check_level >= 10:
        deadline = ctx.deadline("validate-all")
        running = _check_hypervisor(ctx, ident, uri, deadline)
        if ctx.env.remote_node is not None:
            _check_guest_node(ctx, ctx.env.remote_node, running, deadline)


def _check_guest_health(ctx: Context, data: bytes, path: str, virt_type: str) -> None:
    """What guest health needs from the domain XML (qemu domains): a guest agent channel for
    the check at OCF_CHECK_LEVEL=20, a watchdog whose firing leaves a trace, and at level 10
    a lock manager when the disks are on shared storage."""
    if not ctx.profile.guest_devices:
        return
    devices = guest_devices(data, path)
    if ctx.env.check_level >= 20 and not devices.guest_agent:
        raise ConfigError(f"config {path} has no guest agent channel ({GUEST_AGENT_CHANNEL}): "
                          "the guest agent check of OCF_CHECK_LEVEL=20 cannot work")
    if devices.watchdog_action == "none":
        ctx.log.warning("the domain's watchdog has action 'none': when it fires nothing is "
                        "left that a monitor can see; use action 'pause' (or 'dump'), or the "
                        "guest agent check (OCF_CHECK_LEVEL=20)")
    if ctx.env.check_level >= 10:
        from ..features.disk_locking import check_disk_locking

        check_disk_locking(ctx, devices.disks)
        _check_shutdown_modes(ctx, devices.guest_agent, virt_type)


# Shutdown modes libvirt's qemu driver carries out (the others it refuses).
QEMU_SHUTDOWN_MODES = ("acpi", "agent")


def _check_shutdown_modes(ctx: Context, guest_agent: bool, virt_type: str) -> None:
    """OCF_CHECK_LEVEL >= 10: a shutdown_mode that cannot work with this XML (the stop then
    falls back to the hypervisor's default method)."""
    for mode in ctx.params.shutdown_mode:
        why = None
        if mode == "agent" and not guest_agent:
            why = f"the XML has no guest agent channel ({GUEST_AGENT_CHANNEL})"
        elif virt_type in ("qemu", "kvm") and mode not in QEMU_SHUTDOWN_MODES:
            why = "libvirt's qemu driver does not implement it"
        if why:
            ctx.log.warning(f"shutdown_mode {mode} cannot work: {why}; a stop falls back to "
                            "the next mode, then the hypervisor's default method")


def _check_hypervisor(ctx: Context, ident: DomainIdentity, uri: str,
                      deadline: Deadline) -> bool:
    """OCF_CHECK_LEVEL >= 10: ask the hypervisor about hazards to fencing (a persistent
    definition, autostart). Whether the domain runs there."""
    hv: Hypervisor | None = None
    try:
        hv = connect(ctx, uri, deadline, retry_for_s=0.0)
        if ctx.params.migration_settings:
            from ..migration_options import check_hypervisor, parse_migrate_options

            problems = check_hypervisor(parse_migrate_options(ctx.params.migrate_options),
                                        hv.hypervisor_version(deadline.bound(QUERY_BOUND_S)))
            if problems:
                raise ConfigError("; ".join(problems))
        try:
            dom, state, _ = Domain.lookup_state(hv, ident, deadline.bound(QUERY_BOUND_S))
        except DomainNotFound:
            return False
        persistent_hazard(ctx, dom, deadline)
        return state in RUNNING_STATES
    except LibvirtFact as f:
        raise fact_to_error(f, uri, "cannot check the domain") from None
    except ImportError:
        raise libvirt_python_missing() from None
    finally:
        close(hv)


def _check_guest_node(ctx: Context, guest_node: str, running: bool,
                      deadline: Deadline) -> None:
    """Whether Pacemaker Remote can reach the guest: the shared key here, and the guest's
    remote-addr:remote-port accepting TCP while the domain runs."""
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
        return
    import socket

    try:
        with socket.create_connection((addr, port),
                                      timeout=deadline.bound(REMOTE_CONNECT_BOUND_S)):
            pass
    except OSError as exc:
        raise AgentError(f"guest node {guest_node}: pacemaker-remoted at {addr}:{port} does "
                         f"not accept TCP connections: {exc.strerror or exc}") from None
    ctx.log.info(f"guest node {guest_node}: {addr}:{port} accepts connections")
