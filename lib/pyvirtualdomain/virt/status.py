"""libvirtd's status files: the live XML it keeps on disk for every running domain
(``/run/libvirt/<driver>/<name>.xml``, written when the domain starts or arrives, removed when
it stops). Read without libvirt when the daemon cannot be asked, to find the domains that
carry a resource's owner tag. /run is a tmpfs: a directory that does not exist means no
daemon of that driver has run a domain since the host booted."""

from __future__ import annotations

import os

from ..owner import OWNER_NS, Owner
from ..tuples import NamedTuple
from .domxml import DomainIdentity, owner_of_status

# The system URIs whose daemon keeps its status files here.
STATUS_DIRS = {"qemu:///system": "/run/libvirt/qemu", "kvm:///system": "/run/libvirt/qemu",
               "lxc:///system": "/run/libvirt/lxc"}
MAX_STATUS_BYTES = 16 * 1024 * 1024


class StatusScan(NamedTuple):
    found: tuple[DomainIdentity, ...]  # domains with this owner's tag
    directory: str | None  # where libvirtd keeps them for the URI; None: not known
    exists: bool  # whether that directory exists (a daemon has run domains since boot)
    complete: bool = True  # every status file in it could be read


def status_dir(uri: str) -> str | None:
    return STATUS_DIRS.get(uri.strip().rstrip("/").replace(":///system/", ":///system"))


def scan_status_files(uri: str, owner: Owner, directory: str | None = None) -> StatusScan:
    """The domains whose status file carries ``owner``'s tag (the same resource)."""
    directory = directory or status_dir(uri)
    if directory is None:
        return StatusScan((), None, False)
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return StatusScan((), directory, False)
    except OSError:
        return StatusScan((), directory, True, complete=False)
    needle = OWNER_NS.encode()
    found: list[DomainIdentity] = []
    complete = True
    for entry in entries:
        if not entry.name.endswith(".xml"):
            continue
        try:
            with open(entry.path, "rb") as f:
                data = f.read(MAX_STATUS_BYTES)
        except OSError:
            complete = False
            continue
        if needle not in data:
            continue
        tagged = owner_of_status(data)
        if tagged is not None and owner.same_resource(tagged[1]):
            found.append(tagged[0])
    return StatusScan(tuple(found), directory, True, complete)
