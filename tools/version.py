"""Print the project's version, as setup.cfg defines it (the one place every package takes it from).

setup.cfg says ``version = attr: pyvirtualdomain.__version__``: the value is read here from the
module's source (no import: this runs at package build time, before any dependency exists).
A literal ``version = 1.2.3`` in setup.cfg works too.
"""

from __future__ import annotations

import ast
import configparser
import os
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))


def project_version(root: str = ROOT) -> str:
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(root, "setup.cfg"), encoding="utf-8")
    value = cfg.get("metadata", "version").strip()
    if not value.startswith("attr:"):
        return value
    dotted = value[len("attr:"):].strip()
    module, _, attribute = dotted.rpartition(".")
    package_dir = cfg.get("options", "package_dir", fallback="").split("=")[-1].strip() or "."
    base = os.path.join(root, package_dir, *module.split("."))
    path = os.path.join(base, "__init__.py") if os.path.isdir(base) else base + ".py"
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == attribute for t in node.targets):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                return node.value.value
    raise SystemExit(f"{path}: no string assignment to {attribute}")


if __name__ == "__main__":
    print(project_version(sys.argv[1] if len(sys.argv) > 1 else ROOT))
