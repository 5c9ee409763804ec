"""Host-shutdown ordering (issue 15): the static drop-in for resource-agents-deps.target, read
by systemd itself (``systemd-analyze verify`` without a running systemd, see
tests/harness/systemd_units.py) together with the real unit files of Debian's pacemaker,
corosync and resource-agents (installed) and of Debian's libvirt (unpacked from
libvirt-daemon-system). systemd stops units in the reverse of their start order, so "Pacemaker
stops first" means pacemaker.service is ordered after each libvirt unit."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.harness.common import REPO_ROOT
from tests.harness.systemd_units import (
    UnitDump,
    libvirt_unit_files,
    ordered_after,
    unit_dir_with,
    verify,
)

pytestmark = pytest.mark.integration

DROP_IN = "resource-agents-deps.target.d/50-pyvirtualdomain.conf"
DROP_IN_TEXT = (REPO_ROOT / "systemd" / "50-pyvirtualdomain.conf").read_text()
# What must still run while Pacemaker stops (migrates or stops) the guests.
LIBVIRT_UNITS = ("libvirtd.service", "libvirtd.socket", "libvirtd-ro.socket",
                 "libvirtd-admin.socket", "virtlogd.service", "virtlogd.socket",
                 "virtlockd.service", "virtlockd.socket", "libvirt-guests.service",
                 "virt-guest-shutdown.target")
VERIFIED = ("pacemaker.service", "resource-agents-deps.target", "libvirtd.service",
            "libvirt-guests.service", "virt-guest-shutdown.target")


@pytest.fixture(scope="module")
def libvirt_units(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for unit in ("pacemaker.service", "resource-agents-deps.target", "corosync.service"):
        assert Path("/usr/lib/systemd/system", unit).is_file(), \
            f"{unit} missing: make deps installs pacemaker, corosync and resource-agents"
    return libvirt_unit_files(tmp_path_factory.mktemp("libvirt-units"))


def _stop_order_problems(units: Mapping[str, UnitDump]) -> list[str]:
    return [f"pacemaker.service is not ordered after {u}: it may stop after it"
            for u in LIBVIRT_UNITS if not ordered_after(units, "pacemaker.service", u)]


def test_drop_in_orders_pacemaker_stop_before_libvirt(libvirt_units: Path,
                                                      tmp_path: Path) -> None:
    ours = unit_dir_with(tmp_path / "units", {DROP_IN: DROP_IN_TEXT})
    result = verify(VERIFIED, [ours, libvirt_units])
    assert result.returncode == 0, result.output
    assert "50-pyvirtualdomain" not in result.output and "cycle" not in result.output, \
        result.output
    target = result.units["resource-agents-deps.target"]
    assert str(ours / DROP_IN) in target.drop_ins
    assert "virt-guest-shutdown.target" in target.dep("Wants")
    assert "resource-agents-deps.target" in result.units["pacemaker.service"].dep("After")
    assert _stop_order_problems(result.units) == []
    # Nothing of libvirt is ordered after Pacemaker (that would be a cycle or the reverse).
    for unit in LIBVIRT_UNITS:
        assert not ordered_after(result.units, unit, "pacemaker.service"), unit
    # Ordering only: the drop-in starts no libvirt daemon with Pacemaker.
    assert not {"libvirtd.service", "libvirt-guests.service"} & target.dep("Wants")


def test_without_the_drop_in_the_order_is_missing(libvirt_units: Path, tmp_path: Path) -> None:
    # The check above is not vacuous: with only the distributions' units, nothing orders
    # Pacemaker against libvirt (a host shutdown stops both at once).
    result = verify(VERIFIED, [unit_dir_with(tmp_path / "none", {}), libvirt_units])
    assert result.returncode == 0, result.output
    problems = _stop_order_problems(result.units)
    assert len(problems) == len(LIBVIRT_UNITS), problems
    # And a drop-in with the direction reversed (Before=) is caught too.
    reversed_text = DROP_IN_TEXT.replace("\nAfter=", "\nBefore=")
    result = verify(VERIFIED, [unit_dir_with(tmp_path / "reversed", {DROP_IN: reversed_text}),
                               libvirt_units])
    assert len(_stop_order_problems(result.units)) == len(LIBVIRT_UNITS)


def test_drop_in_is_harmless_without_libvirt_units(tmp_path: Path) -> None:
    # A host with Pacemaker but without libvirt's unit files: After=/Wants= of absent units
    # are ignored, pacemaker.service still verifies.
    ours = unit_dir_with(tmp_path / "units", {DROP_IN: DROP_IN_TEXT})
    result = verify(("pacemaker.service", "resource-agents-deps.target"), [ours])
    assert result.returncode == 0, result.output
    assert "50-pyvirtualdomain" not in result.output, result.output
    assert str(ours / DROP_IN) in result.units["resource-agents-deps.target"].drop_ins
