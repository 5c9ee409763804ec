"""One cluster resource as the tests see it: a guest's XML file on disk plus the agent
parameters, state directory and instance name that Pacemaker would pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .agent import AgentResult, run_agent
from .common import DEFAULT_URI
from .domains import (
    DomainFacts,
    domain_facts,
    domain_state,
    paused_reason,
    qemu_pids,
    remove_domain,
)
from .guest import GuestArtifacts, GuestOptions, console_text, domain_xml, wait_for_console
from .guestagent import guest_agent_ping, stop_guest_agent


@dataclass
class GuestResource:
    name: str  # the domain's <name>
    mode: str  # "graceful" or "ignore" (see guest.py)
    config: Path  # the domain XML file (OCF_RESKEY_config)
    console_log: Path
    state_dir: Path  # HA_RSCTMP
    instance: str  # OCF_RESOURCE_INSTANCE
    uri: str = DEFAULT_URI
    agent: str = "PyVirtualDomain"
    params: dict[str, str] = field(default_factory=dict)
    options: GuestOptions = field(default_factory=GuestOptions)

    def run(self, action: str, *, timeout_ms: int | None = None, interval_ms: int | None = None,
            params: Mapping[str, str | None] | None = None,
            env_extra: Mapping[str, str] | None = None) -> AgentResult:
        """Run the agent on this resource; ``params`` adds to (or, with None, removes from)
        the resource's parameters for this run only."""
        merged: dict[str, str] = dict(self.params)
        for key, value in (params or {}).items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return run_agent(action, merged, timeout_ms=timeout_ms, interval_ms=interval_ms,
                         instance=self.instance, state_dir=self.state_dir,
                         env_extra=env_extra, agent=self.agent)

    def facts(self) -> DomainFacts | None:
        return domain_facts(self.name, self.uri)

    def state(self) -> str | None:
        return domain_state(self.name, self.uri)

    def paused_reason(self) -> str | None:
        """"ioerror", "watchdog", "user", ... while paused, else None."""
        return paused_reason(self.name, self.uri)

    def agent_ping(self, timeout_s: float = 3.0) -> bool:
        """Whether the guest agent answers guest-ping through libvirt (bounded)."""
        return guest_agent_ping(self.name, timeout_s, self.uri)

    def stop_agent(self, how: str = "kill") -> None:
        """Kill (or freeze: how="freeze") qemu-ga inside the guest and check it stopped."""
        stop_guest_agent(self.name, self.console_log, how, uri=self.uri)

    def console(self) -> str:
        return console_text(self.console_log)

    def wait_console(self, marker: str, timeout_s: float) -> bool:
        return wait_for_console(self.console_log, marker, timeout_s)

    def qemu_pids(self) -> list[int]:
        return qemu_pids(self.name)

    def remove(self) -> list[str]:
        return remove_domain(self.name, self.uri)


def new_guest_resource(workdir: Path, name: str, mode: str, artifacts: GuestArtifacts,
                       virt_type: str, *, uri: str = DEFAULT_URI, uuid: str | None = None,
                       memory_mib: int = 128,
                       options: GuestOptions | None = None) -> GuestResource:
    """Write ``workdir/<name>.xml`` for a test guest and describe it as a resource;
    ``options``: agent, watchdog, disk, ... (see GuestOptions)."""
    options = options or GuestOptions()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / f"{name}.xml"
    console_log = workdir / f"{name}.console.log"
    state_dir = workdir / "rsctmp"
    state_dir.mkdir(exist_ok=True)
    config.write_text(domain_xml(name, mode, artifacts, virt_type, console_log, uuid=uuid,
                                 memory_mib=memory_mib, options=options))
    return GuestResource(name=name, mode=mode, config=config, console_log=console_log,
                         state_dir=state_dir, instance=f"vm-{name}", uri=uri,
                         params={"config": str(config), "hypervisor": uri}, options=options)
