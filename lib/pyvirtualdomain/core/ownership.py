"""Finding this resource's domain by its owner tag (owner.py), for the actions that have
neither the config file nor a state record: stop, monitor (the probe above all) and
migrate_from. Without them the agent would not know the domain's name, and "no config, no
record" is no proof that nothing of the resource runs here: the config may sit on storage not
mounted on this node while the guest was migrated in, or the record could not be written.

The search asks libvirt for every active domain's tag; when libvirt cannot be asked it reads
libvirtd's status files (virt/status.py) and the caller checks the processes of what it
found. It runs only on that path: the normal one (config or record) never pays for it."""

from __future__ import annotations

from ..deadline import Deadline
from ..errors import UNREACHABLE, DomainNotFound, LibvirtFact
from ..owner import Owner, local_cluster_name
from ..tuples import NamedTuple
from ..uri import is_local_uri
from ..virt.domain import Domain
from ..virt.domxml import DomainIdentity
from ..virt.status import scan_status_files
from .context import QUERY_BOUND_S, Context
from .record import ConfigStamp
from .target import Target, close, connect

# The identity used to pick the hypervisor URI when there is no config to read the domain's
# type from: the agent's fixed default, the hypervisor parameter, or libvirt's default URI
# for a qemu/KVM domain.
_UNKNOWN_DOMAIN = DomainIdentity("", None, "kvm")


def resource_owner(ctx: Context) -> Owner:
    return Owner(ctx.env.instance, ctx.profile.agent_name, local_cluster_name())


class OwnedSearch(NamedTuple):
    """What the owner-tag search found on this host."""

    targets: tuple[Target, ...]
    # Nothing of the resource runs here, proven: libvirt listed every active domain, or it
    # is verifiably unreachable (no socket, refused) and none of its status files has the tag.
    absent_proven: bool
    how: str  # how the search was done, or why it could not be, for messages


def tag_domain(ctx: Context, dom: Domain, deadline: Deadline) -> None:
    """Make a running domain this agent adopts (found running by start or a probe, arrived
    by migration) carry the resource's owner tag. Best effort: a domain without it is still
    found by its config or record."""
    owner = resource_owner(ctx)
    try:
        current = dom.owner(deadline.bound(QUERY_BOUND_S))
        if current == owner:
            return
        if current is not None and not current.same_resource(owner):
            ctx.log.warning(f"domain {dom.name} carries the owner tag of "
                            f"{current.describe()}: replacing it with this resource's")
        dom.set_owner(owner, deadline.bound(QUERY_BOUND_S))
        ctx.log.debug(f"domain {dom.name} tagged as {owner.describe()}")
    except LibvirtFact as f:
        ctx.log.warning(f"cannot tag domain {dom.name} with its owner: {f.message}")


def _search_uri(ctx: Context) -> tuple[str, str | None]:
    choice = ctx.hypervisor_for(_UNKNOWN_DOMAIN)
    return choice.uri, choice.problem


def _virt_type(uri: str) -> str:
    driver = uri.split(":", 1)[0].split("+", 1)[0]
    return "lxc" if driver == "lxc" else driver


def _owner_target(ident: DomainIdentity, uri: str, config: str) -> Target:
    # Pinned to the uuid found: the domain is this one, never another of the same name.
    return Target(ident, uri, "owner", unrecorded=ConfigStamp(config, 0, -1),
                  uuid_from_config=True)


def _from_status_files(ctx: Context, uri: str, owner: Owner, why: str,
                       proof: bool) -> OwnedSearch:
    """libvirt cannot be asked (``why``): read its status files. ``proof``: libvirt is
    verifiably unreachable, so a tagless status directory proves absence."""
    if not is_local_uri(uri):
        return OwnedSearch((), False, f"{why}; remote hypervisor, no status files to read")
    scan = scan_status_files(uri, owner)
    targets = tuple(_owner_target(i, uri, ctx.params.config) for i in scan.found)
    if targets:
        names = ", ".join(t.ident.name for t in targets)
        return OwnedSearch(targets, False, f"{why}; libvirt's status files name {names}")
    if scan.directory is None:
        return OwnedSearch((), False, f"{why}; no status files known for {uri}")
    if not scan.exists:
        # /run is a tmpfs: no daemon of this driver has run a domain since the host booted
        return OwnedSearch((), True, f"{why}; no domain has run through {uri} since boot "
                                     f"({scan.directory} does not exist)")
    if not scan.complete:
        return OwnedSearch((), False, f"{why}; {scan.directory} cannot be read whole")
    return OwnedSearch((), proof, f"{why}; no status file in {scan.directory} carries the "
                                  "tag")


def find_owned(ctx: Context, deadline: Deadline) -> OwnedSearch:
    """The domains on this host that carry the resource's owner tag."""
    owner = resource_owner(ctx)
    uri, problem = _search_uri(ctx)
    if problem:
        return OwnedSearch((), False, f"hypervisor URI unusable: {problem}")
    hv = None
    try:
        hv = connect(ctx, uri, deadline, retry_for_s=0.0)
        found: list[Target] = []
        for dom in Domain.running(hv, deadline.bound(QUERY_BOUND_S)):
            try:
                tagged = dom.owner(deadline.bound(QUERY_BOUND_S))
                if tagged is None or not owner.same_resource(tagged):
                    continue
                ident = DomainIdentity(dom.name, dom.uuid(), _virt_type(uri))
            except DomainNotFound:
                continue  # stopped since it was listed
            found.append(_owner_target(ident, uri, ctx.params.config))
        how = f"searched {uri} for domains tagged as {owner.describe()}"
        return OwnedSearch(tuple(found), not found, how)
    except UNREACHABLE as f:
        from .last_resort import verifiably_unreachable

        return _from_status_files(ctx, uri, owner, f"libvirt at {uri} unreachable: "
                                  f"{f.message}", verifiably_unreachable(f))
    except LibvirtFact as f:
        return _from_status_files(ctx, uri, owner, f"libvirt at {uri} cannot be asked: "
                                  f"{f.message}", False)
    except ImportError:
        # No agent can have started the domain through this node's libvirt-python: a
        # complete status directory without the tag is proof enough.
        return _from_status_files(ctx, uri, owner, "libvirt-python is not installed", True)
    finally:
        close(hv)
