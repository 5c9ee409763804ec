"""The state record: its path, format and tolerance of damage."""

from __future__ import annotations

import json
from pathlib import Path

from pyvirtualdomain.core import record as state
from pyvirtualdomain.virt.domxml import DomainIdentity


def test_record_file_is_written_atomically_and_ignored_when_corrupt(state_dir):
    p = state.record_path(str(state_dir), "PyVirtualDomain", "r/1")
    assert "/" not in Path(p).name
    Path(p).write_text("{not json")
    assert state.load(p) is None


def test_record_round_trip_with_awkward_values(tmp_path):
    path = state.record_path(str(tmp_path), "PyVirtualDomain", "vm:1")
    ident = DomainIdentity("vm=1\nx", None, "kvm", None)
    rec = state.new_record(ident, "2a6f3c5e-0000-4000-8000-000000000001", "qemu:///system",
                           state.ConfigStamp("/etc/c lusters/vm\\1.xml", 1234567890123456789, 42),
                           None)
    state.save(path, rec)
    assert path.endswith(".state")
    assert state.load(path) == rec
    assert Path(path).stat().st_mode & 0o777 == 0o644


def test_a_record_missing_a_required_field_is_ignored(tmp_path):
    path = tmp_path / "PyVirtualDomain-r.state"
    path.write_bytes(b"name=\nvirt_type=kvm\nuri=qemu:///system\nconfig=/c\n"
                     b"config_mtime_ns=1\nconfig_size=2\nstarted_at=3.5\n")
    assert state.load(str(path)) is None
    path.write_bytes(b"name=vm\nvirt_type=kvm\nuri=qemu:///system\nconfig=/c\n"
                     b"config_mtime_ns=x\nconfig_size=2\nstarted_at=3.5\n")
    assert state.load(str(path)) is None


def test_a_json_record_from_an_earlier_version_is_read_and_removed(tmp_path):
    path = state.record_path(str(tmp_path), "PyVirtualDomain", "r1")
    legacy = Path(path[: -len(".state")] + ".json")
    legacy.write_text(json.dumps({
        "name": "vm", "uuid": None, "virt_type": "kvm", "emulator": "/usr/bin/qemu",
        "uri": "qemu:///system", "config": "/c.xml", "config_mtime_ns": 5, "config_size": 6,
        "started_at": 7.25}))
    rec = state.load(path)
    assert rec is not None and rec.name == "vm" and rec.uuid is None
    assert rec.emulator == "/usr/bin/qemu" and rec.config_mtime_ns == 5
    state.remove(path)
    assert not legacy.exists()


def test_a_record_from_before_uuid_pinning_stays_pinned_to_its_uuid(tmp_path):
    """Issue 20 #10: a record without the config_uuid field (written before the config's own
    uuid was recorded) read as "the config names no uuid", so a monitor adopted a foreign
    domain of the same name and recorded its uuid. An old record never widens that."""
    path = tmp_path / "PyVirtualDomain-vm1.state"
    path.write_text("name=vm1\nuuid=6f1c1a4a-4f3b-4a0b-8c1d-2e3f40516273\nvirt_type=kvm\n"
                    "emulator=\nuri=qemu:///system\nconfig=/etc/vm1.xml\nconfig_mtime_ns=1\n"
                    "config_size=2\nstarted_at=3.0\n")
    rec = state.load(str(path))
    assert rec is not None and rec.config_uuid == "6f1c1a4a-4f3b-4a0b-8c1d-2e3f40516273"
    # a current record of a config without <uuid> keeps the name fallback
    path.write_text(path.read_text() + "config_uuid=\n")
    rec = state.load(str(path))
    assert rec is not None and rec.config_uuid is None


def test_removing_a_record_that_cannot_go_reports_instead_of_raising(tmp_path):
    """Issue 20 #4: a record that cannot be removed (HA_RSCTMP read-only) failed the stop
    that had already stopped the domain. Here the unlink fails (ENOTDIR): reported only."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    problems = state.remove(str(blocker / "PyVirtualDomain-vm1.state"))
    assert problems and problems[0].startswith("cannot remove"), problems
