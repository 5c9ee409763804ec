"""Agent errors, and the one place that turns a libvirtError into one of them.

libvirt errors are classified by (code, error domain, errno), never by message text; the
message only goes into the human-readable reason.
"""

from __future__ import annotations

import errno
from typing import Any

from .ocf import OCFExit


class AgentError(Exception):
    """An outcome that ends the action with ``rc`` and a one-line ``reason``."""

    rc: OCFExit = OCFExit.ERR_GENERIC

    def __init__(self, reason: str, rc: OCFExit | None = None) -> None:
        super().__init__(reason)
        self.reason = " ".join(reason.split())
        if rc is not None:
            self.rc = rc


class ConfigError(AgentError):
    """Configuration that is wrong wherever the resource runs (fatal cluster-wide)."""

    rc = OCFExit.ERR_CONFIGURED


class NotInstalled(AgentError):
    """Something this node lacks (file, program, driver); the resource may run elsewhere."""

    rc = OCFExit.ERR_INSTALLED


class PermissionProblem(AgentError):
    rc = OCFExit.ERR_PERM


class ArgsError(AgentError):
    rc = OCFExit.ERR_ARGS


class NotRunning(AgentError):
    """The domain does not run here (monitor): what a probe or monitor answers with 7."""

    rc = OCFExit.NOT_RUNNING


# Facts about the hypervisor, raised by the wrappers; actions.py decides what they mean.
class LibvirtFact(Exception):
    def __init__(self, message: str, code: int = -1, errno_: int = -1) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())
        self.code = code
        self.errno = errno_


class DomainNotFound(LibvirtFact):
    pass


class OperationInvalid(LibvirtFact):
    """libvirt refuses the operation in the domain's current state: destroy of a shut-off
    domain, but also shutdown of a paused or still starting one. Not proof that it is off."""


class HypervisorUnavailable(LibvirtFact):
    """libvirtd cannot be reached: socket missing, refused, connection dropped."""


class HypervisorTimeout(LibvirtFact):
    """libvirtd is hung: a call did not return within its bound and a liveness call on a
    connection of its own did not answer either."""


class CallTimedOut(LibvirtFact):
    """A call did not return within its bound, but libvirtd answers a liveness call: the
    call is slow (it waits for the guest, or for the domain's job lock), not the daemon."""


class ClientMisconfigured(LibvirtFact):
    """libvirt's client configuration on this node (libvirt.conf) cannot be read: every
    connection fails before reaching the daemon, which may still run domains."""


class DomainBusy(LibvirtFact):
    """libvirt could not get the domain's job lock in its own time (a start, migration or
    other job holds it): the domain is in the middle of something, state unknown."""


class GuestNotResponding(LibvirtFact):
    """libvirt answered, but the guest (or its agent) did not, in libvirt's own time limit."""


class HypervisorDenied(LibvirtFact):
    """Authentication or access control refused us."""


class DriverMissing(LibvirtFact):
    """No libvirt driver for the URI on this node."""


class UnsupportedOperation(LibvirtFact):
    """The driver or guest does not support this (e.g. a shutdown mode)."""


class InvalidArgument(UnsupportedOperation):
    """libvirt's VIR_ERR_INVALID_ARG: what drivers raise for flags they do not support (a
    shutdown mode), and for values in a domain XML they cannot take (<memory unit='XB'>)."""


class InvalidDomainXML(LibvirtFact):
    """libvirt rejected the domain XML."""


class NoMetadata(LibvirtFact):
    """The domain carries no metadata element of the namespace asked for."""


class OperationFailed(LibvirtFact):
    """Any other libvirt failure."""


# libvirt cannot be asked at all: no daemon, a frozen one, or no driver for the URI here.
UNREACHABLE = (HypervisorUnavailable, HypervisorTimeout, DriverMissing)


def _codes(libvirt: Any, *names: str) -> frozenset[int]:
    return frozenset(getattr(libvirt, n) for n in names if hasattr(libvirt, n))


def classify_libvirt_error(exc: Any, libvirt: Any) -> LibvirtFact:
    """Map a ``libvirt.libvirtError`` to a fact by its error code, domain and errno."""
    err: tuple[Any, ...] = tuple(getattr(exc, "err", None) or ())
    code = err[0] if len(err) > 0 and err[0] is not None else -1
    domain = err[1] if len(err) > 1 and err[1] is not None else -1
    int1 = err[7] if len(err) > 7 and err[7] is not None else -1
    message = (err[2] if len(err) > 2 and err[2] else None) or str(exc) or "libvirt error"

    if code in _codes(libvirt, "VIR_ERR_CONF_SYNTAX") or domain in _codes(libvirt,
                                                                         "VIR_FROM_CONF"):
        return ClientMisconfigured(message, code)
    if code in _codes(libvirt, "VIR_ERR_NO_DOMAIN_METADATA"):
        return NoMetadata(message, code)
    if code in _codes(libvirt, "VIR_ERR_NO_DOMAIN"):
        return DomainNotFound(message, code)
    if code in _codes(libvirt, "VIR_ERR_OPERATION_INVALID"):
        return OperationInvalid(message, code)
    if code in _codes(
        libvirt, "VIR_ERR_AUTH_FAILED", "VIR_ERR_AUTH_CANCELLED", "VIR_ERR_AUTH_UNAVAILABLE",
        "VIR_ERR_ACCESS_DENIED",
    ):
        return HypervisorDenied(message, code)
    if domain in _codes(libvirt, "VIR_FROM_AUTH", "VIR_FROM_POLKIT", "VIR_FROM_DBUS"):
        # The daemon's authentication/authorisation path failed (e.g. polkit without a
        # system bus for an unprivileged caller): we may not use this hypervisor.
        return HypervisorDenied(message, code)
    if code in _codes(libvirt, "VIR_ERR_NO_CONNECT"):
        return DriverMissing(message, code)
    if code in _codes(libvirt, "VIR_ERR_SYSTEM_ERROR") and domain in _codes(
        libvirt, "VIR_FROM_RPC", "VIR_FROM_REMOTE"
    ):
        if int1 in (errno.EACCES, errno.EPERM):
            return HypervisorDenied(message, code, int1)
        return HypervisorUnavailable(message, code, int1)
    if code in _codes(libvirt, "VIR_ERR_RPC", "VIR_ERR_INVALID_CONN"):
        return HypervisorUnavailable(message, code, int1)
    if code in _codes(libvirt, "VIR_ERR_OPERATION_TIMEOUT"):
        # "cannot acquire state change lock": a job holds the domain
        return DomainBusy(message, code)
    if code in _codes(libvirt, "VIR_ERR_AGENT_UNRESPONSIVE"):
        return GuestNotResponding(message, code)
    if code in _codes(libvirt, "VIR_ERR_INVALID_ARG"):
        return InvalidArgument(message, code)
    if code in _codes(
        libvirt, "VIR_ERR_NO_SUPPORT", "VIR_ERR_ARGUMENT_UNSUPPORTED",
        "VIR_ERR_OPERATION_UNSUPPORTED", "VIR_ERR_CONFIG_UNSUPPORTED",
    ):
        return UnsupportedOperation(message, code)
    if code in _codes(libvirt, "VIR_ERR_XML_ERROR", "VIR_ERR_XML_DETAIL"):
        return InvalidDomainXML(message, code)
    return OperationFailed(message, code, int1)
