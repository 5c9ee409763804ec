"""The compiled schema (lib/pyvirtualdomain/_schemas.py) is the metadata XML, never stale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pyvirtualdomain import metadata
from pyvirtualdomain._schemas import SCHEMAS

ROOT = Path(__file__).resolve().parents[2]
AGENTS = ("PyVirtualDomain", "PyLXCDomain")


@pytest.mark.parametrize("agent", AGENTS)
def test_compiled_schema_is_the_parsed_metadata(agent):
    data = (ROOT / "metadata" / f"{agent}.xml").read_bytes()
    parsed = metadata.parse_schema(data, agent)
    assert metadata.to_compiled(parsed, data) == SCHEMAS[agent]
    assert metadata.from_compiled(SCHEMAS[agent]) == parsed
    assert metadata.load_schema(agent) == parsed


def test_gen_schemas_check_passes_on_the_committed_module():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_schemas.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_an_edited_metadata_file_is_parsed_not_taken_from_the_compiled_copy(tmp_path,
                                                                            monkeypatch):
    """A node whose installed metadata differs (edited default) gets the file's values."""
    data = (ROOT / "metadata" / "PyVirtualDomain.xml").read_bytes()
    edited = data.replace(b'<content type="boolean" default="false" />',
                          b'<content type="boolean" default="true" />', 1)
    assert edited != data
    path = tmp_path / "PyVirtualDomain.xml"
    path.write_bytes(edited)
    monkeypatch.setattr(metadata, "metadata_path", lambda agent: str(path))
    loaded = metadata.load_schema("PyVirtualDomain")
    assert loaded == metadata.parse_schema(edited, "PyVirtualDomain")
    assert loaded != metadata.from_compiled(SCHEMAS["PyVirtualDomain"])
