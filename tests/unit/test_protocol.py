"""OCF environment, parameters, metadata, error mapping, deadlines."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pyvirtualdomain import errors
from pyvirtualdomain.deadline import Deadline, for_action
from pyvirtualdomain.locate import metadata_path
from pyvirtualdomain.metadata import load_schema, parse_duration_s
from pyvirtualdomain.ocf import OCFEnv
from pyvirtualdomain.params import Params, build_params
from pyvirtualdomain.uri import default_uri, is_local_uri, uri_problem
from pyvirtualdomain.virt.connection import bounded

ROOT = Path(__file__).resolve().parents[2]
DTD = Path("/usr/share/resource-agents/ra-api-1.dtd")


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_env_probe_and_meta():
    env = OCFEnv.from_environ("monitor", {
        "OCF_RESKEY_config": "/x.xml", "OCF_RESKEY_crm_feature_set": "3.16",
        "OCF_RESKEY_CRM_meta_timeout": "20000", "OCF_RESKEY_CRM_meta_interval": "0",
        "OCF_RESKEY_CRM_meta_remote_node": "guest1", "OCF_RESOURCE_INSTANCE": "vm1"})
    assert env.is_probe and env.meta_timeout_ms == 20000 and env.instance == "vm1"
    assert env.params == {"config": "/x.xml"}
    assert env.remote_node == "guest1"
    rec = OCFEnv.from_environ("monitor", {"OCF_RESKEY_CRM_meta_interval": "10000"})
    assert not rec.is_probe
    assert not OCFEnv.from_environ("stop", {}).is_probe
    assert OCFEnv.from_environ("status", {}).is_probe


def test_env_garbage_numbers_do_not_crash():
    env = OCFEnv.from_environ("monitor", {"OCF_RESKEY_CRM_meta_timeout": "soon",
                                          "OCF_RESKEY_CRM_meta_interval": "x"})
    assert env.meta_timeout_ms is None and env.is_probe


def test_params_defaults_and_types():
    schema = load_schema("PyVirtualDomain")
    p = build_params({"config": "/a.xml"}, schema)
    assert p == Params(config="/a.xml", hypervisor="", force_stop=False, shutdown_mode=())
    p = build_params({"config": "/a.xml", "force_stop": "YES", "shutdown_mode": "acpi,agent"},
                     schema)
    assert p.force_stop is True and p.shutdown_mode == ("acpi", "agent") and not p.problems


@pytest.mark.parametrize("raw,needle", [
    ({"config": "/a", "force_stop": "maybe"}, "not a boolean"),
    ({"config": "/a", "shutdown_mode": "acpi,reboot"}, "unknown mode reboot"),
    ({"config": "/a", "frobnicate": "/x"}, "unknown parameter frobnicate"),
    ({"config": "/a", "migration_speed": "fast"}, "not an integer"),
    ({"config": "/a", "migrate_options": "--frobnicate"}, "unknown option '--frobnicate'"),
    ({"config": "/a", "migrate_options": "--timeout 5"}, "migration_deadline_action"),
    ({"config": "/a", "migration_deadline_action": "panic"}, "use one of abort"),
    ({}, "required parameter config"),
])
def test_params_problems(raw, needle):
    p = build_params(raw, load_schema("PyVirtualDomain"))
    assert any(needle in problem for problem in p.problems), p.problems
    assert p.force_stop is False  # bad values fall back to the default


@pytest.mark.parametrize("agent", ["PyVirtualDomain", "PyLXCDomain"])
def test_metadata_valid_against_ra_api_dtd(agent):
    from lxml import etree

    assert DTD.exists(), "resource-agents' ra-api-1.dtd is required (make deps installs it)"
    dtd = etree.DTD(str(DTD))
    doc = etree.parse(str(metadata_path(agent)))
    assert dtd.validate(doc), dtd.error_log.filter_from_errors()
    assert doc.getroot().get("name") == agent


def test_metadata_lists_exactly_the_parameters_params_knows():
    schema = load_schema("PyVirtualDomain")
    known = set(Params._fields) - {"problems"}
    assert set(schema.parameters) == known
    assert set(load_schema("PyLXCDomain").parameters) == {"config", "hypervisor", "force_stop",
                                                         "shutdown_mode"}
    assert schema.timeout_s("stop") == 90 and schema.timeout_s("monitor") == 30
    assert set(schema.actions) >= {"start", "stop", "monitor", "status", "meta-data",
                                   "validate-all"}


@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("500ms", 0.5),
                                          ("2min", 120), ("1h", 3600)])
def test_durations(text, seconds):
    assert parse_duration_s(text) == seconds


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
    ("VIR_ERR_INVALID_ARG", "VIR_FROM_TEST", -1, errors.UnsupportedOperation),
    ("VIR_ERR_XML_ERROR", "VIR_FROM_DOMAIN", -1, errors.InvalidDomainXML),
    ("VIR_ERR_INTERNAL_ERROR", "VIR_FROM_QEMU", -1, errors.OperationFailed),
    # the message text never decides the class
    ("VIR_ERR_OPERATION_FAILED", "VIR_FROM_QEMU", -1, errors.OperationFailed),
])
def test_libvirt_error_classification(code, domain, int1, cls):
    import libvirt

    fact = errors.classify_libvirt_error(
        _lv_error(getattr(libvirt, code), getattr(libvirt, domain), "Domain not found", int1),
        libvirt)
    assert type(fact) is cls


def test_bounded_times_out_without_waiting_for_the_call():
    import threading
    import time

    import libvirt
    release = threading.Event()
    t0 = time.monotonic()
    with pytest.raises(errors.HypervisorTimeout):
        bounded(lambda: release.wait(10), 0.2, "hang", libvirt)
    assert time.monotonic() - t0 < 1.0
    release.set()


def test_deadline_arithmetic():
    clock = FakeClock()
    d = for_action(20000, 90, 1.0, clock)
    assert d.total == pytest.approx(19.0)
    assert for_action(None, 90, 1.0, clock).total == pytest.approx(89.0)
    assert for_action(2000, 90, 1.0, clock).total == pytest.approx(1.8)
    tail = d.before(5)
    clock.t += 10
    assert tail.remaining() == pytest.approx(4.0) and d.remaining() == pytest.approx(9.0)
    assert d.bound(3) == 3 and d.bound(100) == pytest.approx(9.0)
    clock.t += 100
    assert d.expired() and d.remaining() == 0 and Deadline(5, clock).remaining() == 5


def test_uris():
    assert uri_problem("qemu:///system") is None
    assert uri_problem("qemu+ssh://root@node2/system") is None
    assert "not a libvirt URI" in (uri_problem("garbage") or "")
    assert "unknown" in (uri_problem("bogus:///x") or "")
    assert "malformed host" in (uri_problem("qemu+tcp://[::1/system") or "")
    assert uri_problem("qemu+tcp://[::1]:16509/system") is None
    assert uri_problem("qemu+ssh://root@node-2.example:22/system") is None
    assert is_local_uri("qemu:///system") and not is_local_uri("qemu+tcp://10.0.0.1/system")
    assert default_uri("kvm", {}) in ("qemu:///system",) or default_uri("kvm", {})
    assert default_uri("lxc", {"LIBVIRT_DEFAULT_URI": "test:///default"}) == "test:///default"


def test_a_zero_bound_does_not_call_a_healthy_daemon_hung():
    from pyvirtualdomain.virt.connection import Hypervisor, import_libvirt

    libvirt = import_libvirt()
    conn = libvirt.open("test:///default")
    try:
        hv = Hypervisor("test:///default", conn, libvirt)
        assert hv.call(conn.getLibVersion, 0.0, "version") > 0
        assert not hv.hung
    finally:
        conn.close()
