"""Test harness for PyVirtualDomain: a real libvirtd, tiny real guests, and the agent run as
Pacemaker runs it. Used by tests/integration, the demo and the benchmarks (no pytest here)."""

from .agent import AgentHung, AgentResult, exit_reason, run_agent
from .common import (
    DEFAULT_CACHE_DIR,
    DEFAULT_RUN_DIR,
    DEFAULT_URI,
    REPO_ROOT,
    HarnessError,
    HostLock,
)
from .domains import (
    DomainFacts,
    create_transient,
    define_persistent,
    domain_facts,
    domain_state,
    domain_state_reason,
    kill_qemu,
    paused_reason,
    qemu_pids,
    remove_domain,
    wait_for_state,
)
from .events import DomainEvent, DomainEvents
from .guest import (
    ACPID_MARKER,
    AGENT_MARKER,
    AGENT_STOPPED_MARKER,
    FILL_MARKER,
    INIT_MARKER,
    MODULE_FAILED_MARKER,
    POWERBUTTON_MARKER,
    SBIN_SHUTDOWN_MARKER,
    SHUTDOWN_MARKER,
    SLOW_POWEROFF_MARKER,
    SLOW_STOP_MARKER,
    WATCHDOG_MARKER,
    WATCHDOG_STOPPED_MARKER,
    GuestArtifacts,
    GuestOptions,
    build_artifacts,
    console_text,
    detect_virt_type,
    domain_xml,
    wait_for_console,
)
from .guestagent import (
    AgentError,
    agent_channel_state,
    agent_command,
    guest_agent_ping,
    guest_exec,
    stop_guest_agent,
)
from .guestnet import GuestNetwork
from .libvirtd import Libvirtd
from .resource import GuestResource, new_guest_resource
from .smallfs import SmallFilesystem

__all__ = [
    "ACPID_MARKER", "AGENT_MARKER", "AGENT_STOPPED_MARKER", "DEFAULT_CACHE_DIR",
    "DEFAULT_RUN_DIR", "DEFAULT_URI", "FILL_MARKER", "INIT_MARKER", "MODULE_FAILED_MARKER",
    "POWERBUTTON_MARKER", "REPO_ROOT", "SBIN_SHUTDOWN_MARKER", "SHUTDOWN_MARKER",
    "SLOW_POWEROFF_MARKER", "SLOW_STOP_MARKER", "WATCHDOG_MARKER", "WATCHDOG_STOPPED_MARKER",
    "AgentError", "AgentHung", "AgentResult", "DomainEvent", "DomainEvents", "DomainFacts",
    "GuestArtifacts", "GuestNetwork", "GuestOptions", "GuestResource", "HarnessError",
    "HostLock", "Libvirtd", "SmallFilesystem", "agent_channel_state", "agent_command",
    "build_artifacts", "console_text", "create_transient", "define_persistent",
    "detect_virt_type", "domain_facts", "domain_state", "domain_state_reason", "domain_xml",
    "exit_reason", "guest_agent_ping", "guest_exec", "kill_qemu", "new_guest_resource",
    "paused_reason", "qemu_pids", "remove_domain", "run_agent", "stop_guest_agent",
    "wait_for_console", "wait_for_state",
]
