"""Reading the user's domain XML file: bytes in, facts out. Never writes the file (start hands
libvirt an edited copy in memory: prepared_xml)."""

from __future__ import annotations

import errno
import os
from typing import Any

from ..errors import ConfigError, NotInstalled, PermissionProblem
from ..owner import OWNER_ELEMENT, OWNER_NS, OWNER_PREFIX, Owner, owner_from_attributes
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


class _Fields(NamedTuple):
    """What identifies a domain, as read from its XML: the root element (``{ns}local`` when
    namespaced, as lxml names it), its type attribute, and the text of <name>, <uuid> and
    <devices><emulator> (each as ElementTree's ``findtext`` finds it; None when absent)."""

    root: str
    virt_type: str | None
    name: str | None
    uuid: str | None
    emulator: str | None


# Above these, lxml (huge_tree off) refuses a document that expat takes: leave it to lxml.
_EXPAT_MAX_BYTES = 1024 * 1024
_EXPAT_MAX_DEPTH = 200
_WANTED = {("name",): "name", ("uuid",): "uuid", ("devices", "emulator"): "emulator"}


class _LeaveToLxml(Exception):
    pass


def _expat_fields(data: bytes) -> _Fields | None:
    """The identity fields read with expat (the standard library's parser: a stop, a probe
    or a migration reads no more of the XML than this, and lxml's import costs each of them
    more than the parse). None when expat refuses the document, or it has a DOCTYPE, a
    processing instruction or anything lxml might read otherwise: lxml then reads it, for
    the same answer and the same message as always."""
    if len(data) > _EXPAT_MAX_BYTES:
        return None
    from xml.parsers import expat

    parser = expat.ParserCreate(namespace_separator=" ")
    stack: list[str] = []
    root: list[tuple[str, str | None]] = []
    found: dict[str, str] = {}
    capturing: list[str] = []  # the field whose element's leading text is being read
    text: list[str] = []

    def end_capture() -> None:
        if capturing:
            found[capturing.pop()] = "".join(text)
            text.clear()

    def start(tag: str, attrs: dict[str, str]) -> None:
        end_capture()
        if len(stack) >= _EXPAT_MAX_DEPTH:
            raise _LeaveToLxml
        if not stack:
            root.append((tag, attrs.get("type")))
        stack.append(tag)
        field = _WANTED.get(tuple(stack[1:]))
        if field is not None and field not in found:
            capturing.append(field)

    def end(tag: str) -> None:
        end_capture()
        stack.pop()

    def chars(data: str) -> None:
        if capturing:
            text.append(data)

    def leave(*_: object) -> None:
        raise _LeaveToLxml

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.CommentHandler = lambda _text: end_capture()  # a comment ends an element's .text
    parser.ProcessingInstructionHandler = leave
    parser.StartDoctypeDeclHandler = leave
    try:
        parser.Parse(data, True)
    except (_LeaveToLxml, expat.ExpatError, ValueError):
        return None
    if not root:
        return None
    tag, virt_type = root[0]
    if " " in tag:
        uri, local = tag.rsplit(" ", 1)
        tag = f"{{{uri}}}{local}"
    return _Fields(tag, virt_type, found.get("name"), found.get("uuid"), found.get("emulator"))


def _lxml_fields(data: bytes, path: str) -> _Fields:
    root = parse_xml(data, path)
    tag = root.tag if isinstance(root.tag, str) else str(root.tag)
    return _Fields(tag, root.get("type"), root.findtext("name"), root.findtext("uuid"),
                   root.findtext("devices/emulator"))


_HEX = frozenset("0123456789abcdef")


def canonical_uuid(text: str) -> str | None:
    """A UUID in libvirt's form (lower case, dashed 8-4-4-4-12), from the forms libvirt and
    Python's uuid module takes (dashes anywhere, braces, a urn:uuid: prefix); None when it is
    not one. (The uuid module's import costs every stop and probe more than this.)"""
    h = text.strip().lower().replace("urn:", "").replace("uuid:", "").strip("{}").replace("-", "")
    if len(h) != 32 or not _HEX.issuperset(h):
        return None
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def parse_identity(data: bytes, path: str) -> DomainIdentity:
    fields = _expat_fields(data) or _lxml_fields(data, path)
    if fields.root != "domain":
        raise ConfigError(f"config {path} is not a libvirt domain XML (root element is "
                          f"<{fields.root}>, expected <domain>)")
    virt_type = (fields.virt_type or "").strip()
    if not virt_type:
        raise ConfigError(f"config {path}: <domain> has no type attribute (e.g. type='kvm')")
    name = (fields.name or "").strip()
    if not name:
        raise ConfigError(f"config {path}: domain has no <name>")
    if "/" in name or any(ord(c) < 32 for c in name):
        raise ConfigError(f"config {path}: domain name {name!r} is not a valid libvirt name")
    uuid_text = (fields.uuid or "").strip()
    canonical: str | None = None
    if uuid_text:
        canonical = canonical_uuid(uuid_text)
        if canonical is None:
            raise ConfigError(f"config {path}: <uuid>{uuid_text}</uuid> is not a UUID")
    emulator = (fields.emulator or "").strip() or None
    return DomainIdentity(name=name, uuid=canonical, virt_type=virt_type, emulator=emulator)


