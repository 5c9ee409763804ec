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
    found = p.all_problems() + p.unknown
    assert any(needle in problem for problem in found), found
    assert p.force_stop is False  # bad values fall back to the default
