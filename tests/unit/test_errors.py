"""The one mapping of libvirt errors to facts."""

from __future__ import annotations

import errno

import pytest

from pyvirtualdomain import errors


def _lv_error(code: int, domain: int, message: str = "boom", int1: int = -1):
    """A libvirtError built the way libvirt-python builds one (its .err tuple)."""
    import libvirt

    e = libvirt.libvirtError(message)
    e.err = (code, domain, message, 2, message, None, None, int1, -1)
    return e


@pytest.mark.parametrize("code,domain,int1,cls", [
    ("VIR_ERR_NO_DOMAIN", "VIR_FROM_QEMU", -1, errors.DomainNotFound),
    ("VIR_ERR_OPERATION_INVALID", "VIR_FROM_QEMU", -1, errors.OperationInvalid),
    ("VIR_ERR_SYSTEM_ERROR", "VIR_FROM_RPC", errno.ENOENT, errors.HypervisorUnavailable),
    ("VIR_ERR_SYSTEM_ERROR", "VIR_FROM_RPC", errno.ECONNREFUSED, errors.HypervisorUnavailable),
    ("VIR_ERR_SYSTEM_ERROR", "VIR_FROM_RPC", errno.EACCES, errors.HypervisorDenied),
    ("VIR_ERR_AUTH_FAILED", "VIR_FROM_RPC", -1, errors.HypervisorDenied),
    ("VIR_ERR_ACCESS_DENIED", "VIR_FROM_ACCESS", -1, errors.HypervisorDenied),
    ("VIR_ERR_NO_CONNECT", "VIR_FROM_NONE", -1, errors.DriverMissing),
    ("VIR_ERR_INTERNAL_ERROR", "VIR_FROM_DBUS", -1, errors.HypervisorDenied),
    ("VIR_ERR_AUTH_FAILED", "VIR_FROM_POLKIT", -1, errors.HypervisorDenied),
    ("VIR_ERR_AGENT_UNRESPONSIVE", "VIR_FROM_QEMU", -1, errors.GuestNotResponding),
    ("VIR_ERR_INVALID_ARG", "VIR_FROM_TEST", -1, errors.InvalidArgument),
    ("VIR_ERR_XML_ERROR", "VIR_FROM_DOMAIN", -1, errors.InvalidDomainXML),
    ("VIR_ERR_INTERNAL_ERROR", "VIR_FROM_QEMU", -1, errors.OperationFailed),
    # libvirt.conf unparsable: every connection fails in the client (issue 13 #10)
    ("VIR_ERR_CONF_SYNTAX", "VIR_FROM_CONF", -1, errors.ClientMisconfigured),
    # the message text never decides the class
    ("VIR_ERR_OPERATION_FAILED", "VIR_FROM_QEMU", -1, errors.OperationFailed),
])
def test_libvirt_error_classification(code, domain, int1, cls):
    import libvirt

    fact = errors.classify_libvirt_error(
        _lv_error(getattr(libvirt, code), getattr(libvirt, domain), "Domain not found", int1),
        libvirt)
    assert type(fact) is cls
