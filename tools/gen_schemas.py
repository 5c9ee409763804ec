"""Compile metadata/*.xml into lib/pyvirtualdomain/_schemas.py (what every action loads).

The XML stays the single source of truth: the compiled form carries the CRC-32 of the file it
came from and is used only while the installed file still has that CRC. `--check` exits 1
when the committed module is stale (``make metadata-check`` runs it).
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
sys.path.insert(0, os.path.join(ROOT, "lib"))

from pyvirtualdomain.metadata import parse_schema, to_compiled  # noqa: E402

AGENTS = ("PyVirtualDomain", "PyLXCDomain")
TARGET = os.path.join(ROOT, "lib", "pyvirtualdomain", "_schemas.py")


def render() -> str:
    lines = ['"""Compiled from metadata/*.xml by tools/gen_schemas.py (`make schemas`).',
             "",
             "Do not edit: regenerate after changing the metadata. See metadata.py.",
             '"""',
             "",
             "SCHEMAS = {"]
    for agent in AGENTS:
        with open(os.path.join(ROOT, "metadata", f"{agent}.xml"), "rb") as f:
            data = f.read()
        crc, name, params, timeouts, actions = to_compiled(parse_schema(data, agent), data)
        lines.append(f"    {agent!r}: ({crc}, {name!r}, (")
        lines.extend(f"        {p!r}," for p in params)
        lines.append(f"    ), {timeouts!r}, {actions!r}),")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    try:
        with open(TARGET, encoding="utf-8") as f:
            current = f.read()
    except FileNotFoundError:
        current = ""
    if "--check" in argv:
        if current != text:
            print(f"{TARGET} is stale: run `make schemas`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        with open(TARGET + ".tmp", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(TARGET + ".tmp", TARGET)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
