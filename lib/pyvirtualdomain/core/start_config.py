"""The config file as the actions that may create the domain (start, validate-all) read it:
every check that needs no libvirt."""

from __future__ import annotations

from ..errors import ConfigError
from ..tuples import NamedTuple
from ..virt.domxml import ConfigFile, DomainIdentity, load_domain
from .context import Context
from .target import check_uri, check_virt_type


class StartConfig(NamedTuple):
    """The config file as start and validate-all read it: every check that needs no libvirt
    passed."""

    cfg: ConfigFile
    ident: DomainIdentity
    uri: str
    xml: str


def read_start_config(ctx: Context) -> StartConfig:
    """Read and check the config file for an action that may create the domain: well-formed,
    a type this agent handles, a usable hypervisor URI (local for a guest node), UTF-8."""
    cfg, ident = load_domain(ctx.params.config)
    check_virt_type(ctx, ident, cfg.path)
    choice = ctx.hypervisor_for(ident)
    check_uri(ctx, choice)
    try:
        xml = cfg.data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config {cfg.path} is not UTF-8 text") from None
    return StartConfig(cfg, ident, choice.uri, xml)
