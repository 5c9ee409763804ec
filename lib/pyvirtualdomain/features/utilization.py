"""The resource's utilization attributes (cpu, host_memory, hv_memory), kept in step with the
domain as VirtualDomain's autoset_/unset_utilization_* parameters ask.

This runs on every recurring monitor under Pacemaker, so it is cheap when nothing changed:
one libvirt call for the domain's vCPUs and memory, compared with what this agent last wrote
(remembered beside the state record); ``crm_resource`` (and the subprocess module) only when a
value changed. Where this agent has nothing remembered (the first monitor after a start or a
migration here), one ``cibadmin`` query reads what the CIB holds, and only what differs is
written: after a live migration the source's agent has written the same values already, and
this monitor is what Pacemaker waits for before the next migration to this node.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..core.context import QUERY_BOUND_S
from ..core.record import sibling
from ..errors import LibvirtFact
from ..fileio import atomic_write, dump_fields, parse_fields

if TYPE_CHECKING:
    from ..core.context import Context
    from ..deadline import Deadline
    from ..virt.domain import Domain

ATTRS = ("cpu", "host_memory", "hv_memory")
# crm_resource's exit code when there is no CIB to talk to (CRM_EX_NOT_CONNECTED).
CRM_EX_NOT_CONNECTED = 102
# ... and when the attribute to delete does not exist (CRM_EX_NOSUCH), which is what we want.
CRM_EX_NOSUCH = 105
CRM_RESOURCE_BOUND_S = 10.0

# What the cache holds per attribute: the value written, or None once deleted.
Cache = dict[str, "int | None"]


def cache_path(ctx: Context) -> str:
    return sibling(ctx.record_path, ".utilization")


def _load_cache(path: str) -> Cache:
    try:
        with open(path, "rb") as f:
            raw = parse_fields(f.read(4096))
        return {k: int(v) if v else None for k, v in raw.items() if k in ATTRS}
    except (OSError, ValueError):
        return {}


def _save_cache(ctx: Context, path: str, cache: Cache) -> None:
    """Remember what was written. Best effort: without the cache the next monitor only
    writes the same values again (HA_RSCTMP full or read-only must not fail a monitor)."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, dump_fields({k: "" if v is None else str(v)
                                        for k, v in cache.items()}), mode=0o644)
    except OSError as exc:
        ctx.log.warning(f"cannot keep the utilization cache {path}: {exc.strerror} (the "
                        "attributes are written again by the next monitor)")


def _crm_resource(ctx: Context, args: list[str], timeout_s: float) -> tuple[int, str]:
    import shutil
    import subprocess

    exe = shutil.which("crm_resource", path=ctx.environ.get("PATH") or os.defpath)
    if exe is None:
        return 127, "crm_resource not found"
    try:
        r = subprocess.run([exe, "--resource", ctx.env.instance, "--utilization", *args],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=max(0.5, timeout_s), env=_tool_env(ctx))
    except subprocess.TimeoutExpired:
        return 124, f"crm_resource did not answer in {timeout_s:.0f}s"
    lines = (r.stderr or r.stdout).strip().splitlines()
    return r.returncode, lines[-1] if lines else ""


def _tool_env(ctx: Context) -> dict[str, str]:
    return {k: v for k, v in ctx.environ.items() if not k.startswith("OCF_RESKEY_")}


