"""save_config_on_stop / sync_config_on_stop: the domain's live definition written back to
the config file, and pushed to the other nodes with csync2: on stop, before a migration, after
a migration arrived, and on a monitor that finds the definition changed (a disk hot-plugged
with virsh attach-disk --config survives a fenced node), as VirtualDomain does. Written only
when it differs from the file."""

from __future__ import annotations

import os

from ..core.context import QUERY_BOUND_S, Context
from ..deadline import Deadline
from ..errors import LibvirtFact
from ..virt.domain import Domain
from ..virt.domxml import without_owner

SUBPROCESS_BOUND_S = 10.0


def save_config(ctx: Context, dom: Domain, deadline: Deadline) -> None:
    """Write the domain's current (inactive) definition back into the config file: through a
    symlink to the file it names (configs often link to shared storage), atomically, keeping
    the file's mode and owner (fileio.replace_file)."""
    p = ctx.params
    if not (p.save_config_on_stop or p.sync_config_on_stop):
        return
    try:
        xml = dom.xml_desc(deadline.bound(QUERY_BOUND_S), inactive=True, secure=True)
    except LibvirtFact as fact:
        ctx.log.warning(f"config not saved: cannot read the domain's XML: {fact.message}")
        return
    data = without_owner(str(xml)).encode()
    path = p.config
    try:
        with open(path, "rb") as current:
            if current.read() == data:
                return
    except OSError as exc:
        ctx.log.warning(f"config not saved: {path}: {exc.strerror}")
        return
    try:
        # What libvirt shows only with the secure flag (VNC/SPICE passwords, ...): a file
        # holding any of it is readable by its owner only.
        secrets = xml != dom.xml_desc(deadline.bound(QUERY_BOUND_S), inactive=True)
    except LibvirtFact as fact:
        ctx.log.warning(f"config not saved: cannot read the domain's XML: {fact.message}")
        return
    from ..fileio import replace_file

    try:
        written = replace_file(path, data, private=secrets)
    except OSError as exc:
        ctx.log.warning(f"config not saved to {path}: {exc.strerror}")
        return
    ctx.log.info(f"saved the domain's configuration to {path}"
                 f"{f' (the file it links to: {written})' if written != path else ''}"
                 f"{'; it holds secrets: readable by its owner only' if secrets else ''}")
    if p.sync_config_on_stop:
        sync_config(ctx, deadline)


def save_config_if_readable(ctx: Context, dom: Domain, deadline: Deadline) -> None:
    """A monitor's save: only while the config file is there to compare with (a config on
    storage not mounted here is not written, and not complained about every monitor)."""
    if os.access(ctx.params.config, os.R_OK):
        save_config(ctx, dom, deadline)


def sync_config(ctx: Context, deadline: Deadline) -> None:
    """``csync2 -x CONFIG``, as VirtualDomain runs it: only the domain's config file, not
    every file of every csync2 group (which a bare ``csync2 -x`` checks and pushes). Best
    effort: a peer that accepts the connection and then hangs keeps csync2 waiting forever,
    so it gets at most a quarter of what is left of ``deadline`` (the step that follows, the
    guest's shutdown or its migration, needs the rest), and never more than 10 s."""
    import shutil
    import subprocess

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
