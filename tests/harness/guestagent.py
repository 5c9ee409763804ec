"""Talking to the qemu guest agent of a test guest (``GuestOptions(agent=True)``) through
libvirt, as the agent under test does: ``virDomainQemuAgentCommand``. Every call is bounded
(a hung agent or libvirtd never answers) and uses a fresh connection."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Mapping

from .common import DEFAULT_URI, CallTimeout, HarnessError, wait_until
from .domains import import_libvirt, with_connection
from .guest import AGENT_CHANNEL, AGENT_STOPPED_MARKER, console_text

# What stop_guest_agent may do to qemu-ga inside the guest.
STOP_SIGNALS = {"kill": "KILL",  # the agent died: its port closes, libvirt sees it disconnect
                "freeze": "STOP"}  # it hangs: the port stays open, nothing answers


class AgentError(HarnessError):
    """The guest agent answered with an error, or libvirt could not reach it."""


def _timeout_arg(timeout_s: float) -> int:
    # virDomainQemuAgentCommand takes whole seconds (0 and negatives are special values).
    return max(1, math.ceil(timeout_s))


def agent_command(name: str, command: Mapping[str, Any], timeout_s: float = 5.0,
                  uri: str = DEFAULT_URI) -> Any:
    """Send ``command`` (``{"execute": ..., "arguments": ...}``) to the guest agent of the
    domain ``name``; the reply's ``return`` value. libvirt waits up to ``timeout_s`` for the
    agent; the whole call is bounded a little beyond that. Raises AgentError (libvirt's
    error, or the agent's) or CallTimeout."""
    libvirt = import_libvirt()
    import libvirt_qemu

    text = json.dumps(dict(command))

    def call(conn: Any) -> Any:
        dom = conn.lookupByName(name)
        try:
            reply = libvirt_qemu.qemuAgentCommand(dom, text, _timeout_arg(timeout_s), 0)
        except libvirt.libvirtError as exc:
            raise AgentError(f"{command.get('execute')} on {name}: {exc} "
                             f"(code {exc.get_error_code()})") from None
        if reply is None:
            raise AgentError(f"{command.get('execute')} on {name}: no reply")
        parsed = json.loads(reply)
        if "error" in parsed:
            raise AgentError(f"{command.get('execute')} on {name}: {parsed['error']}")
        return parsed.get("return")

    return with_connection(call, uri, timeout_s + 10.0, f"agent command on {name}")


def guest_agent_ping(name: str, timeout_s: float = 3.0, uri: str = DEFAULT_URI) -> bool:
    """Whether the guest agent answers ``guest-ping`` within about ``timeout_s``.

    libvirt 9.0 first sends guest-sync and waits up to 5 s for it whatever timeout the
    caller asks for: against a hung (SIGSTOPped) agent this takes 5 s, not ``timeout_s``
    (measured here); a killed agent (channel disconnected) fails at once."""
    try:
        agent_command(name, {"execute": "guest-ping"}, timeout_s, uri)
        return True
    except (AgentError, CallTimeout):
        return False


def agent_channel_state(name: str, uri: str = DEFAULT_URI) -> str | None:
    """libvirt's view of the agent channel in the live XML: "connected" (qemu-ga has the port
    open), "disconnected", or None (no agent channel, or domain not running)."""

    def read(conn: Any) -> str | None:
        root = ET.fromstring(conn.lookupByName(name).XMLDesc(0))
        for target in root.iterfind("./devices/channel/target"):
            if target.get("name") == AGENT_CHANNEL:
                return target.get("state")
        return None

    return with_connection(read, uri, 10.0, f"agent channel of {name}")


def guest_exec(name: str, path: str, args: tuple[str, ...] | list[str] = (),
               timeout_s: float = 5.0, uri: str = DEFAULT_URI) -> int:
    """Start ``path args...`` inside the guest through the agent (guest-exec, output not
    captured); the guest pid. It runs on its own: this does not wait for it."""
    result = agent_command(name, {"execute": "guest-exec",
                                  "arguments": {"path": path, "arg": list(args),
                                                "capture-output": False}}, timeout_s, uri)
    return int(result["pid"])


def stop_guest_agent(name: str, console_log: Path | str, how: str = "kill",
                     timeout_s: float = 30.0, uri: str = DEFAULT_URI) -> None:
    """Stop qemu-ga inside the running guest ``name`` and check that it stopped: the guest
    says so on its console and the agent no longer answers guest-ping (and, when killed,
    libvirt sees the channel disconnected). ``how``: "kill" (the agent crashed) or "freeze"
    (SIGSTOP: the agent hangs with its port open)."""
    if how not in STOP_SIGNALS:
        raise ValueError(f"how={how!r}: one of {sorted(STOP_SIGNALS)}")
    sig = STOP_SIGNALS[how]
    before = console_text(console_log).count(AGENT_STOPPED_MARKER)
    # The script waits half a second first, so qemu-ga sends guest-exec's reply before
    # the signal arrives.
    guest_exec(name, "/etc/harness/stop-agent.sh", [sig, "0.5"], uri=uri)
    if not wait_until(lambda: console_text(console_log).count(AGENT_STOPPED_MARKER) > before,
                      timeout_s, 0.1):
        raise HarnessError(f"{name}: no {AGENT_STOPPED_MARKER!r} on the console within "
                           f"{timeout_s:.0f}s")
    if how == "kill" and not wait_until(lambda: agent_channel_state(name, uri) ==
                                        "disconnected", timeout_s, 0.2):
        raise HarnessError(f"{name}: libvirt still sees the agent channel "
                           f"{agent_channel_state(name, uri)!r} after the agent was killed")
    if guest_agent_ping(name, 2.0, uri):
        raise HarnessError(f"{name}: the guest agent still answers after {how}")
