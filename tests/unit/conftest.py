"""Unit-test helpers: in-process agent contexts against libvirt's test:/// driver."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "lib"))

from pyvirtualdomain.core.context import Context  # noqa: E402
from pyvirtualdomain.log import Log  # noqa: E402
from pyvirtualdomain.metadata import load_schema  # noqa: E402
from pyvirtualdomain.ocf import OCFEnv  # noqa: E402
from pyvirtualdomain.params import build_params  # noqa: E402
from pyvirtualdomain.profiles import VIRTUAL_DOMAIN  # noqa: E402

TEST_URI = "test:///default"


# Golden in/out files of every XML the agent writes (tests/unit/golden/).
GOLDEN = ROOT / "tests" / "unit" / "golden"


def golden(name: str, produced: str) -> str:
    """The golden file's text; PYVD_REGEN_GOLDEN=1 rewrites it from ``produced`` (review the
    diff before committing)."""
    path = GOLDEN / name
    if os.environ.get("PYVD_REGEN_GOLDEN") == "1":
        path.write_text(produced)
    return path.read_text()


def drv_xml(name: str, uuid: str | None = None) -> str:
    uuid_el = f"<uuid>{uuid}</uuid>" if uuid else ""
    return (f"<domain type='test'><name>{name}</name>{uuid_el}<memory>8192</memory>"
            "<os><type>hvm</type></os></domain>")


def vm_params(cfg: Path, **extra: str) -> dict[str, str]:
    """Parameters of a resource for the domain XML ``cfg`` on the test:/// driver."""
    return {"config": str(cfg), "hypervisor": TEST_URI, **extra}


def make_ctx(action: str, params: dict[str, str], state_dir: Path,
             meta: dict[str, str] | None = None, environ: dict[str, str] | None = None,
             stream: io.StringIO | None = None) -> Context:
    env_map = {f"OCF_RESKEY_{k}": v for k, v in params.items()}
    env_map.update({f"OCF_RESKEY_CRM_meta_{k}": v for k, v in (meta or {}).items()})
    env_map["HA_RSCTMP"] = str(state_dir)
    env_map["OCF_RESOURCE_INSTANCE"] = "unit"
    env_map.update(environ or {})
    env = OCFEnv.from_environ(action, env_map)
    schema = load_schema("PyVirtualDomain")
    log = Log("PyVirtualDomain", env.instance, stream if stream is not None else io.StringIO())
    return Context(env=env, profile=VIRTUAL_DOMAIN, schema=schema,
                   params=build_params(env.params, schema), log=log, environ=env_map,
                   sleep=lambda s: None)


@pytest.fixture
def test_conn() -> Iterator[Any]:
    """Holds test:///default open so its state lives across the agent's own connections."""
    import libvirt

    libvirt.registerErrorHandler(lambda _c, _e: None, None)
    conn = libvirt.open(TEST_URI)
    yield conn
    for dom in conn.listAllDomains():
        if dom.name() != "test":
            try:
                dom.destroy()
            except libvirt.libvirtError:
                pass
    conn.close()


@pytest.fixture
def write_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    def write(text: str | bytes, name: str = "vm.xml") -> Path:
        p = tmp_path / name
        p.write_bytes(text.encode() if isinstance(text, str) else text)
        return p
    return write


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d


os.environ.pop("LIBVIRT_DEFAULT_URI", None)
