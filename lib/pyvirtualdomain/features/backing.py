"""backingfile / stateless / copyindirs: the domain runs on a copy-on-write overlay of a
backing image, re-created on start when stateless, with directories copied into it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from ..core.context import Context
from ..deadline import Deadline
from ..errors import AgentError, NotInstalled
from ..ocf import OCFExit


def overlay_path(config: str) -> str:
    """The copy-on-write image, where VirtualDomain puts it: the config's path cut at its first
    dot, plus .qcow2 (/etc/vms/web1.xml -> /etc/vms/web1.qcow2, but /srv/cluster.d/vm1.xml
    -> /srv/cluster.qcow2). The domain XML names this file as its disk; a resource switched
    from VirtualDomain keeps using the overlay it had."""
    head, dot, _ = config.partition(".")
    return f"{head if dot else config}.qcow2"


def _tool(ctx: Context, name: str) -> str:
    exe = shutil.which(name, path=ctx.environ.get("PATH") or os.defpath)
    if exe is None:
        raise NotInstalled(f"{name} is not installed on this node (needed by "
                           f"{'copyindirs' if name == 'virt-copy-in' else 'backingfile'})")
    return exe


def _stderr_summary(text: str, limit: int = 300) -> str:
    """One line of a tool's stderr for the exit reason. The error is on the first line and
    advice follows (libguestfs appends a whole paragraph of hints): keep the first line whole
    and as much of the end as fits."""
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    flat = " ".join(lines)
    if len(flat) <= limit:
        return flat
    first, rest = lines[0][:limit], " ".join(lines[1:])
    room = limit - len(first) - 5
    return first if room < 20 else f"{first} ... {rest[-room:]}"


def _run_tool(ctx: Context, argv: list[str], deadline: Deadline, what: str,
              where: str = "") -> str:
    # The agent's own environment, passed through whole: libguestfs is configured by it
    # (LIBGUESTFS_BACKEND, LIBGUESTFS_BACKEND_SETTINGS, TMPDIR, ...), and so is qemu-img.
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=max(0.5, deadline.remaining()), env=dict(ctx.environ))
    except subprocess.TimeoutExpired:
        raise AgentError(f"{what} did not finish before the timeout") from None
    if r.returncode != 0:
        raise AgentError(f"{what} failed ({r.returncode}): {_stderr_summary(r.stderr)}"
                         f"{' ' + where if where else ''}")
    return r.stdout


TEMP_MARK = ".new-"


def _remove_stale_overlay_temps(ctx: Context, overlay: str) -> None:
    """An overlay being built is ``<overlay>.new-<pid>``; one whose builder is gone (the
    agent was killed mid-copy) is removed before the next build."""
    directory, base = os.path.split(overlay)
    prefix = base + TEMP_MARK
    try:
        names = os.listdir(directory or ".")
    except OSError:
        return
    for name in names:
        pid_text = name[len(prefix):]
        if not name.startswith(prefix) or not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # its builder still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            os.unlink(os.path.join(directory, name))
            ctx.log.info(f"removed {name}, left by an interrupted start")
        except OSError:
            pass


def prepare_backing(ctx: Context, deadline: Deadline) -> None:
    """backingfile: make sure the copy-on-write overlay exists (re-created on every start when
    stateless), then copy copyindirs into it. The backing file itself is never written."""
    p = ctx.params
    if not p.backingfile:
        return
    overlay = overlay_path(p.config)
    if not p.stateless and os.path.exists(overlay) and os.path.getsize(overlay) > 0:
        return
    # start is not preceded by validate-all: what is missing on this node (backing file,
    # qemu-img, virt-copy-in, a copyindirs path) is rc 5 here, before anything is created,
    # rather than a tool's failure (rc 1) half-way.
    check_backing(ctx)
    qemu_img = _tool(ctx, "qemu-img")
    info = json.loads(_run_tool(ctx, [qemu_img, "info", "--output=json", "-U", p.backingfile],
                                deadline, f"qemu-img info {p.backingfile}"))
    fmt = str(info.get("format") or "raw")
    # Built under a temporary name and renamed only when complete: a failed or timed-out
    # copy never leaves a half-written overlay (nor replaces the previous one).
    _remove_stale_overlay_temps(ctx, overlay)
    tmp = f"{overlay}{TEMP_MARK}{os.getpid()}"
    try:
        _run_tool(ctx, [qemu_img, "create", "-q", "-f", "qcow2", "-F", fmt, "-b",
                        p.backingfile, tmp], deadline, f"qemu-img create of {overlay}")
        if p.copyindirs.strip():
            copy_in = _tool(ctx, "virt-copy-in")
            ctx.log.info(f"copying {p.copyindirs.strip()} into {overlay}")
            # The format is known: no probing of the image. The reason names the tool and
            # its error first (Pacemaker keeps only 128 characters of it), the overlay last.
            _run_tool(ctx, [copy_in, "--format=qcow2", "-a", tmp, *p.copyindirs.split(), "/"],
                      deadline, "virt-copy-in", f"(overlay {overlay})")
        os.replace(tmp, overlay)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    ctx.log.info(f"created {overlay} on top of {p.backingfile}"
                 f"{' (stateless)' if p.stateless else ''}")


def check_backing(ctx: Context) -> None:
    p = ctx.params
    if not p.backingfile:
        if p.stateless or p.copyindirs.strip():
            ctx.log.warning("stateless and copyindirs do nothing without backingfile")
        return
    if not os.path.isabs(p.backingfile):
        raise AgentError(f"backingfile={p.backingfile!r} is not an absolute path",
                         OCFExit.ERR_CONFIGURED)
    if not os.path.isfile(p.backingfile):
        raise NotInstalled(f"backing file {p.backingfile} does not exist on this node")
    _tool(ctx, "qemu-img")
    if p.copyindirs.strip():
        _tool(ctx, "virt-copy-in")
        for d in p.copyindirs.split():
            if not os.path.exists(d):
                raise NotInstalled(f"copyindirs: {d} does not exist on this node")
