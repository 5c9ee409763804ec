"""Live migration settings: destination URIs as VirtualDomain builds them and migrate_options
parsed into libvirt flag and parameter names (no shell, no virsh). Pure Python: validate-all
uses it without libvirt; the names become libvirt constants only in virt/domain.py.

Every value here matters to migration only. A problem with one never stops a guest from
starting or being monitored (VirtualDomain reads them only in migrate_to): validate-all
refuses it, start warns, migrate_to fails with 1 (Pacemaker then stops and starts the guest
instead). docs/parity.md lists every option of ``virsh migrate`` with what the agent does."""

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
    "--undefinesource": "VIR_MIGRATE_UNDEFINE_SOURCE",
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
    "-v": None,
}


# virsh migrate options that take a value -> (VIR_MIGRATE_PARAM_* name, type). A list type
# is virsh's comma-separated list (libvirt takes one parameter per item).
VALUE_OPTIONS: dict[str, tuple[str, type]] = {
    "--migrateuri": ("VIR_MIGRATE_PARAM_URI", str),
    "--bandwidth": ("VIR_MIGRATE_PARAM_BANDWIDTH", int),
    "--postcopy-bandwidth": ("VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY", int),
    "--listen-address": ("VIR_MIGRATE_PARAM_LISTEN_ADDRESS", str),
    "--parallel-connections": ("VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS", int),
    "--disks-port": ("VIR_MIGRATE_PARAM_DISKS_PORT", int),
    "--disks-uri": ("VIR_MIGRATE_PARAM_DISKS_URI", str),
    "--migrate-disks": ("VIR_MIGRATE_PARAM_MIGRATE_DISKS", list),
    "--graphicsuri": ("VIR_MIGRATE_PARAM_GRAPHICS_URI", str),
    "--tls-destination": ("VIR_MIGRATE_PARAM_TLS_DESTINATION", str),
    "--comp-methods": ("VIR_MIGRATE_PARAM_COMPRESSION", list),
    "--comp-mt-level": ("VIR_MIGRATE_PARAM_COMPRESSION_MT_LEVEL", int),
    "--comp-mt-threads": ("VIR_MIGRATE_PARAM_COMPRESSION_MT_THREADS", int),
    "--comp-mt-dthreads": ("VIR_MIGRATE_PARAM_COMPRESSION_MT_DTHREADS", int),
    "--comp-xbzrle-cache": ("VIR_MIGRATE_PARAM_COMPRESSION_XBZRLE_CACHE", int),
    "--comp-zlib-level": ("VIR_MIGRATE_PARAM_COMPRESSION_ZLIB_LEVEL", int),
    "--comp-zstd-level": ("VIR_MIGRATE_PARAM_COMPRESSION_ZSTD_LEVEL", int),
    "--auto-converge-initial": ("VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL", int),
    "--auto-converge-increment": ("VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT", int),
}

# virsh options the agent carries out itself (not a libvirt flag or parameter).
TIMEOUT_OPTION = "--timeout"  # seconds; then --timeout-suspend (default) or -postcopy
TIMEOUT_ACTIONS = {"--timeout-suspend": "suspend", "--timeout-postcopy": "postcopy"}
POSTCOPY_AFTER_PRECOPY = "--postcopy-after-precopy"
XML_FILE_OPTIONS = {"--xml": "VIR_MIGRATE_PARAM_DEST_XML",
                    "--persistent-xml": "VIR_MIGRATE_PARAM_PERSIST_XML"}


# virsh-only behaviour an agent cannot reproduce faithfully: say what to use instead.
REFUSED_OPTIONS = {
    "--desturi": "use remoteuri",
    "--domain": "the domain comes from the config",
    # The agent finds the guest by its name and uuid on every host: under another name it
    # would run where migrate_from, monitor and stop never look.
    "--dname": "the guest would run on the target under another name, which the cluster "
               "never looks for",
    "--direct": "the qemu driver has no direct migration (use --p2p)",
    "--postcopy-resume": "only for recovering a failed migration by hand",
}
# Leave a persistent definition on the target (which a host can start on its own) / remove the
# source's: refused for a guest node, whose fencing must stop it for good.
PERSISTENT_FLAG = "VIR_MIGRATE_PERSIST_DEST"
UNDEFINE_FLAG = "VIR_MIGRATE_UNDEFINE_SOURCE"
# qemu 9.1 removed its multi-thread compression, libvirt's "mt" method.
MT_COMPRESSION_REMOVED_IN = 9_001_000


