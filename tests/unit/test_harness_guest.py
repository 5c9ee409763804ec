"""The test-guest builder's own logic that needs no daemon: finding the kernel inside a
compressed image and reading compressed kernel modules, for each compression the supported
Debian releases use (Debian 12: an xz kernel and plain modules; Debian 13: a zstd kernel and
xz modules)."""

from __future__ import annotations

import gzip
import lzma
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.harness.common import HarnessError  # noqa: E402
from tests.harness.guest import ModuleIndex, extract_vmlinux  # noqa: E402
from tests.harness.guestnode import _module_data  # noqa: E402

zstandard = pytest.importorskip("zstandard", reason="python3-zstandard (make deps-system)")

ELF = b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 64


def _image(payload: bytes) -> bytes:
    # What a bzImage looks like from outside: a setup header and decompressor code (which may
    # contain a compression magic by chance), the compressed payload, then trailing data.
    return b"MZ" + b"\x00" * 510 + b"\x28\xb5\x2f\xfd not a frame" + payload + b"\x00" * 64


@pytest.mark.parametrize("compress", [
    lambda d: lzma.compress(d, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32),
    lambda d: gzip.compress(d),
    lambda d: zstandard.ZstdCompressor(level=19).compress(d),
], ids=["xz", "gzip", "zstd"])
def test_extract_vmlinux_finds_the_elf(compress) -> None:  # type: ignore[no-untyped-def]
    assert extract_vmlinux(_image(compress(ELF))) == ELF


def test_zstd_kernel_without_the_module_says_what_is_missing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: a missing zstandard module made a zstd kernel look like no kernel at all
    # ("no compressed ELF payload found").
    monkeypatch.setitem(sys.modules, "zstandard", None)  # import raises ImportError
    image = _image(zstandard.ZstdCompressor().compress(ELF))
    with pytest.raises(HarnessError, match="python3-zstandard"):
        extract_vmlinux(image)


def test_no_payload_is_reported() -> None:
    with pytest.raises(HarnessError, match="no compressed ELF payload"):
        extract_vmlinux(b"MZ" + b"\x00" * 4096)


@pytest.mark.parametrize("suffix,compress", [
    (".ko", lambda d: d),
    (".ko.xz", lambda d: lzma.compress(d, check=lzma.CHECK_CRC32)),
    (".ko.gz", gzip.compress),
    (".ko.zst", lambda d: zstandard.ZstdCompressor().compress(d)),
])
def test_compressed_modules_are_read(tmp_path: Path, suffix: str, compress) -> None:  # type: ignore[no-untyped-def]
    module = b"\x7fELF module body" * 100
    rel = f"kernel/drivers/virtio/virtio_pci{suffix}"
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_bytes(compress(module))
    (tmp_path / "modules.dep").write_text(f"{rel}:\n")
    # the test guests' initramfs and the guest node's (guestnode.py: zstd failed there)
    assert ModuleIndex.read(tmp_path).module_bytes("virtio_pci") == module
    assert _module_data(tmp_path, rel) == module
