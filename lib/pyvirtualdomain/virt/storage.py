"""Where a path lives on this host: the type of its filesystem, and whether other nodes can
share it."""

from __future__ import annotations

import os

# Filesystems every node of a cluster can mount at once.
SHARED_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "glusterfs", "fuse.glusterfs", "ceph", "fuse.ceph",
    "fuse.cephfs", "gfs2", "ocfs2", "lustre", "beegfs", "gpfs", "fuse.sshfs", "9p", "virtiofs",
})


def filesystem_of(path: str) -> str | None:
    """The type of the filesystem ``path`` is on (/proc/self/mountinfo), None if unknown."""
    real = os.path.realpath(path)
    best, kind = "", None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if "-" not in fields:
                    continue
                sep = fields.index("-")
                if len(fields) < sep + 2:
                    continue
                mount = fields[4].replace("\\040", " ")
                inside = real == mount or real.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best):
                    best, kind = mount, fields[sep + 1]
    except OSError:
        return None
    return kind
