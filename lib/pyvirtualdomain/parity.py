"""VirtualDomain's extras, done without a shell: monitor scripts,
saving the live config back to the config file, RAM snapshots, starting the storage pools and
networks a domain needs. Imported only by the actions that use them (the utilization
attributes, on every monitor, are in utilization.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

from .deadline import Deadline
from .errors import AgentError, LibvirtFact, NotInstalled
from .ocf import OCFExit

if TYPE_CHECKING:
    from .actions import Context, Result
    from .domain import Domain

SUBPROCESS_BOUND_S = 10.0


# -- monitor scripts ----------------------------------------------------------------------------


def run_monitor_scripts(ctx: Context, name: str, deadline: Deadline) -> Result | None:
    """Run each of monitor_scripts (no shell: whitespace-separated executables, as
    VirtualDomain splits them), sharing the time left; the first failure is the result."""
    from .actions import Result

    scripts = ctx.params.monitor_scripts.split()
    for i, script in enumerate(scripts):
        budget = deadline.remaining() / (len(scripts) - i)
        try:
            r = subprocess.run([script], stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=max(0.1, budget), env=dict(ctx.environ))
        except subprocess.TimeoutExpired:
            return Result(OCFExit.ERR_GENERIC, f"monitor script {script} for {name} did not "
                          f"finish in {budget:.1f}s")
        except OSError as exc:
            return Result(OCFExit.ERR_GENERIC, f"monitor script {script} for {name} cannot "
                          f"run: {exc.strerror}")
        if r.returncode != 0:
            out = " ".join((r.stdout + r.stderr).split())[-300:]
            return Result(OCFExit.ERR_GENERIC, f"monitor script {script} for {name} returned "
                          f"{r.returncode}{': ' + out if out else ''}")
        ctx.log.debug(f"monitor script {script} passed")
    return None


def wait_monitor_scripts(ctx: Context, name: str, deadline: Deadline) -> None:
    """start and migrate_from: wait until the monitor scripts pass, inside the deadline."""
    if not ctx.params.monitor_scripts.strip():
        return
    while True:
        failed = run_monitor_scripts(ctx, name, deadline)
        if failed is None:
            return
        if deadline.remaining() < 1.5:
            raise AgentError(f"{failed.reason} (still failing at the end of the timeout)")
        ctx.log.debug(f"{failed.reason}; retrying")
        ctx.sleep(1.0)


def check_monitor_scripts(scripts: str) -> list[str]:
    return [f"monitor script {s} is not an executable file on this node"
            for s in scripts.split() if not (os.path.isfile(s) and os.access(s, os.X_OK))]


# -- config saving ------------------------------------------------------------------------------


def save_config(ctx: Context, dom: Domain, deadline: Deadline) -> None:
    """Write the domain's current (inactive) definition back into the config file, atomically
    (temp file in the same directory, then rename), keeping the file's mode and owner."""
    p = ctx.params
    if not (p.save_config_on_stop or p.sync_config_on_stop):
        return
    try:
        flags = int(dom.hv.libvirt.VIR_DOMAIN_XML_INACTIVE) | \
            int(dom.hv.libvirt.VIR_DOMAIN_XML_SECURE)
        xml = dom.hv.call(lambda: dom.dom.XMLDesc(flags), deadline.bound(5.0), "dump XML")
    except LibvirtFact as fact:
        ctx.log.warning(f"config not saved: cannot read the domain's XML: {fact.message}")
        return
    data = str(xml).encode()
    path = p.config
    try:
        with open(path, "rb") as current:
            if current.read() == data:
                return
        st = os.stat(path)
    except OSError as exc:
        ctx.log.warning(f"config not saved: {path}: {exc.strerror}")
        return
    from .state import atomic_write

    try:
        atomic_write(path, data, mode=st.st_mode & 0o7777, owner=(st.st_uid, st.st_gid))
    except OSError as exc:
        ctx.log.warning(f"config not saved to {path}: {exc.strerror}")
        return
    ctx.log.info(f"saved the domain's configuration to {path}")
    if p.sync_config_on_stop:
        sync_config(ctx, deadline)


