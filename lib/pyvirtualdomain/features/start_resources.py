"""start_resources: the storage pools and networks a domain refers to, started first."""

from __future__ import annotations

from ..core.context import QUERY_BOUND_S, Context
from ..deadline import Deadline
from ..errors import AgentError, LibvirtFact
from ..virt.connection import Hypervisor
from ..virt.devices import referenced_resources

# Starting a pool mounts or scans storage; a network starts dnsmasq: slower than a query.
RESOURCE_START_BOUND_S = 30.0


def start_resources(ctx: Context, hv: Hypervisor, data: bytes, path: str,
                    deadline: Deadline) -> None:
    """Start (or refresh) every pool and network the domain XML refers to on ``hv``."""
    needs = referenced_resources(data, path)
    for pool in needs.pools:
        try:
            if hv.pool_is_active(pool, deadline.bound(QUERY_BOUND_S)):
                hv.refresh_pool(pool, deadline.bound(RESOURCE_START_BOUND_S))
            else:
                ctx.log.info(f"starting storage pool {pool} on {hv.uri}")
                hv.start_pool(pool, deadline.bound(RESOURCE_START_BOUND_S))
        except LibvirtFact as f:
            raise AgentError(f"cannot start storage pool {pool} needed by the domain: "
                             f"{f.message}") from None
    for net in needs.networks:
        try:
            if not hv.network_is_active(net, deadline.bound(QUERY_BOUND_S)):
                ctx.log.info(f"starting network {net} on {hv.uri}")
                hv.start_network(net, deadline.bound(RESOURCE_START_BOUND_S))
        except LibvirtFact as f:
            raise AgentError(f"cannot start network {net} needed by the domain: "
                             f"{f.message}") from None
