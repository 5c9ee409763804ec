"""Live migration settings: destination URIs as VirtualDomain builds them and migrate_options
parsed into libvirt flag and parameter names (no shell, no virsh). Pure Python: validate-all
uses it without libvirt; the names become libvirt constants only in virt/domain.py."""

from __future__ import annotations

import re
from typing import Any, Mapping

from .tuples import NamedTuple

# virsh migrate options that are plain flags -> libvirt VIR_MIGRATE_* flag name (None: accepted
# and meaningless for an agent, such as --verbose).
FLAG_OPTIONS: dict[str, str | None] = {
    "--live": "VIR_MIGRATE_LIVE",
    "--offline": "VIR_MIGRATE_OFFLINE",
    "--p2p": "VIR_MIGRATE_PEER2PEER",
    "--tunnelled": "VIR_MIGRATE_TUNNELLED",
    "--persistent": "VIR_MIGRATE_PERSIST_DEST",
    "--suspend": "VIR_MIGRATE_PAUSED",
    "--copy-storage-all": "VIR_MIGRATE_NON_SHARED_DISK",
    "--copy-storage-inc": "VIR_MIGRATE_NON_SHARED_INC",
    "--copy-storage-synchronous-writes": "VIR_MIGRATE_NON_SHARED_SYNCHRONOUS_WRITES",
    "--change-protection": "VIR_MIGRATE_CHANGE_PROTECTION",
    "--unsafe": "VIR_MIGRATE_UNSAFE",
    "--compressed": "VIR_MIGRATE_COMPRESSED",
    "--abort-on-error": "VIR_MIGRATE_ABORT_ON_ERROR",
    "--auto-converge": "VIR_MIGRATE_AUTO_CONVERGE",
    "--rdma-pin-all": "VIR_MIGRATE_RDMA_PIN_ALL",
    "--postcopy": "VIR_MIGRATE_POSTCOPY",
    "--tls": "VIR_MIGRATE_TLS",
    "--parallel": "VIR_MIGRATE_PARALLEL",
    "--zerocopy": "VIR_MIGRATE_ZEROCOPY",
    "--verbose": None,
}


# virsh migrate options that take a value -> (VIR_MIGRATE_PARAM_* name, type).
VALUE_OPTIONS: dict[str, tuple[str, type]] = {
    "--migrateuri": ("VIR_MIGRATE_PARAM_URI", str),
    "--bandwidth": ("VIR_MIGRATE_PARAM_BANDWIDTH", int),
    "--postcopy-bandwidth": ("VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY", int),
    "--listen-address": ("VIR_MIGRATE_PARAM_LISTEN_ADDRESS", str),
    "--parallel-connections": ("VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS", int),
    "--disks-port": ("VIR_MIGRATE_PARAM_DISKS_PORT", int),
    "--disks-uri": ("VIR_MIGRATE_PARAM_DISKS_URI", str),
    "--graphicsuri": ("VIR_MIGRATE_PARAM_GRAPHICS_URI", str),
    "--tls-destination": ("VIR_MIGRATE_PARAM_TLS_DESTINATION", str),
    "--comp-methods": ("VIR_MIGRATE_PARAM_COMPRESSION", str),
}


# virsh-only behaviour an agent cannot reproduce faithfully: say what to use instead.
REFUSED_OPTIONS = {
    "--timeout": "use migration_deadline_action (the op timeout bounds the migration)",
    "--timeout-suspend": "use migration_deadline_action",
    "--timeout-postcopy": "use migration_deadline_action=postcopy",
    "--postcopy-after-precopy": "use migration_deadline_action=postcopy",
    "--xml": "not supported by this agent",
    "--persistent-xml": "not supported by this agent",
    "--desturi": "use remoteuri",
    "--domain": "the domain comes from the config",
    # The agent finds the guest by its name and uuid on every host: under another name it
    # would run where migrate_from, monitor and stop never look.
    "--dname": "the guest would run on the target under another name, which the cluster "
               "never looks for",
    # The cluster's config file is the definition; a persistent one on the source is the
    # user's, and is never removed by the agent.
    "--undefinesource": "the agent never removes a persistent definition of the domain",
}
# Leaves a persistent definition on the target, which a host can start on its own.
PERSISTENT_FLAG = "VIR_MIGRATE_PERSIST_DEST"


DEADLINE_ACTIONS = ("abort", "downtime", "postcopy")


USER_RE = re.compile(r"^[a-z_][-a-z0-9_]*$")


class MigrateOptionError(ValueError):
    pass


class MigrateOptions(NamedTuple):
    flag_names: tuple[str, ...] = ()
    param_values: Mapping[str, str | int] = {}

    @property
    def p2p(self) -> bool:
        return "VIR_MIGRATE_PEER2PEER" in self.flag_names

    @property
    def migrateuri(self) -> str | None:
        value = self.param_values.get("VIR_MIGRATE_PARAM_URI")
        return str(value) if value is not None else None