DEADLINE_ACTIONS = ("abort", "downtime", "postcopy")
# VirtualDomain puts migration_user into the target URI only when it matches this; any other
# value is ignored there. The same rule keeps a switched resource migrating as it did.
VD_USER_RE = re.compile(r"^[a-z][-a-z0-9]*$")
# Transports of libvirt's remote driver (lower case: migration_transport is lowered).
TRANSPORTS = ("tls", "tcp", "unix", "ssh", "libssh", "libssh2", "ext")


class MigrateOptionError(ValueError):
    pass


class MigrateOptions(NamedTuple):
    flag_names: tuple[str, ...] = ()
    param_values: Mapping[str, str | int | list[str]] = {}
    # --timeout N: after N seconds, apply timeout_action ("suspend" or "postcopy").
    timeout_s: int | None = None
    timeout_action: str = "suspend"
    postcopy_after_precopy: bool = False
    # --xml / --persistent-xml: files read by migrate_to (param name -> path).
    xml_files: Mapping[str, str] = {}

    @property
    def p2p(self) -> bool:
        return "VIR_MIGRATE_PEER2PEER" in self.flag_names

    @property
    def migrateuri(self) -> str | None:
        value = self.param_values.get("VIR_MIGRATE_PARAM_URI")
        return str(value) if value is not None else None

    def describe(self) -> str:
        """The flags and options for the log (what VirtualDomain's virsh line shows)."""
        parts = [f.removeprefix("VIR_MIGRATE_").lower() for f in self.flag_names]
        parts += [f"{k.removeprefix('VIR_MIGRATE_PARAM_').lower()}={v}"
                  for k, v in self.param_values.items()]
        if self.timeout_s is not None:
            parts.append(f"timeout={self.timeout_s}s ({self.timeout_action})")
        if self.postcopy_after_precopy:
            parts.append("postcopy-after-precopy")
        return ", ".join(parts) or "none"


def _value(name: str, raw: str, kind: type) -> str | int | list[str]:
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise MigrateOptionError(
                f"migrate_options: {name} needs a whole number, not {raw!r}") from None
    if kind is list:
        items = [item.strip() for item in raw.split(",") if item.strip()]
        if not items:
            raise MigrateOptionError(f"migrate_options: {name} needs a comma-separated list")
        return items
    return raw


def parse_migrate_options(text: str) -> MigrateOptions:
    """Parse virsh-style options (``--compressed --migrateuri=tcp://%n``) without a shell."""
    import shlex  # only the actions that migrate or validate parse options
    try:
        words = shlex.split(text or "")
    except ValueError as exc:
        raise MigrateOptionError(f"migrate_options={text!r}: {exc}") from None
    flags: list[str] = []
    values: dict[str, str | int | list[str]] = {}
    xml_files: dict[str, str] = {}
    timeout: int | None = None
    timeout_action: str | None = None
    after_precopy = False
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        name, eq, inline = word.partition("=")

        def value(name: str = name, eq: str = eq, inline: str = inline) -> str:
            nonlocal i
            if eq:
                return inline
            if i < len(words):
                i += 1
                return words[i - 1]
            raise MigrateOptionError(f"migrate_options: {name} needs a value")

        if name in REFUSED_OPTIONS:
            raise MigrateOptionError(f"migrate_options: {name} is not accepted: "
                                     f"{REFUSED_OPTIONS[name]}")
        if name in FLAG_OPTIONS or name in TIMEOUT_ACTIONS or name == POSTCOPY_AFTER_PRECOPY:
            if eq:
                raise MigrateOptionError(f"migrate_options: {name} takes no value")
            flag = FLAG_OPTIONS.get(name)
            if flag and flag not in flags:
                flags.append(flag)
            if name in TIMEOUT_ACTIONS:
                timeout_action = TIMEOUT_ACTIONS[name]
            after_precopy = after_precopy or name == POSTCOPY_AFTER_PRECOPY
        elif name in VALUE_OPTIONS:
            param, kind = VALUE_OPTIONS[name]
            values[param] = _value(name, value(), kind)
        elif name == TIMEOUT_OPTION:
            seconds = _value(name, value(), int)
            assert isinstance(seconds, int)
            if seconds < 1:
                raise MigrateOptionError("migrate_options: --timeout needs 1 or more seconds")
            timeout = seconds
        elif name in XML_FILE_OPTIONS:
            xml_files[XML_FILE_OPTIONS[name]] = value()
        else:
            raise MigrateOptionError(f"migrate_options: unknown option {word!r}")
    if "VIR_MIGRATE_OFFLINE" in flags:
        raise MigrateOptionError("migrate_options: --offline cannot move a running guest "
                                 "(VirtualDomain's virsh call fails on it too)")
    methods = values.get("VIR_MIGRATE_PARAM_COMPRESSION", [])
    if isinstance(methods, list) and {"zlib", "zstd"} & set(methods) \
            and "VIR_MIGRATE_PARALLEL" not in flags:
        raise MigrateOptionError("migrate_options: --comp-methods zlib and zstd need --parallel "
                                 "(libvirt compresses only parallel migrations with them)")
    postcopy = "VIR_MIGRATE_POSTCOPY" in flags
    if timeout_action is not None and timeout is None:
        raise MigrateOptionError("migrate_options: --timeout-suspend and --timeout-postcopy "
                                 "need --timeout")
    if (timeout_action == "postcopy" or after_precopy) and not postcopy:
        raise MigrateOptionError("migrate_options: --timeout-postcopy and "
                                 "--postcopy-after-precopy need --postcopy")
    return MigrateOptions(tuple(flags), values, timeout, timeout_action or "suspend",
                          after_precopy, xml_files)


