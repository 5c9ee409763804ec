"""VirtualDomain's extra parameters on real libvirtd + qemu guests: monitor_scripts,
utilization (against a CIB file), snapshot, save_config_on_stop, start_resources,
backingfile/stateless."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.harness import ACPID_MARKER, INIT_MARKER, GuestResource, domain_facts
from tests.harness.domains import with_connection

pytestmark = pytest.mark.integration

START_MS = 60000
STOP_MS = 30000


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_start_waits_for_monitor_scripts_and_monitor_runs_them(guest: GuestResource,
                                                                tmp_path: Path) -> None:
    # Passes only once the guest has booted far enough to run acpid.
    ready = _script(tmp_path / "ready.sh", f"grep -q '{ACPID_MARKER}' '{guest.console_log}'")
    r = guest.run("start", timeout_ms=START_MS, params={"monitor_scripts": str(ready)})
    assert r.rc == 0, r
    assert ACPID_MARKER in guest.console(), "start returned before the script passed"
    assert guest.run("monitor", timeout_ms=20000, interval_ms=10000,
                     params={"monitor_scripts": str(ready)}).rc == 0
    broken = _script(tmp_path / "broken.sh", "echo 'http check failed'; exit 2")
    bad = guest.run("monitor", timeout_ms=20000, interval_ms=10000,
                    params={"monitor_scripts": f"{ready} {broken}"})
    assert bad.rc == 1 and bad.reason is not None
    assert "broken.sh" in bad.reason and "http check failed" in bad.reason
    assert guest.state() == "running"


def _cib(tmp_path: Path, instance: str) -> Path:
    cib = tmp_path / "cib.xml"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CIB_file": str(cib)}
    cib.write_text(subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True,
                                  check=True, env=env).stdout)
    subprocess.run(["cibadmin", "-C", "-o", "resources", "-X",
                    f'<primitive id="{instance}" class="ocf" provider="custom" '
                    'type="PyVirtualDomain"/>'], check=True, env=env, capture_output=True)
    return cib


def test_utilization_follows_the_domain(guest: GuestResource, tmp_path: Path) -> None:
    cib = _cib(tmp_path, guest.instance)
    env = {"CIB_file": str(cib)}
    assert guest.run("start", timeout_ms=START_MS, env_extra=env).rc == 0
    r = guest.run("monitor", timeout_ms=20000, interval_ms=10000, env_extra=env)
    assert r.rc == 0, r
    text = cib.read_text()
    for attr, value in (("cpu", "1"), ("host_memory", "128"), ("hv_memory", "128")):
        assert f'name="{attr}" value="{value}"' in text, text
    r2 = guest.run("monitor", timeout_ms=20000, interval_ms=10000, env_extra=env)
    assert r2.rc == 0 and "utilization" not in r2.stderr  # unchanged: nothing written
    assert guest.run("stop", timeout_ms=STOP_MS, env_extra=env,
                     params={"force_stop": "true"}).rc == 0


def test_snapshot_saves_and_restores_a_real_guest(guest: GuestResource, tmp_path: Path) -> None:
    snap = tmp_path / "snapshots"
    snap.mkdir()
    params = {"snapshot": str(snap)}
    assert guest.run("start", timeout_ms=START_MS, params=params).rc == 0
    assert guest.wait_console(INIT_MARKER, 60)
    first_id = domain_facts(guest.name).id  # type: ignore[union-attr]
    r = guest.run("stop", timeout_ms=60000, params=params)
    assert r.rc == 0, r
    state_file = snap / f"{guest.name}.state"
    assert state_file.exists() and stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert guest.state() is None
    r = guest.run("start", timeout_ms=START_MS, params=params)
    assert r.rc == 0, r
    assert "restoring" in r.stderr and not state_file.exists()
    facts = domain_facts(guest.name)
    assert facts is not None and facts.state == "running" and facts.id != first_id
    assert guest.run("stop", timeout_ms=STOP_MS, params={"force_stop": "true"}).rc == 0


def test_save_config_on_stop_writes_the_live_definition(guest: GuestResource) -> None:
    guest.config.chmod(0o640)
    before = guest.config.read_text()
    assert "<uuid>" not in before
    assert guest.run("start", timeout_ms=START_MS).rc == 0
    uuid = domain_facts(guest.name).uuid  # type: ignore[union-attr]
    r = guest.run("stop", timeout_ms=STOP_MS, params={"save_config_on_stop": "true",
                                                      "force_stop": "true"})
    assert r.rc == 0, r
    after = guest.config.read_text()
    assert f"<uuid>{uuid}</uuid>" in after and f"<name>{guest.name}</name>" in after
    assert stat.S_IMODE(guest.config.stat().st_mode) == 0o640
    # the saved file starts the same guest again
    assert guest.run("start", timeout_ms=START_MS).rc == 0
    assert domain_facts(guest.name).uuid == uuid  # type: ignore[union-attr]


def _add_disk(guest: GuestResource, disk_xml: str) -> None:
    text = guest.config.read_text()
    guest.config.write_text(text.replace("<memballoon", disk_xml + "\n    <memballoon", 1))


def test_start_resources_starts_the_storage_pool(guest: GuestResource, tmp_path: Path) -> None:
    pool_dir = tmp_path / "pool"
    pool_dir.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(pool_dir / "data.raw"), "4M"],
                   check=True)
    pool_name = f"{guest.name}-pool"
    pool_xml = (f"<pool type='dir'><name>{pool_name}</name><target><path>{pool_dir}</path>"
                "</target></pool>")

    def define(conn):  # type: ignore[no-untyped-def]
        return conn.storagePoolDefineXML(pool_xml, 0).name()

    with_connection(define)
    try:
        _add_disk(guest, f"<disk type='volume' device='disk'><driver name='qemu' type='raw'/>"
                         f"<source pool='{pool_name}' volume='data.raw'/>"
                         "<target dev='vda' bus='virtio'/></disk>")
        no = guest.run("start", timeout_ms=START_MS)
        assert no.rc != 0 and guest.state() is None  # pool inactive: libvirt refuses
        r = guest.run("start", timeout_ms=START_MS, params={"start_resources": "true"})
        assert r.rc == 0, r
        assert with_connection(lambda c: c.storagePoolLookupByName(pool_name).isActive()) == 1
        assert guest.state() == "running"
    finally:
        guest.run("stop", timeout_ms=STOP_MS, params={"force_stop": "true"})

        def undefine(conn):  # type: ignore[no-untyped-def]
            pool = conn.storagePoolLookupByName(pool_name)
            if pool.isActive():
                pool.destroy()
            pool.undefine()

        with_connection(undefine)


def test_backingfile_overlay_boots_and_stateless_recreates(guest: GuestResource,
                                                          tmp_path: Path) -> None:
    assert shutil.which("qemu-img"), "qemu-img missing: make deps installs qemu-utils"
    backing = tmp_path / "golden.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(backing), "8M"], check=True)
    golden = backing.read_bytes()
    overlay = guest.config.with_suffix(".qcow2")
    _add_disk(guest, "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                     f"<source file='{overlay}'/><target dev='vda' bus='virtio'/></disk>")
    params = {"backingfile": str(backing)}
    r = guest.run("start", timeout_ms=START_MS, params=params)
    assert r.rc == 0, r
    assert guest.state() == "running"
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(overlay)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2" and info["backing-filename"] == str(backing)
    ino = os.stat(overlay).st_ino
    assert guest.run("stop", timeout_ms=STOP_MS, params={**params, "force_stop": "true"}).rc == 0
    assert guest.run("start", timeout_ms=START_MS, params={**params, "stateless": "true"}).rc == 0
    assert os.stat(overlay).st_ino != ino
    assert backing.read_bytes() == golden
