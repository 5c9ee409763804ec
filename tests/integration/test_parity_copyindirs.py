"""copyindirs (with backingfile, stateless) on a real libvirtd + qemu guest, with the real
virt-copy-in from libguestfs-tools writing into the overlay and guestfish reading it back.

virt-copy-in is ``guestfish --rw -i``: it needs a disk on which libguestfs' inspection finds
an operating system, so the backing file here is a small ext4 filesystem holding the bare
skeleton of a Linux root (/etc/os-release, /etc/fstab, /bin). The test guest itself boots
from its kernel + initramfs and never mounts the disk; what is checked is the image."""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.harness import GuestResource
from tests.harness.domains import with_connection

pytestmark = pytest.mark.integration

# Each virt-copy-in / guestfish run boots libguestfs' own appliance: ~20-25 s under TCG here,
# and the host is shared (figures drift by 2x).
START_MS = 180000
STOP_MS = 30000
GUESTFS_S = 180.0


@pytest.fixture
def guestfs_env(virt_type: str) -> dict[str, str]:
    """The libguestfs settings for the agent's environment (and for guestfish below)."""
    missing = [t for t in ("virt-copy-in", "guestfish", "mke2fs", "qemu-img")
               if shutil.which(t, path="/usr/sbin:/usr/bin:/sbin:/bin") is None]
    if missing:
        pytest.fail(f"not installed: {', '.join(missing)} (make deps installs libguestfs-tools, "
                    "e2fsprogs, qemu-utils)")
    env = {"LIBGUESTFS_BACKEND": "direct"}
    if virt_type != "kvm":
        # libguestfs' appliance is a qemu guest, and on this machine kind KVM cannot run
        # guests (nested kvm_pvm: qemu aborts with "failed to set MSR"), though /dev/kvm
        # exists and libguestfs would pick it. The test guests run under TCG for the same
        # reason (virt_type is decided by a real boot); the appliance must too. The agent
        # passes its own environment to virt-copy-in: this is how a node would configure it.
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    return env


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _linux_root_image(tmp_path: Path) -> Path:
    """A raw ext4 image that libguestfs' inspection takes for a Linux root."""
    skel = tmp_path / "skel"
    (skel / "etc").mkdir(parents=True)
    (skel / "bin").mkdir()
    (skel / "etc" / "os-release").write_text('ID=pyvd\nNAME="pyvd test"\nVERSION_ID=1\n')
    (skel / "etc" / "fstab").write_text("# the root filesystem only\n")
    (skel / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    image = tmp_path / "golden.raw"
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-F", "-d", str(skel), str(image), "16M"],
                   check=True, capture_output=True)
    return image


def _add_overlay_disk(guest: GuestResource) -> Path:
    overlay = guest.config.with_suffix(".qcow2")
    text = guest.config.read_text()
    disk = ("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='{overlay}'/><target dev='vda' bus='virtio'/></disk>")
    guest.config.write_text(text.replace("<memballoon", disk + "\n    <memballoon", 1))
    return overlay


def _leftovers(overlay: Path) -> list[Path]:
    return sorted(overlay.parent.glob(f"{overlay.name}.new-*"))


