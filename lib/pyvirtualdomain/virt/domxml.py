"""Reading the user's domain XML file: bytes in, facts out. Never writes the file."""

from __future__ import annotations

import errno
import os

from ..errors import ConfigError, NotInstalled, PermissionProblem
from ..tuples import NamedTuple

MAX_CONFIG_BYTES = 16 * 1024 * 1024


class DomainIdentity(NamedTuple):
    """What identifies the domain on a hypervisor, and what kind of guest it is."""

    name: str
    uuid: str | None  # canonical lower-case dashed form, or None when the XML has none
    virt_type: str  # the <domain type=...> attribute: kvm, qemu, lxc, xen, test, ...
    emulator: str | None = None


class ConfigFile(NamedTuple):
    path: str
    data: bytes
    mtime_ns: int
    size: int


def read_config(path: str) -> ConfigFile:
    """Read the config file, mapping what can go wrong to the OCF meaning of it."""
    if not path:
        raise ConfigError("parameter config is not set")
    if not os.path.isabs(path):
        raise ConfigError(f"config {path!r} is not an absolute path")
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_size > MAX_CONFIG_BYTES:
                raise ConfigError(f"config {path} is {st.st_size} bytes, not a domain XML file")
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise NotInstalled(f"config {path} does not exist on this node") from None
    except PermissionError:
        raise PermissionProblem(f"config {path} is not readable (permission denied)") from None
    except IsADirectoryError:
        raise ConfigError(f"config {path} is a directory, not a domain XML file") from None
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP):
            raise NotInstalled(f"config {path} cannot be opened: {exc.strerror}") from None
        raise NotInstalled(f"config {path} cannot be read: {exc.strerror}") from None
    return ConfigFile(path, data, st.st_mtime_ns, st.st_size)


def parse_xml(data: bytes, path: str):  # type: ignore[no-untyped-def]
    try:
        from lxml import etree
    except ImportError:
        raise NotInstalled("python lxml is not installed for this interpreter") from None

    if not data.strip():
        raise ConfigError(f"config {path} is empty")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False,
                             remove_comments=False)
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as exc:
        msg = exc.msg or "not well-formed XML"
        raise ConfigError(f"config {path} is not well-formed XML: {msg}") from None
    except ValueError as exc:
        raise ConfigError(f"config {path} cannot be parsed: {exc}") from None
    return root


def parse_identity(data: bytes, path: str) -> DomainIdentity:
    root = parse_xml(data, path)
    if not isinstance(root.tag, str) or root.tag != "domain":
        raise ConfigError(f"config {path} is not a libvirt domain XML (root element is "
                          f"<{root.tag}>, expected <domain>)")
    virt_type = (root.get("type") or "").strip()
    if not virt_type:
        raise ConfigError(f"config {path}: <domain> has no type attribute (e.g. type='kvm')")
    name = (root.findtext("name") or "").strip()
    if not name:
        raise ConfigError(f"config {path}: domain has no <name>")
    if "/" in name or any(ord(c) < 32 for c in name):
        raise ConfigError(f"config {path}: domain name {name!r} is not a valid libvirt name")
    import uuid as uuidlib

    uuid_text = (root.findtext("uuid") or "").strip()
    canonical: str | None = None
    if uuid_text:
        try:
            canonical = str(uuidlib.UUID(uuid_text))
        except ValueError:
            raise ConfigError(f"config {path}: <uuid>{uuid_text}</uuid> is not a UUID") from None
    emulator = (root.findtext("devices/emulator") or "").strip() or None
    return DomainIdentity(name=name, uuid=canonical, virt_type=virt_type, emulator=emulator)


def load_domain(path: str) -> tuple[ConfigFile, DomainIdentity]:
    cfg = read_config(path)
    return cfg, parse_identity(cfg.data, path)


def with_uuid(data: bytes, path: str, uuid: str) -> str:
    """The XML text with a <uuid> added (for an XML that has none, to match a domain of the
    same name that libvirt already knows). Only the in-memory copy changes."""
    from lxml import etree

    root = parse_xml(data, path)
    el = etree.Element("uuid")
    el.text = uuid
    name = root.find("name")
    if name is not None:
        # lxml before 5 moves <name>'s tail to the added element in addnext(), 5 and later
        # keeps it (Debian 12 has 4.9, 13 has 5.4): the same text on both.
        tail = name.tail
        name.addnext(el)
        name.tail = el.tail = tail
    else:  # pragma: no cover - parse_identity guarantees a <name>
        root.insert(0, el)
    return str(etree.tostring(root, encoding="unicode"))