def _with_suffix(node: str, suffix: str) -> str:
    """Insert the migration network suffix after the host part of a (maybe qualified) name."""
    if not suffix:
        return node
    head, dot, rest = node.partition(".")
    return f"{head}{suffix}{dot}{rest}"


def migration_target(target_node: str, *, remoteuri: str = "", user: str = "",
                     network_suffix: str = "") -> str:
    """What VirtualDomain puts in place of the target node in the target URI, and of %n in
    migrateuri and --migrateuri=: with remoteuri, the node's name; without, the name with
    the migration network suffix, after ``user@`` (a user name VirtualDomain accepts)."""
    if remoteuri:
        return target_node
    host = _with_suffix(target_node, network_suffix)
    return f"{user}@{host}" if user and VD_USER_RE.match(user) else host


def _split_authority(authority: str) -> tuple[str, str]:
    """(host with any user@, ":port" or "") of a URI's authority; IPv6 in brackets kept."""
    host, bracket, rest = authority.rpartition("]")
    if bracket:
        return host + bracket, rest if rest.startswith(":") else ""
    head, colon, port = authority.rpartition(":")
    return (head, f":{port}") if colon and port.isdigit() else (authority, "")


def destination_uri(hypervisor_uri: str, target_node: str, *, remoteuri: str = "",
                    transport: str = "", user: str = "", network_suffix: str = "") -> str:
    """The libvirt URI of the target's hypervisor, as VirtualDomain builds it: ``remoteuri``
    with %n replaced, else the local URI with its host part (user included) replaced by the
    migration target (migration_target) and everything else kept: its transport, port, path
    and query (an ssh keyfile, say). ``transport`` replaces the URI's own transport (where
    VirtualDomain appends a second one, which libvirt rejects)."""
    if remoteuri:
        return remoteuri.replace("%n", target_node)
    scheme, sep, rest = hypervisor_uri.strip().partition("://")
    if not sep:
        scheme, rest = hypervisor_uri.strip().partition(":")[0] or "qemu", "/system"
    authority, slash, path = rest.partition("/")
    _, port = _split_authority(authority)
    if transport:
        scheme = f"{scheme.split('+', 1)[0]}+{transport.lower()}"
    host = migration_target(target_node, user=user, network_suffix=network_suffix)
    return f"{scheme}://{host}{port}/{path if slash else 'system'}"


