"""Where the agent's files are. Imports only os and sys: meta-data runs through here."""

from __future__ import annotations

import os
import sys


def metadata_dirs() -> list[str]:
    """Where the metadata lives: beside the package in a source checkout, else in the
    data directory that ``pip install`` put it in."""
    here = os.path.dirname(os.path.realpath(__file__))
    return [os.path.join(here, os.pardir, os.pardir, "metadata"),
            os.path.join(sys.prefix, "share", "pyvirtualdomain")]


def metadata_path(agent_name: str) -> str:
    filename = f"{agent_name}.xml"
    candidates = [os.path.normpath(os.path.join(d, filename)) for d in metadata_dirs()]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f"metadata {filename} not found (looked in "
        f"{', '.join(os.path.dirname(c) for c in candidates)})")
