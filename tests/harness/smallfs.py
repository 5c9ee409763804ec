"""A disk that fails with a real I/O error: its backing file lives on a size-limited tmpfs the
harness mounts (and removes again), so once the guest has written more than the filesystem
holds, qemu's writes fail with ENOSPC and, with ``error_policy='stop'``, qemu pauses the
guest (libvirt: paused, reason I/O error).

The mount is made in the mount namespace qemu is started from: libvirtd's (the harness runs
libvirtd in a private one on hosts with hybrid cgroups). A descriptor of that namespace is
kept open, so the mount can be removed even if libvirtd was restarted meanwhile."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import TracebackType

from .common import DEFAULT_URI, HarnessError
from .domains import remove_domain

FSTYPE_SOURCE = "pyvd-test-smallfs"  # the mount's source name, for people reading mountinfo


class SmallFilesystem:
    def __init__(self, mountpoint: Path, size_mib: int, namespace_pid: int,
                 uri: str = DEFAULT_URI) -> None:
        self.mountpoint = Path(mountpoint)
        self.size_mib = int(size_mib)
        self.namespace_pid = namespace_pid
        self.uri = uri
        self.users: list[str] = []  # domains removed before the unmount
        self._ns_fd: int | None = None
        self._mounted = False

    def _nsenter(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        if self._ns_fd is None:
            raise HarnessError("the namespace descriptor is closed")
        proc = subprocess.run(
            ["nsenter", f"--mount=/proc/{os.getpid()}/fd/{self._ns_fd}", "--", *argv],
            capture_output=True, text=True, timeout=30, check=False, pass_fds=(self._ns_fd,))
        if check and proc.returncode != 0:
            raise HarnessError(f"{' '.join(argv)} in the mount namespace of pid "
                               f"{self.namespace_pid}: {proc.stderr.strip()}")
        return proc

    def mount(self) -> SmallFilesystem:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self._ns_fd = os.open(f"/proc/{self.namespace_pid}/ns/mnt", os.O_RDONLY)
        try:
            self._nsenter(["mount", "-t", "tmpfs", "-o", f"size={self.size_mib}m,mode=0700",
                           FSTYPE_SOURCE, str(self.mountpoint)])
            self._mounted = True
        except BaseException:
            os.close(self._ns_fd)
            self._ns_fd = None
            raise
        return self

    def is_mounted(self) -> bool:
        """Whether the namespace has a mount at the mountpoint (read back from mountinfo)."""
        if self._ns_fd is None:
            return False
        text = self._nsenter(["cat", "/proc/self/mountinfo"]).stdout
        return any(line.split()[4] == str(self.mountpoint) for line in text.splitlines()
                   if len(line.split()) > 4)

    def sparse_file(self, name: str, size_mib: int) -> Path:
        """A sparse file of ``size_mib`` on the filesystem (bigger than it: writes fail once
        the filesystem is full)."""
        if not self._mounted:
            raise HarnessError("mount() first")
        path = self.mountpoint / name
        self._nsenter(["truncate", "-s", f"{int(size_mib)}M", str(path)])
        return path

    def used_kib(self) -> int:
        out = self._nsenter(["df", "-k", str(self.mountpoint)]).stdout.splitlines()
        return int(out[-1].split()[2])

    def close(self) -> list[str]:
        """Remove the domains using the filesystem, unmount it, remove the mountpoint.
        Returns what was done; raises HarnessError if the mount stays."""
        done: list[str] = []
        for name in self.users:
            done += [f"{name}: {d}" for d in remove_domain(name, self.uri)]
        if self._mounted:
            proc = self._nsenter(["umount", str(self.mountpoint)], check=False)
            if proc.returncode != 0 and self.is_mounted():
                raise HarnessError(f"umount {self.mountpoint}: {proc.stderr.strip()}")
            self._mounted = False
            done.append(f"unmounted {self.mountpoint}")
        if self.is_mounted():
            raise HarnessError(f"{self.mountpoint} is still mounted")
        if self._ns_fd is not None:
            os.close(self._ns_fd)
            self._ns_fd = None
        try:
            self.mountpoint.rmdir()
        except FileNotFoundError:
            pass
        return done

    def __enter__(self) -> SmallFilesystem:
        return self.mount()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
