"""The metadata: valid against ra-api-1.dtd, its compiled copy, durations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pyvirtualdomain import metadata
from pyvirtualdomain._schemas import SCHEMAS
from pyvirtualdomain.locate import metadata_path
from pyvirtualdomain.metadata import load_schema, parse_duration_s
from pyvirtualdomain.params import Params

DTD = Path("/usr/share/resource-agents/ra-api-1.dtd")


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
    known = set(Params._fields) - {"problems", "unknown", "ignored", "notes",
                                   "migration_settings"}
    assert set(schema.parameters) == known
    utilization = {f"{verb}_utilization_{attr}" for verb in ("autoset", "unset")
                   for attr in ("cpu", "host_memory", "hv_memory")}
    assert set(load_schema("PyLXCDomain").parameters) == {
        "config", "hypervisor", "force_stop", "shutdown_mode"} | utilization
    assert schema.timeout_s("stop") == 90 and schema.timeout_s("monitor") == 30
    assert set(schema.actions) >= {"start", "stop", "monitor", "status", "meta-data",
                                   "validate-all"}


@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("500ms", 0.5),
                                          ("2min", 120), ("1h", 3600)])
def test_durations(text, seconds):
    assert parse_duration_s(text) == seconds

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