def sync_config(ctx: Context, deadline: Deadline) -> None:
    """``csync2 -x CONFIG``, as VirtualDomain runs it: only the domain's config file, not
    every file of every csync2 group (which a bare ``csync2 -x`` checks and pushes). Best
    effort: a peer that accepts the connection and then hangs keeps csync2 waiting forever,
    so it gets at most a quarter of what is left of ``deadline`` (the step that follows, the
    guest's shutdown or its migration, needs the rest), and never more than 10 s."""
    csync2 = shutil.which("csync2", path=ctx.environ.get("PATH") or os.defpath)
    if csync2 is None:
        ctx.log.warning("sync_config_on_stop: csync2 is not installed; config not synced")
        return
    path = ctx.params.config
    timeout_s = min(SUBPROCESS_BOUND_S, deadline.remaining() / 4)
    if timeout_s < 0.5:
        ctx.log.warning(f"no time left to run csync2 -x {path}: config not synced")
        return
    try:
        r = subprocess.run([csync2, "-x", path], stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        ctx.log.warning(f"csync2 -x {path} did not finish within {timeout_s:.1f}s: "
                        "config not synced")
        return
    except OSError as exc:
        ctx.log.warning(f"cannot run csync2: {exc.strerror}; config not synced")
        return
    err = " ".join(r.stderr.split())
    if r.returncode != 0:
        ctx.log.warning(f"csync2 -x {path} failed ({r.returncode}): {err}")
    elif err:  # e.g. "Parameter will be ignored": the file is in no csync2 group
        ctx.log.warning(f"csync2 -x {path}: {err}")
    else:
        ctx.log.info(f"synced {path} to the other nodes with csync2")


# -- snapshot -----------------------------------------------------------------------------------


def snapshot_file(ctx: Context, name: str) -> str:
    return os.path.join(ctx.params.snapshot, f"{name}.state")


def save_snapshot(ctx: Context, dom: Domain, deadline: Deadline) -> bool:
    """Save the guest's RAM state (which also stops it); False when it could not be done."""
    path = snapshot_file(ctx, dom.name)
    try:
        os.makedirs(ctx.params.snapshot, mode=0o700, exist_ok=True)
        ctx.log.info(f"saving the state of {dom.name} to {path}")
        dom.hv.call(lambda: dom.dom.save(path), deadline.remaining(), "save state")
        os.chmod(path, 0o600)
        return True
    except (LibvirtFact, OSError) as exc:
        msg = exc.message if isinstance(exc, LibvirtFact) else str(exc)
        ctx.log.warning(f"cannot save the state of {dom.name}: {msg}; shutting it down")
        return False


def restore_snapshot(ctx: Context, hv: Any, name: str, deadline: Deadline) -> bool:
    """Start from a saved state when one exists; the file is removed once restored."""
    if not ctx.params.snapshot:
        return False
    path = snapshot_file(ctx, name)
    if not os.path.exists(path):
        return False
    ctx.log.info(f"restoring {name} from {path}")
    try:
        hv.call(lambda: hv.conn.restore(path), deadline.remaining(), "restore state")
    except LibvirtFact as f:
        raise AgentError(f"cannot restore {name} from {path}: {f.message} (remove the file to "
                         "start the domain afresh)") from None
    os.unlink(path)
    return True


# -- start_resources ----------------------------------------------------------------------------


def referenced_resources(data: bytes, path: str) -> tuple[list[str], list[str]]:
    """Storage pools and networks a domain XML refers to."""
    from .domxml import _parse

    root = _parse(data, path)
    pools = sorted({str(v) for v in root.xpath("devices/disk/source/@pool")})
    nets = sorted({str(v) for v in root.xpath(
        "devices/interface[@type=$t]/source/@network", t="network")})
    return pools, nets


def start_resources(ctx: Context, hv: Any, data: bytes, path: str, deadline: Deadline) -> None:
    pools, nets = referenced_resources(data, path)
    conn = hv.conn
    for pool_name in pools:
        try:
            pool = hv.call(lambda n=pool_name: conn.storagePoolLookupByName(n),
                           deadline.bound(5.0), "lookup pool")
            if hv.call(pool.isActive, deadline.bound(5.0), "pool state"):
                hv.call(lambda p=pool: p.refresh(0), deadline.bound(30.0), "refresh pool")
            else:
                ctx.log.info(f"starting storage pool {pool_name}")
                hv.call(lambda p=pool: p.create(0), deadline.bound(30.0), "start pool")
        except LibvirtFact as f:
            raise AgentError(f"cannot start storage pool {pool_name} needed by the domain: "
                             f"{f.message}") from None
    for net_name in nets:
        try:
            net = hv.call(lambda n=net_name: conn.networkLookupByName(n), deadline.bound(5.0),
                          "lookup network")
            if not hv.call(net.isActive, deadline.bound(5.0), "network state"):
                ctx.log.info(f"starting network {net_name}")
                hv.call(net.create, deadline.bound(30.0), "start network")
        except LibvirtFact as f:
            raise AgentError(f"cannot start network {net_name} needed by the domain: "
                             f"{f.message}") from None


def check_snapshot(ctx: Context) -> None:
    p = ctx.params
    if not p.snapshot:
        return
    if p.force_stop:
        raise AgentError("snapshot and force_stop exclude each other: a forced stop cannot "
                         "save the guest's state", OCFExit.ERR_CONFIGURED)
    if not os.path.isabs(p.snapshot):
        raise AgentError(f"snapshot={p.snapshot!r} is not an absolute directory path",
                         OCFExit.ERR_CONFIGURED)
    if not os.path.isdir(p.snapshot):
        raise NotInstalled(f"snapshot directory {p.snapshot} does not exist on this node")


# -- backingfile / stateless / copyindirs -------------------------------------------------------


def overlay_path(config: str) -> str:
    """The copy-on-write image beside the config: /etc/vms/web1.xml -> /etc/vms/web1.qcow2
    (VirtualDomain's rule, but cutting only the config's own extension)."""
    directory, base = os.path.split(config)
    stem = base[: -len(".xml")] if base.endswith(".xml") else base
    return os.path.join(directory, f"{stem}.qcow2")


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