def _processes_using(path: Path) -> list[str]:
    """Processes whose command line names ``path`` (e.g. an orphaned libguestfs appliance)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(path) in cmdline:
            found.append(f"{proc.info['pid']}: {cmdline[:200]}")
    return found


def test_copyindirs_lands_in_the_overlay_and_the_guest_runs(
        guest: GuestResource, tmp_path: Path, guestfs_env: dict[str, str]) -> None:
    backing = _linux_root_image(tmp_path)
    golden = _sha256(backing)
    known, inner, note = (f"{what}-{secrets.token_hex(8)}" for what in ("known", "inner", "note"))
    src = tmp_path / "inject"
    (src / "sub").mkdir(parents=True)
    (src / "known.txt").write_text(known + "\n")
    (src / "sub" / "inner.txt").write_text(inner + "\n")
    extra = tmp_path / "extra"  # a second entry: copyindirs is a whitespace-separated list
    extra.mkdir()
    (extra / "note.txt").write_text(note + "\n")
    overlay = _add_overlay_disk(guest)
    params = {"backingfile": str(backing), "copyindirs": f"{src} {extra}", "stateless": "true"}

    r = guest.run("start", timeout_ms=START_MS, params=params, env_extra=guestfs_env)
    assert r.rc == 0, r
    assert guest.state() == "running"
    live_xml = with_connection(lambda c: c.lookupByName(guest.name).XMLDesc(0))
    assert f"<source file='{overlay}'" in live_xml  # the running guest uses the overlay
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(overlay)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2" and info["backing-filename"] == str(backing)
    assert _leftovers(overlay) == []

    stop = guest.run("stop", timeout_ms=STOP_MS, params={**params, "force_stop": "true"})
    assert stop.rc == 0, stop
    assert guest.state() is None

    # Read the overlay back (read-only, its own appliance) after the guest stopped.
    read = subprocess.run(
        ["guestfish", "--ro", "--format=qcow2", "-a", str(overlay), "-i",
         "cat", "/inject/known.txt", ":", "cat", "/inject/sub/inner.txt", ":",
         "cat", "/extra/note.txt", ":", "is-dir", "/inject/sub"],
        capture_output=True, text=True, timeout=GUESTFS_S,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", **guestfs_env})
    assert read.returncode == 0, read.stderr
    assert read.stdout.split() == [known, inner, note, "true"], read.stdout
    # Nothing was written to the backing file: what guestfish read is in the overlay alone.
    assert _sha256(backing) == golden


def test_copyindirs_path_missing_on_this_node_is_rc5(
        guest: GuestResource, tmp_path: Path, guestfs_env: dict[str, str]) -> None:
    backing = tmp_path / "golden.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(backing), "8M"], check=True)
    missing = tmp_path / "no-such-dir"
    overlay = _add_overlay_disk(guest)
    params = {"backingfile": str(backing), "copyindirs": f"{tmp_path} {missing}"}
    for action in ("validate-all", "start"):
        r = guest.run(action, timeout_ms=START_MS, params=params, env_extra=guestfs_env)
        assert r.rc == 5, r
        assert r.stderr.count("ocf-exit-reason:") == 1, r
        assert r.reason is not None and str(missing) in r.reason and "copyindirs" in r.reason
    assert guest.state() is None
    assert not overlay.exists() and _leftovers(overlay) == []


def test_virt_copy_in_failure_is_rc1_and_keeps_the_previous_overlay(
        guest: GuestResource, tmp_path: Path, guestfs_env: dict[str, str]) -> None:
    # No filesystem at all on the backing file: virt-copy-in finds no operating system.
    backing = tmp_path / "blank.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(backing), "8M"], check=True)
    golden = _sha256(backing)
    src = tmp_path / "inject"
    src.mkdir()
    (src / "file.txt").write_text("content\n")
    overlay = _add_overlay_disk(guest)
    # The overlay of an earlier start: a failed stateless re-creation must not replace it.
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(backing),
                    str(overlay)], check=True)
    previous, ino = _sha256(overlay), overlay.stat().st_ino
    params = {"backingfile": str(backing), "copyindirs": str(src), "stateless": "true"}

    r = guest.run("start", timeout_ms=START_MS, params=params, env_extra=guestfs_env)
    assert r.rc == 1, r
    assert r.stderr.count("ocf-exit-reason:") == 1, r
    assert r.reason is not None and r.reason.startswith("virt-copy-in failed"), r
    assert r.reason.endswith(f"(overlay {overlay})"), r
    # Pacemaker keeps the first 128 characters of an exit reason: the cause must be there.
    assert "no operating system" in r.reason[:128], r
    assert guest.state() is None
    assert overlay.stat().st_ino == ino and _sha256(overlay) == previous
    assert _leftovers(overlay) == []
    assert _processes_using(tmp_path) == []  # no libguestfs appliance left running
    assert _sha256(backing) == golden
