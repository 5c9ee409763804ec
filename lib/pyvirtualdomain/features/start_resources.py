"""start_resources: the storage pools and networks a domain refers to, started first."""

from __future__ import annotations

from typing import Any

from ..core.context import Context
from ..deadline import Deadline
from ..errors import AgentError, LibvirtFact


def referenced_resources(data: bytes, path: str) -> tuple[list[str], list[str]]:
    """Storage pools and networks a domain XML refers to."""
    from ..virt.domxml import _parse

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
