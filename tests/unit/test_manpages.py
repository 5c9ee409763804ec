"""The man pages generated from the metadata: they render without a warning under groff and
man (as lintian checks them), and the rendered text carries every parameter (short and long
description, type, default), every action with its timeouts, and the examples."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENTS = ("PyVirtualDomain", "PyLXCDomain")
TOOL_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}


def _generate(outdir: Path) -> dict[str, Path]:
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_manpages.py"), "--outdir",
                        str(outdir), "--date", "2026-01-01",
                        "--unit-dir", "/usr/lib/systemd/system"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return {a: outdir / f"ocf_custom_{a}.7" for a in AGENTS}


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    for tool in ("groff", "man"):
        assert shutil.which(tool, path=TOOL_ENV["PATH"]), \
            f"{tool} missing: make deps installs groff-base and man-db"
    return _generate(tmp_path_factory.mktemp("man"))


def _render(page: Path, width: int) -> subprocess.CompletedProcess[str]:
    # What lintian runs on every page of a package, at a given width.
    return subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", str(page)],
                          capture_output=True, text=True, timeout=60,
                          env={**TOOL_ENV, "MANWIDTH": str(width)})


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.parametrize("agent", AGENTS)
def test_renders_without_warnings(pages: dict[str, Path], agent: str) -> None:
    groff = subprocess.run(["groff", "-man", "-ww", "-z", "-Tutf8", str(pages[agent])],
                           capture_output=True, text=True, timeout=60, env=TOOL_ENV)
    assert groff.returncode == 0 and groff.stderr == "", groff.stderr
    for width in (80, 60):
        r = _render(pages[agent], width)
        assert r.returncode == 0 and r.stderr == "", f"MANWIDTH={width}: {r.stderr}"
    # On an 80-column terminal the header's title, manual name and title do not run together.
    header = _render(pages[agent], 80).stdout.split("\n", 1)[0].split()
    assert header == [f"OCF_CUSTOM_{agent.upper()}(7)", "OCF", "agents",
                      f"OCF_CUSTOM_{agent.upper()}(7)"]


def test_a_broken_page_is_noticed(tmp_path: Path) -> None:
    # The check above can fail: an unknown macro and an overlong word both warn.
    bad = tmp_path / "bad.7"
    bad.write_text('.TH BAD 7\n.SH NAME\nbad \\- page\n.XX unknown\n' + "x" * 200 + "\n")
    r = _render(bad, 80)
    assert r.stderr != ""


def _items(text: str, section: str) -> dict[str, str]:
    """The entries of a rendered section: a name on its own line at the entry indent (7),
    its body indented further; body text whitespace-collapsed."""
    lines = text.split("\n")
    start = lines.index(section) + 1
    entries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines[start:]:
        if line and not line[0].isspace():
            break  # the next section
        m = re.fullmatch(r" {7}(\S+)", line)
        if m:
            current = entries.setdefault(m.group(1), [])
        elif current is not None:
            current.append(line)
    return {name: _flat(" ".join(body)) for name, body in entries.items()}


@pytest.mark.parametrize("agent", AGENTS)
def test_every_parameter_and_action_is_documented(pages: dict[str, Path], agent: str) -> None:
    text = _render(pages[agent], 1000).stdout
    root = ET.parse(ROOT / "metadata" / f"{agent}.xml").getroot()
    description = _flat(text.split("\nDESCRIPTION\n", 1)[1].split("\nSUPPORTED")[0])
    assert _flat(root.findtext("longdesc", "")) in description
    params = _items(text, "SUPPORTED PARAMETERS")
    expected = [p.get("name", "") for p in root.findall("parameters/parameter")]
    assert list(params) == expected
    for p in root.findall("parameters/parameter"):
        body = params[p.get("name", "")]
        content = p.find("content")
        assert content is not None
        default = content.get("default")
        facts = ", ".join(
            (["unique"] if p.get("unique") == "1" else [])
            + ["required" if p.get("required") == "1" else "optional", content.get("type", "")]
            + [f"default {default}" if default else "no default"])
        assert body.startswith(_flat(p.findtext("shortdesc", "")) + " "), body
        assert _flat(p.findtext("longdesc", "")) in body, body
        assert body.endswith(f"({facts})"), body
    actions = _items(text, "SUPPORTED ACTIONS")
    # an action listed at several depths (monitor at 0 and 20) is one entry
    assert list(actions) == list(dict.fromkeys(a.get("name")
                                               for a in root.findall("actions/action")))
    for a in root.findall("actions/action"):
        body = actions[a.get("name", "")]
        assert f"Suggested minimum timeout: {a.get('timeout')}." in body, body
        if a.get("interval"):
            assert f"Suggested interval: {a.get('interval')}." in body, body


@pytest.mark.parametrize("agent", AGENTS)
def test_examples(pages: dict[str, Path], agent: str) -> None:
    text = _render(pages[agent], 1000).stdout
    assert f"ocf:custom:{agent} \\" in text and "pcs resource create " in text
    assert "pcs cluster node add-guest guest1 " in text
    assert "meta remote-node=guest1 remote-addr=" in text
    assert "/usr/lib/systemd/system/resource-agents-deps.target.d/50-pyvirtualdomain.conf" in text
    migrates = ET.parse(ROOT / "metadata" / f"{agent}.xml").getroot().find(
        "actions/action[@name='migrate_to']") is not None
    assert ("allow-migrate=true" in text) == migrates


def test_generation_is_reproducible(tmp_path: Path) -> None:
    first = _generate(tmp_path / "a")
    second = _generate(tmp_path / "b")
    for agent in AGENTS:
        assert first[agent].read_bytes() == second[agent].read_bytes()
