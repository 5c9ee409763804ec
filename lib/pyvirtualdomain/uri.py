"""libvirt URIs without libvirt: the default URI as ``virsh uri`` computes it, whether a URI
is usable, whether it names this host. Pure Python, cheap to import."""

from __future__ import annotations

import os
import re
from typing import Mapping

from .tuples import NamedTuple

# Default URI per <domain type=...> when neither the parameter nor libvirt's configuration
# names one; what "virsh uri" gives on a host running that hypervisor as root.
URI_BY_VIRT_TYPE = {"lxc": "lxc:///system", "xen": "xen:///system", "test": "test:///default"}


FALLBACK_URI = "qemu:///system"


KNOWN_DRIVERS = frozenset({
    "qemu", "kvm", "lxc", "xen", "libxl", "test", "vbox", "vmware", "vmwarews", "vmwarefusion",
    "vmwareplayer", "esx", "gsx", "vpx", "hyperv", "vz", "bhyve", "openvz", "ch", "phyp",
})


class LibvirtConfError(ValueError):
    """libvirt.conf on this node cannot be read as libvirt reads it."""


def parse_libvirt_conf(text: str, path: str) -> dict[str, str | int | list[str | int]]:
    """The settings of a libvirt.conf, parsed as libvirt's own config reader does: ``name =
    value`` statements ended by a newline or ``;``, values a quoted string ('...', "..." or
    a triple-quoted one), a whole number or a [list] of those; ``#`` comments anywhere outside
    strings; spaces and tabs around everything."""
    settings: dict[str, str | int | list[str | int]] = {}
    i, line, n = 0, 1, len(text)

    def fail(why: str) -> LibvirtConfError:
        return LibvirtConfError(f"{path} line {line}: {why}")

    def skip_blank(newlines: bool) -> None:
        nonlocal i, line
        while i < n:
            c = text[i]
            if c in " \t\r" or (newlines and c == "\n"):
                line += c == "\n"
                i += 1
            elif c == "#":
                while i < n and text[i] != "\n":
                    i += 1
            else:
                return

    def value(in_list: bool) -> str | int | list[str | int]:
        nonlocal i, line
        if i >= n:
            raise fail("a value is missing")
        c = text[i]
        if c in "\"'":
            quote = c * 3 if text.startswith(c * 3, i) else c
            end = text.find(quote, i + len(quote))
            if end < 0:
                raise fail("a string is not terminated")
            content = text[i + len(quote):end]
            if len(quote) == 1 and "\n" in content:
                raise fail("a string is not terminated")
            line += content.count("\n")
            i = end + len(quote)
            return content
        if c == "[":
            if in_list:
                raise fail("a list inside a list")
            i += 1
            items: list[str | int] = []
            while True:
                skip_blank(newlines=True)
                if i < n and text[i] == "]":
                    i += 1
                    return items
                item = value(in_list=True)
                assert not isinstance(item, list)
                items.append(item)
                skip_blank(newlines=True)
                if i < n and text[i] == ",":
                    i += 1
                elif i < n and text[i] == "]":
                    continue
                else:
                    raise fail("a list is not terminated")
        m = re.compile(r"[-+]?\d+").match(text, i)
        if m is None:
            raise fail(f"a value must be quoted: {text[i:].splitlines()[0][:40]!r}")
        i = m.end()
        return int(m.group())

    name_re = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
    while True:
        skip_blank(newlines=True)
        if i >= n:
            return settings
        m = name_re.match(text, i)
        if m is None:
            raise fail(f"expected a setting name, not {text[i:].splitlines()[0][:40]!r}")
        i = m.end()
        skip_blank(newlines=False)
        if i >= n or text[i] != "=":
            raise fail(f"expected '=' after {m.group()}")
        i += 1
        skip_blank(newlines=False)
        settings[m.group()] = value(in_list=False)
        skip_blank(newlines=False)
        if i < n and text[i] == ";":
            i += 1
        elif i < n and text[i] != "\n":
            raise fail(f"unexpected {text[i:].splitlines()[0][:40]!r} after {m.group()}")


class DefaultURI(NamedTuple):
    uri: str
    origin: str  # where it came from, for messages


def libvirt_conf_path(environ: Mapping[str, str], euid: int) -> str:
    """The libvirt.conf a client reads: the system one for root, else the user's."""
    if euid == 0:
        return "/etc/libvirt/libvirt.conf"
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(environ.get("HOME", "/"), ".config")
    return os.path.join(base, "libvirt", "libvirt.conf")


def default_uri(virt_type: str, environ: Mapping[str, str],
                euid: int | None = None) -> DefaultURI:
    """The URI used when the hypervisor parameter is unset, as ``virsh uri`` finds it:
    LIBVIRT_DEFAULT_URI, uri_default in libvirt.conf, then the driver's system URI for the
    domain type (see the metadata). LibvirtConfError when libvirt.conf cannot be parsed."""
    env_uri = environ.get("LIBVIRT_DEFAULT_URI", "").strip()
    if env_uri:
        return DefaultURI(env_uri, "LIBVIRT_DEFAULT_URI")
    path = libvirt_conf_path(environ, os.geteuid() if euid is None else euid)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        text = ""
    if "uri_default" in text:
        configured = parse_libvirt_conf(text, path).get("uri_default")
        if configured is not None:
            if not isinstance(configured, str):
                raise LibvirtConfError(f"{path}: uri_default is not a string")
            return DefaultURI(configured.strip(), f"uri_default in {path}")
    fallback = URI_BY_VIRT_TYPE.get(virt_type, FALLBACK_URI)
    return DefaultURI(fallback, f"the default for <domain type='{virt_type}'>")


# [user@]host-or-[IPv6][:port], any part may be empty (local URIs have no authority).
_AUTHORITY = r"^(?:[^@/\s\[\]]*@)?(?:\[[0-9A-Fa-f:.]+\]|[^\[\]/\s:@]*)(?::\d*)?$"


def _authority_pattern() -> re.Pattern[str]:
    """Compiled on first use (re caches it): a local URI never pays the ~0.4 ms."""
    return re.compile(_AUTHORITY)


def _split_uri(uri: str) -> tuple[str, str] | None:
    """(scheme, authority) of a libvirt URI, or None when it has no "scheme://".
    (Not urllib.parse: it costs the monitor path a few ms of imports.)"""
    scheme, sep, rest = uri.partition("://")
    if not sep or not scheme:
        return None
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    return scheme, authority


def uri_problem(uri: str) -> str | None:
    """Why a URI is not a usable libvirt URI, or None."""
    parts = _split_uri(uri.strip())
    if parts is None or any(c.isspace() for c in uri.strip()):
        return f"hypervisor URI {uri!r} is not a libvirt URI (e.g. qemu:///system)"
    driver = parts[0].split("+", 1)[0]
    if driver not in KNOWN_DRIVERS:
        return f"hypervisor URI {uri!r} names no libvirt driver ({driver!r} is unknown)"
    if parts[1] and not _authority_pattern().match(parts[1]):
        return f"hypervisor URI {uri!r} has a malformed host part {parts[1]!r}"
    return None


def is_local_uri(uri: str) -> bool:
    """True when the hypervisor runs on this host (no host part in the URI)."""
    parts = _split_uri(uri)
    return parts is not None and parts[1] == ""