def parse_migrate_options(text: str) -> MigrateOptions:
    """Parse virsh-style options (``--compressed --migrateuri=tcp://%n``) without a shell."""
    import shlex  # only the actions that migrate or validate parse options
    try:
        words = shlex.split(text or "")
    except ValueError as exc:
        raise MigrateOptionError(f"migrate_options={text!r}: {exc}") from None
    flags: list[str] = []
    values: dict[str, str | int] = {}
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        name, eq, inline = word.partition("=")
        if name in REFUSED_OPTIONS:
            raise MigrateOptionError(f"migrate_options: {name} is not accepted: "
                                     f"{REFUSED_OPTIONS[name]}")
        if name in FLAG_OPTIONS:
            if eq:
                raise MigrateOptionError(f"migrate_options: {name} takes no value")
            flag = FLAG_OPTIONS[name]
            if flag and flag not in flags:
                flags.append(flag)
            continue
        if name in VALUE_OPTIONS:
            if eq:
                raw = inline
            elif i < len(words):
                raw = words[i]
                i += 1
            else:
                raise MigrateOptionError(f"migrate_options: {name} needs a value")
            param, kind = VALUE_OPTIONS[name]
            if kind is int:
                try:
                    values[param] = int(raw)
                except ValueError:
                    raise MigrateOptionError(
                        f"migrate_options: {name} needs a whole number, not {raw!r}") from None
            else:
                values[param] = raw
            continue
        raise MigrateOptionError(f"migrate_options: unknown option {word!r}")
    if "VIR_MIGRATE_OFFLINE" in flags and "VIR_MIGRATE_LIVE" in flags:
        raise MigrateOptionError("migrate_options: --offline and --live exclude each other")
    return MigrateOptions(tuple(flags), values)


def _with_suffix(node: str, suffix: str) -> str:
    """Insert the migration network suffix after the host part of a (maybe qualified) name."""
    if not suffix:
        return node
    head, dot, rest = node.partition(".")
    return f"{head}{suffix}{dot}{rest}"


def destination_uri(hypervisor_uri: str, target_node: str, *, remoteuri: str = "",
                    transport: str = "", user: str = "", network_suffix: str = "") -> str:
    """The libvirt URI of the target's hypervisor, as VirtualDomain documents it:
    ``remoteuri`` with %n replaced, else the local URI with +transport, user@ and the
    target node (with the migration network suffix) as host; port and path kept."""
    if remoteuri:
        return remoteuri.replace("%n", target_node)
    from urllib.parse import urlsplit

    parts = urlsplit(hypervisor_uri)
    driver = parts.scheme.split("+", 1)[0]
    scheme = f"{driver}+{transport}" if transport else driver
    host = _with_suffix(target_node, network_suffix)
    if user:
        host = f"{user}@{host}"
    port = f":{parts.port}" if parts.port else ""
    path = parts.path or "/system"
    return f"{scheme}://{host}{port}{path}"


def migration_uri(hypervisor_uri: str, target_node: str, options: MigrateOptions, *,
                  migrateuri: str = "", network_suffix: str = "",
                  migrateport: int | None = None) -> str | None:
    """Where the migration data goes; None lets libvirt choose (the target's
    migration_host). Precedence as in VirtualDomain: migrateuri, then --migrateuri in
    migrate_options, then one built from the migration network suffix."""
    if migrateuri:
        return migrateuri.replace("%n", target_node)
    if options.migrateuri:
        return options.migrateuri.replace("%n", target_node)
    if network_suffix:
        host = _with_suffix(target_node, network_suffix)
        from urllib.parse import urlsplit

        driver = urlsplit(hypervisor_uri).scheme.split("+", 1)[0]
        if driver == "xen":
            return host
        return f"tcp://{host}{f':{migrateport}' if migrateport else ''}"
    return None


def check_parameters(params: Any, guest_node: str | None = None) -> list[str]:
    """Problems with the migration parameters, for validate-all, start and migrate_to (pure
    Python). ``guest_node``: the resource's meta remote-node."""
    problems: list[str] = []
    try:
        options = parse_migrate_options(params.migrate_options)
    except MigrateOptionError as exc:
        problems.append(str(exc))
    else:
        if guest_node and PERSISTENT_FLAG in options.flag_names:
            problems.append(
                f"migrate_options: --persistent is not accepted for guest node {guest_node}: "
                "it leaves a persistent definition on the target, and the agent then refuses "
                "every start there (a host could start the guest outside the cluster)")
    if params.migration_user and not USER_RE.match(params.migration_user):
        problems.append(f"migration_user={params.migration_user!r} is not a user name")
    if params.migration_speed < 0:
        problems.append("migration_speed must be 0 (unlimited) or a positive MiB/s")
    if params.migration_downtime < 0:
        problems.append("migration_downtime must be 0 (libvirt's default) or positive ms")
    if params.migrateport is not None and not 0 < params.migrateport < 65536:
        problems.append(f"migrateport={params.migrateport} is not a TCP port")
    if params.migration_deadline_action not in DEADLINE_ACTIONS:
        problems.append(f"migration_deadline_action={params.migration_deadline_action!r}: use "
                        f"one of {', '.join(DEADLINE_ACTIONS)}")
    if params.migration_transport and not re.fullmatch(r"[a-z0-9]+",
                                                       params.migration_transport):
        problems.append(f"migration_transport={params.migration_transport!r} is not a libvirt "
                        "transport (e.g. ssh, tcp, tls)")
    return problems


def migration_warnings(params: Any) -> list[str]:
    """What is allowed but unwise in the migration parameters."""
    try:
        options = parse_migrate_options(params.migrate_options)
    except MigrateOptionError:
        return []
    if PERSISTENT_FLAG in options.flag_names:
        return ["migrate_options --persistent leaves a persistent definition of the domain on "
                "the target: the cluster's config file is then not the only definition, and "
                "a host may start the domain on its own"]
    return []