def _cib_values(ctx: Context, timeout_s: float) -> dict[str, str] | None:
    """The resource's utilization attributes as the CIB holds them now, by one ``cibadmin``
    query; None when that cannot be told for sure (no CIB, no cibadmin, several sets or
    rules: then every attribute is written as before)."""
    import shutil
    import subprocess

    rsc = ctx.env.instance.split(":", 1)[0]  # a clone instance "vm:1" is primitive "vm"
    exe = shutil.which("cibadmin", path=ctx.environ.get("PATH") or os.defpath)
    if exe is None or not rsc or "'" in rsc:
        return None
    try:
        r = subprocess.run([exe, "--query", "--xpath", f"//primitive[@id='{rsc}']/utilization"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=max(0.5, timeout_s), env=_tool_env(ctx))
    except subprocess.TimeoutExpired:
        return None
    if r.returncode == CRM_EX_NOSUCH:
        return {}  # no utilization set: nothing is written there yet
    if r.returncode != 0:
        return None
    import xml.etree.ElementTree as ET  # only here: a monitor otherwise parses no XML

    try:
        root = ET.fromstring(r.stdout)
    except ET.ParseError:
        return None
    sets = [root] if root.tag == "utilization" else root.findall("utilization")
    if len(sets) != 1 or sets[0].find(".//rule") is not None:
        return None
    values: dict[str, str] = {}
    for nv in sets[0].iter("nvpair"):
        name, value = nv.get("name"), nv.get("value")
        if name is None or value is None or name in values:
            return None
        values[name] = value
    return values


def update(ctx: Context, dom: Domain, deadline: Deadline) -> None:
    """Write the attributes that differ from what this agent last wrote; delete those asked
    to be unset. Only under Pacemaker (or with CIB_file): elsewhere there is no CIB."""
    p = ctx.params
    want_set = [a for a in ATTRS if getattr(p, f"autoset_utilization_{a}")]
    want_unset = [a for a in ATTRS
                  if getattr(p, f"unset_utilization_{a}") and a not in want_set]
    if not (want_set or want_unset) or not ctx.env.under_pacemaker:
        return
    path = cache_path(ctx)
    cache = _load_cache(path)
    values: dict[str, int] = {}
    if want_set:
        try:
            info = dom.info(deadline.bound(QUERY_BOUND_S))
        except LibvirtFact as f:
            ctx.log.debug(f"utilization not updated: {f.message}")
            return
        # the maximum, as VirtualDomain ("Max memory"): the current one of a container changes
        # all the time, and every change is a CIB write that aborts Pacemaker's transition
        mem_mib = info.max_memory_kib // 1024
        values = {"cpu": info.vcpus, "host_memory": mem_mib, "hv_memory": mem_mib}
    changed = False
    in_cib: dict[str, str] | None = None
    if any(cache.get(a) != values[a] for a in want_set) or \
            any(not (a in cache and cache[a] is None) for a in want_unset):
        # Nothing remembered for some of them: what the CIB holds decides what to write.
        in_cib = _cib_values(ctx, deadline.bound(CRM_RESOURCE_BOUND_S))
    for attr in want_set:
        if cache.get(attr) == values[attr]:
            continue
        if in_cib is not None and in_cib.get(attr) == str(values[attr]):
            cache[attr] = values[attr]
            changed = True
            continue
        rc, out = _crm_resource(ctx, ["--set-parameter", attr, "--parameter-value",
                                      str(values[attr])], deadline.bound(CRM_RESOURCE_BOUND_S))
        if rc == 0:
            ctx.log.info(f"utilization {attr}={values[attr]}")
            cache[attr] = values[attr]
            changed = True
        elif rc == CRM_EX_NOT_CONNECTED:
            ctx.log.debug(f"utilization {attr} not set: the CIB is not available ({out})")
            break
        else:
            ctx.log.warning(f"cannot set utilization {attr}: {out}")
    for attr in want_unset:
        if attr in cache and cache[attr] is None:
            continue
        if in_cib is not None and attr not in in_cib:
            cache[attr] = None
            changed = True
            continue
        rc, out = _crm_resource(ctx, ["--delete-parameter", attr],
                                deadline.bound(CRM_RESOURCE_BOUND_S))
        if rc in (0, CRM_EX_NOSUCH):
            cache[attr] = None
            changed = True
        else:
            ctx.log.warning(f"cannot delete utilization {attr}: {out}")
    if changed:
        _save_cache(ctx, path, cache)


def forget(ctx: Context) -> None:
    """After a stop: the next start writes the attributes again."""
    for path in (cache_path(ctx), sibling(ctx.record_path, ".utilization.json")):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            ctx.log.warning(f"cannot remove the utilization cache {path}: {exc.strerror}")
