"""Who a running domain belongs to: the owner tag the agent writes into the domain's own
libvirt ``<metadata>`` when it starts (or adopts) it.

libvirt keeps the tag with the running domain and moves it along with a live migration, so a
node can find a guest of its resource through libvirt even when it has neither the config
file (storage not mounted here) nor the state record (HA_RSCTMP full, or the guest migrated
in while the config was missing). Only stop, probe and migrate_from look for it, and only when
they have neither (core/ownership.py). Pure Python; no libvirt.
"""

from __future__ import annotations

import re
from typing import Mapping

from .tuples import NamedTuple

# The tag's XML namespace and the prefix libvirt writes it with (``virsh metadata DOMAIN URI``
# shows it). Never change either: running guests carry them.
OWNER_NS = "https://pyvirtualdomain.github.io/xmlns/owner/1"
OWNER_PREFIX = "pyvd"
OWNER_ELEMENT = "owner"
COROSYNC_CONF = "/etc/corosync/corosync.conf"


class Owner(NamedTuple):
    """The Pacemaker resource that runs the domain."""

    instance: str  # OCF_RESOURCE_INSTANCE (by hand: the domain's name)
    agent: str  # PyVirtualDomain or PyLXCDomain
    cluster: str = ""  # corosync's cluster_name when known

    def same_resource(self, other: Owner) -> bool:
        """Whether ``other`` (read from a domain) names this resource: the same instance of
        the same agent, and the same cluster unless one side does not know its name."""
        return (self.instance == other.instance and self.agent == other.agent
                and (not self.cluster or not other.cluster or self.cluster == other.cluster))

    def attributes(self) -> dict[str, str]:
        attrs = {"instance": self.instance, "agent": self.agent}
        if self.cluster:
            attrs["cluster"] = self.cluster
        return attrs

    def describe(self) -> str:
        where = f" of cluster {self.cluster}" if self.cluster else ""
        return f"resource {self.instance} ({self.agent}){where}"


def _quote(value: str) -> str:
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def owner_element(owner: Owner) -> str:
    """The tag as libvirt's setMetadata takes it (the namespace comes with the call)."""
    attrs = " ".join(f'{k}="{_quote(v)}"' for k, v in owner.attributes().items())
    return f"<{OWNER_ELEMENT} {attrs}/>"


def owner_from_attributes(attrs: Mapping[str, str]) -> Owner | None:
    instance, agent = attrs.get("instance", ""), attrs.get("agent", "")
    if not instance or not agent:
        return None
    return Owner(instance, agent, attrs.get("cluster", ""))


def parse_owner_element(text: str) -> Owner | None:
    """The owner in the element libvirt's getMetadata returns; None when it is not one."""
    from xml.etree import ElementTree  # only the fallback searches read tags

    try:
        el = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return None
    if el.tag.rsplit("}", 1)[-1] != OWNER_ELEMENT:
        return None
    return owner_from_attributes(el.attrib)


_CLUSTER_NAME_RE = re.compile(r"^\s*cluster_name\s*:\s*(\S+)\s*$", re.MULTILINE)


def local_cluster_name(path: str = COROSYNC_CONF) -> str:
    """corosync's cluster_name on this node ("" when unknown)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 20)
    except OSError:
        return ""
    m = _CLUSTER_NAME_RE.search(text)
    return m.group(1) if m else ""
