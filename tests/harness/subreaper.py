"""Run a command under a reaper that collects at once whatever the command leaves running.

    python3 subreaper.py [--pidfile PATH] -- COMMAND [ARG...]

A daemon (``libvirtd -d``, ``virtlogd -d``, a node's anchor) and what it starts as a daemon
in turn (libvirt's qemu and libvirt_lxc) are orphans: when one exits, its zombie goes to the
nearest ancestor that is a *child subreaper*, else to PID 1. A node's init (systemd) reaps it
at once; PID 1 of the machines these tests run on does so about every 1.5 s. libvirt judges a
killed emulator by ``kill(pid, 0)``, which a zombie still passes, so on such a machine every
destroy, every stop and the confirm step of every migration took ~1.5 s longer than on a real
node (docs/benchmarks-evacuation.md). Run under this, they take what they take on a node.

This exits with COMMAND's exit status as soon as COMMAND exits. A process of its own, the
reaper, stays: the parent of COMMAND (a child subreaper), it collects every process that
ends below it, the daemons COMMAND left behind and their orphans, and exits once none is
left. Its pid goes to PATH. It holds none of COMMAND's standard streams (``/dev/null``
instead), so a caller reading COMMAND's output sees its end when COMMAND's own processes
close them. Only the standard library: any python3 runs it.
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_CHILD_SUBREAPER = 36


def _usage(msg: str) -> int:
    print(f"subreaper: {msg}\nusage: subreaper.py [--pidfile PATH] -- COMMAND [ARG...]",
          file=sys.stderr)
    return 2


def _write_pidfile(path: str, pid: int) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{pid}\n")
    os.replace(tmp, path)


def _reap(command: list[str], report_fd: int) -> int:
    """In the reaper: run ``command`` as a child, send its wait status to ``report_fd``,
    then collect every child (adopted ones too) until none is left."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        os.write(report_fd, f"error prctl: {os.strerror(err)}\n".encode())
        return 1
    child = os.fork()
    if child == 0:
        os.close(report_fd)
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            print(f"subreaper: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
        os._exit(127)
    # The reaper lets go of the caller's streams: only COMMAND's own processes hold them.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue
        if pid == child:
            try:
                os.write(report_fd, f"status {status}\n".encode())
                os.close(report_fd)
            except OSError:
                pass


def main(argv: list[str]) -> int:
    pidfile: str | None = None
    args = list(argv)
    while args and args[0] != "--":
        if args[0] == "--pidfile" and len(args) > 1:
            pidfile = args[1]
            args = args[2:]
        else:
            return _usage(f"unknown argument {args[0]!r}")
    command = args[1:]
    if not command:
        return _usage("no command")
    read_fd, write_fd = os.pipe()
    reaper = os.fork()
    if reaper == 0:
        os.close(read_fd)
        os._exit(_reap(command, write_fd))
    os.close(write_fd)
    if pidfile:
        _write_pidfile(pidfile, reaper)
    data = b""
    while True:
        chunk = os.read(read_fd, 256)
        if not chunk:
            break
        data += chunk
    text = data.decode(errors="replace").strip()
    if text.startswith("status "):
        code = os.waitstatus_to_exitcode(int(text.split()[1]))
        return code if code >= 0 else 128 - code  # killed by a signal: as a shell says
    print(f"subreaper: {text or 'the reaper ended before the command did'}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
