"""Typed parameters from OCF_RESKEY_* and the metadata."""

from __future__ import annotations

import pytest

from pyvirtualdomain.metadata import load_schema
from pyvirtualdomain.params import Params, build_params


def test_params_defaults_and_types():
    schema = load_schema("PyVirtualDomain")
    p = build_params({"config": "/a.xml"}, schema)
    assert p == Params(config="/a.xml", hypervisor="", force_stop=False, shutdown_mode=())
    p = build_params({"config": "/a.xml", "force_stop": "YES", "shutdown_mode": "acpi,agent"},
                     schema)
    assert p.force_stop is True and p.shutdown_mode == ("acpi", "agent") and not p.problems


def test_a_migration_that_would_not_finish_raises_the_downtime_by_default():
    """Issue 24: at dirty rates where VirtualDomain's migration is killed at the timeout (a
    restart under Pacemaker), migration_deadline_action=downtime moved the guest in every run
    (docs/benchmarks-migrate-load.md); abort stays one word away."""
    schema = load_schema("PyVirtualDomain")
    assert build_params({"config": "/a.xml"}, schema).migration_deadline_action == "downtime"
    assert build_params({"config": "/a.xml", "migration_deadline_action": ""},
                        schema).migration_deadline_action == "downtime"
    assert build_params({"config": "/a.xml", "migration_deadline_action": "Abort"},
                        schema).migration_deadline_action == "abort"


@pytest.mark.parametrize("raw,needle", [
    ({"config": "/a", "shutdown_mode": "acpi,reboot"}, "unknown mode reboot"),
    ({"config": "/a", "frobnicate": "/x"}, "unknown parameter frobnicate"),
    ({"config": "/a", "migration_speed": "fast"}, "not an integer"),
    ({"config": "/a", "migrate_options": "--frobnicate"}, "unknown option '--frobnicate'"),
    ({"config": "/a", "migrate_options": "--timeout-postcopy"}, "need --timeout"),
    ({"config": "/a", "migration_deadline_action": "panic"}, "use one of abort"),
    ({}, "required parameter config"),
])
def test_params_problems(raw, needle):
    p = build_params(raw, load_schema("PyVirtualDomain"))
    found = p.problems + p.migration_problems() + p.unknown
    assert any(needle in problem for problem in found), found
    assert p.force_stop is False  # bad values fall back to the default


@pytest.mark.parametrize("value,expected", [
    ("yes", True), ("true", True), ("1", True), ("YES", True), ("TRUE", True), ("True", True),
    ("ja", True), ("on", True), ("ON", True),
    ("no", False), ("0", False), ("false", False), ("off", False), ("", False),
    ("Yes", False), ("y", False), ("On", False), ("maybe", False), ("enable", False),
])
def test_booleans_read_as_ocf_is_true_reads_them(value, expected):
    """Issue 21 #6: exactly what resource-agents' ocf_is_true (and so VirtualDomain) takes as
    true is true; anything else false, with a note for values that are neither plainly true
    nor plainly false, never a problem (which made start answer 6)."""
    p = build_params({"config": "/a", "force_stop": value}, load_schema("PyVirtualDomain"))
    assert p.force_stop is expected
    assert not p.problems
    assert bool(p.notes) == (value in ("Yes", "y", "On", "maybe", "enable"))


def test_an_unknown_parameter_gets_a_suggestion():
    p = build_params({"config": "/a", "migration_tranport": "ssh", "zzz": "1"},
                     load_schema("PyVirtualDomain"))
    assert any("did you mean migration_transport?" in u for u in p.unknown), p.unknown
    assert not any("did you mean" in u for u in p.unknown if "zzz" in u)


def test_virtualdomain_parameters_a_container_agent_lacks_are_ignored_not_unknown():
    """A container resource switched from VirtualDomain to PyLXCDomain keeps VirtualDomain's
    migration and snapshot parameters: ignored with a warning at start and validate-all, not
    "unknown" (which every monitor warned about, and validate-all refused)."""
    p = build_params({"config": "/a", "migration_transport": "ssh", "snapshot": "/s",
                      "frobnicate": "1"}, load_schema("PyLXCDomain"))
    assert [u.split()[2] for u in p.unknown] == ["frobnicate"]
    assert len(p.ignored) == 2 and all("does nothing in PyLXCDomain" in i for i in p.ignored)
    assert not p.problems