def migration_uri(hypervisor_uri: str, target_node: str, options: MigrateOptions, *,
                  migrateuri: str = "", network_suffix: str = "",
                  migrateport: int | None = None, remoteuri: str = "",
                  user: str = "") -> str | None:
    """Where the migration data goes; None lets libvirt choose (the target's
    migration_host). Precedence as in VirtualDomain: migrateuri, then --migrateuri in
    migrate_options (%n in both: migration_target), then one built from the migration
    network suffix."""
    target = migration_target(target_node, remoteuri=remoteuri, user=user,
                              network_suffix=network_suffix)
    if migrateuri:
        return migrateuri.replace("%n", target)
    if options.migrateuri:
        return options.migrateuri.replace("%n", target)
    if network_suffix:
        host = _with_suffix(target_node, network_suffix)
        driver = hypervisor_uri.partition(":")[0].split("+", 1)[0]
        if driver == "xen":
            return host
        return f"tcp://{host}{f':{migrateport}' if migrateport else ''}"
    return None


def check_parameters(params: Any, guest_node: str | None = None,
                     hypervisor_version: int | None = None) -> list[str]:
    """Problems with the migration parameters (pure Python): validate-all refuses them, start
    warns, migrate_to fails on them. ``guest_node``: the resource's meta remote-node, which
    rules out some; ``hypervisor_version``: libvirt's number for the qemu that will migrate
    (major * 1,000,000 + minor * 1,000 + micro), when known."""
    problems: list[str] = []
    try:
        options = parse_migrate_options(params.migrate_options)
    except MigrateOptionError as exc:
        problems.append(str(exc))
    else:
        for flag, option in ((PERSISTENT_FLAG, "--persistent"),
                             (UNDEFINE_FLAG, "--undefinesource")):
            if guest_node and flag in options.flag_names:
                problems.append(
                    f"migrate_options: {option} is not accepted for guest node {guest_node}: "
                    "fencing the host must stop the guest for good, and a persistent "
                    "definition lets a host start it on its own")
        problems += check_hypervisor(options, hypervisor_version)
    if params.migration_speed < 0:
        problems.append("migration_speed must be 0 (unlimited) or a positive MiB/s")
    if params.migration_downtime < 0:
        problems.append("migration_downtime must be 0 (libvirt's default) or positive ms")
    if params.migrateport is not None and not 0 < params.migrateport < 65536:
        problems.append(f"migrateport={params.migrateport} is not a TCP port")
    if params.migration_deadline_action not in DEADLINE_ACTIONS:
        problems.append(f"migration_deadline_action={params.migration_deadline_action!r}: use "
                        f"one of {', '.join(DEADLINE_ACTIONS)}")
    transport = params.migration_transport.lower()
    if transport and transport not in TRANSPORTS:
        problems.append(f"migration_transport={params.migration_transport!r} is not a libvirt "
                        f"transport ({', '.join(TRANSPORTS)})")
    return problems


def check_hypervisor(options: MigrateOptions, hypervisor_version: int | None) -> list[str]:
    """What the qemu that will migrate cannot do of ``options`` (its version as libvirt
    gives it: major * 1,000,000 + minor * 1,000 + micro; None: not known, nothing to say)."""
    methods = options.param_values.get("VIR_MIGRATE_PARAM_COMPRESSION", [])
    if hypervisor_version is not None and hypervisor_version >= MT_COMPRESSION_REMOVED_IN \
            and isinstance(methods, list) and "mt" in methods:
        return [f"migrate_options: --comp-methods mt: qemu {_version_text(hypervisor_version)} "
                "has no multi-thread compression any more (removed in 9.1); use zstd with "
                "--parallel, or xbzrle"]
    return []


def _version_text(version: int) -> str:
    return f"{version // 1_000_000}.{version // 1000 % 1000}.{version % 1000}"


def migration_warnings(params: Any) -> list[str]:
    """What is allowed but unwise (or ignored) in the migration parameters."""
    warnings = []
    user = params.migration_user
    if user and not params.remoteuri and not VD_USER_RE.match(user):
        warnings.append(f"migration_user={user!r} is not used in the target URI (only names "
                        "matching [a-z][-a-z0-9]* are, as in VirtualDomain)")
    try:
        options = parse_migrate_options(params.migrate_options)
    except MigrateOptionError:
        return warnings
    if PERSISTENT_FLAG in options.flag_names:
        warnings.append("migrate_options --persistent leaves a persistent definition of the "
                        "domain on the target: the cluster's config file is then not the only "
                        "definition, and a host may start the domain on its own")
    return warnings
