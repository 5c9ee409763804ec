"""The one mapping from a libvirt fact to how an action ends."""

from __future__ import annotations

import pytest

from pyvirtualdomain import errors
from pyvirtualdomain.core.outcomes import fact_to_error
from pyvirtualdomain.ocf import OCFExit

URI = "qemu:///system"


@pytest.mark.parametrize("fact,rc,reason", [
    (errors.HypervisorDenied("polkit said no"), OCFExit.ERR_PERM,
     f"cannot connect to {URI}: polkit said no"),
    (errors.DriverMissing("no connection driver"), OCFExit.ERR_INSTALLED,
     f"no libvirt driver for {URI} on this node: no connection driver"),
    (errors.HypervisorUnavailable("socket missing"), OCFExit.ERR_GENERIC,
     f"cannot start vm1: libvirt at {URI}: socket missing"),
    (errors.HypervisorTimeout("no answer in 5.0s"), OCFExit.ERR_GENERIC,
     f"cannot start vm1: libvirt at {URI}: no answer in 5.0s"),
    (errors.OperationFailed("qemu died"), OCFExit.ERR_GENERIC, "cannot start vm1: qemu died"),
])
def test_fact_to_error(fact, rc, reason):
    err = fact_to_error(fact, URI, "cannot start vm1")
    assert err.rc == rc
    assert err.reason == reason