def load_domain(path: str) -> tuple[ConfigFile, DomainIdentity]:
    cfg = read_config(path)
    return cfg, parse_identity(cfg.data, path)


def prepared_xml(data: bytes, path: str, *, uuid: str | None = None,
                 owner: Owner | None = None) -> str:
    """The XML text start hands libvirt: the config with a <uuid> added (for a config that
    has none, to match a domain of the same name that libvirt already knows) and the owner
    tag in its <metadata> (replacing an owner tag a dumped XML may carry). Only the in-memory
    copy changes; comments, other namespaces and metadata of other applications are kept."""
    from lxml import etree

    root = parse_xml(data, path)
    name = root.find("name")
    if uuid is not None:
        el = etree.Element("uuid")
        el.text = uuid
        if name is not None:
            _add_after(name, el)
        else:  # pragma: no cover - parse_identity guarantees a <name>
            root.insert(0, el)
    if owner is not None:
        metadata = root.find("metadata")
        if metadata is None:
            metadata = etree.Element("metadata")
            anchor = root.find("uuid") if root.find("uuid") is not None else name
            if anchor is not None:
                _add_after(anchor, metadata)
            else:  # pragma: no cover - parse_identity guarantees a <name>
                root.insert(0, metadata)
        for old in metadata.findall(f"{{{OWNER_NS}}}{OWNER_ELEMENT}"):
            metadata.remove(old)
        tag = etree.SubElement(metadata, f"{{{OWNER_NS}}}{OWNER_ELEMENT}",
                               nsmap={OWNER_PREFIX: OWNER_NS})
        for key, value in owner.attributes().items():
            tag.set(key, value)
        _indent_last(metadata)
    return str(etree.tostring(root, encoding="unicode"))


def without_owner(xml: str) -> str:
    """A domain XML (libvirt's, of a domain this agent started) without the owner tag, for
    the user's config file: the tag is the running domain's, start writes it anew. libvirt's
    text is kept as it is (only the tag's line, and a <metadata> left empty, go)."""
    if OWNER_NS not in xml:
        return xml
    import re

    tag = re.compile(r'\n?[ \t]*<(\w+):' + OWNER_ELEMENT + r'\s+xmlns:\1="' + re.escape(OWNER_NS)
                     + r'"[^>]*/>')
    text, found = tag.subn("", xml)
    if found:
        return re.sub(r"\n?[ \t]*<metadata>\s*</metadata>", "", text)
    from lxml import etree  # not libvirt's usual layout: edit the tree instead

    root = parse_xml(xml.encode(), "the domain's definition")
    for metadata in root.findall("metadata"):
        for el in metadata.findall(f"{{{OWNER_NS}}}{OWNER_ELEMENT}"):
            metadata.remove(el)
        if len(metadata) == 0 and not (metadata.text or "").strip():
            root.remove(metadata)
    return str(etree.tostring(root, encoding="unicode"))


def _add_after(anchor: Any, el: Any) -> None:
    """Insert ``el`` after ``anchor`` with the same indentation. lxml before 5 moves the
    anchor's tail to the added element in addnext(), 5 and later keeps it (Debian 12 has 4.9,
    Debian 13 5.4): the same text on both."""
    tail = anchor.tail
    anchor.addnext(el)
    anchor.tail = el.tail = tail


def _indent_last(parent: Any) -> None:
    """Give the element just appended to ``parent`` the indentation of its siblings."""
    children = list(parent)
    last = children[-1]
    if len(children) > 1:
        before = children[-2]
        last.tail, before.tail = before.tail, parent.text
    elif "\n" in (parent.tail or ""):
        parent.text = parent.tail + "  "
        last.tail = parent.tail


def owner_of_status(data: bytes) -> tuple[DomainIdentity, Owner] | None:
    """The domain and its owner tag in a status file libvirtd keeps for a running domain
    (``<domstatus>`` around the live ``<domain>``); None when it carries no owner tag. Read
    with the standard library: libvirtd's own file, and this runs where lxml may be missing."""
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError:
        return None
    dom = root if root.tag == "domain" else root.find("domain")
    if dom is None:
        return None
    tag = dom.find(f"metadata/{{{OWNER_NS}}}{OWNER_ELEMENT}")
    owner = owner_from_attributes(tag.attrib) if tag is not None else None
    name = (dom.findtext("name") or "").strip()
    if owner is None or not name:
        return None
    uuid = (dom.findtext("uuid") or "").strip().lower() or None
    emulator = (dom.findtext("devices/emulator") or "").strip() or None
    return DomainIdentity(name, uuid, (dom.get("type") or "").strip(), emulator), owner
