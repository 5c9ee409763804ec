"""The package's layers (docs/architecture.md), checked on the source: who may import whom,
no import cycle, no private name crossing a module, libvirt only inside virt/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "lib" / "pyvirtualdomain"
NAME = "pyvirtualdomain"

# Each layer may import itself and the layers after it in this list.
LAYERS = ("cli", "actions", "features", "core", "virt", "base")
# Within these layers a module may not import a sibling: each action and each feature stands
# alone (actions/__init__.py, the loader, is the exception).
NO_SIBLINGS = ("actions", "features")
# Attributes that hold raw libvirt objects or call them: virt/ only.
RAW_LIBVIRT = {"virdomain", "virconnect", "call", "libvirt"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([NAME, *parts])


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "base"  # the package's __init__
    if parts[1] in ("actions", "features", "core", "virt"):
        return parts[1]
    if parts[1] == "cli":
        return "cli"
    return "base"


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    base = package.split(".")
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str, path: Path) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for every import, at any depth."""
    found: list[tuple[str, str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, "", node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = resolve(module, path, node)
            known = modules()
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in known:  # "from . import record": the module itself
                    found.append((sub, "", node.lineno))
                else:
                    found.append((target, alias.name, node.lineno))
    return found


def internal_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {m: set() for m in known}
    for module, path in known.items():
        for target, _, _ in imports(module, path):
            if target in known and target != module:
                graph[module].add(target)
    return graph


def test_imports_follow_the_layers():
    known = modules()
    wrong = []
    for module, path in known.items():
        mine = layer_of(module)
        allowed = LAYERS[LAYERS.index(mine):]
        for target, _, line in imports(module, path):
            if target not in known or target == module:
                continue
            theirs = layer_of(target)
            if theirs not in allowed:
                wrong.append(f"{path.name}:{line} {module} ({mine}) imports {target} ({theirs})")
            elif (mine == theirs and mine in NO_SIBLINGS and path.name != "__init__.py"
                  and target != f"{NAME}.{mine}"):
                wrong.append(f"{path.name}:{line} {module} imports its sibling {target}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    graph = internal_graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_name_crosses_a_module():
    known = modules()
    wrong = [f"{path.name}:{line} {module} imports {name} from {target}"
             for module, path in known.items()
             for target, name, line in imports(module, path)
             if target.startswith(NAME) and name.startswith("_")]
    assert not wrong, "\n".join(wrong)


def test_libvirt_only_inside_virt():
    wrong = []
    for module, path in modules().items():
        if layer_of(module) == "virt":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "libvirt"
                                                    for a in node.names):
                wrong.append(f"{path.name}:{node.lineno} imports libvirt")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("libvirt"):
                wrong.append(f"{path.name}:{node.lineno} imports from libvirt")
            elif isinstance(node, ast.Attribute) and node.attr in RAW_LIBVIRT:
                wrong.append(f"{path.name}:{node.lineno} uses .{node.attr}")
    assert not wrong, "\n".join(wrong)


def test_named_tuples_come_from_tuples():
    """typing.NamedTuple compiles each field's annotation when the class is made: the
    monitor would pay for it on every run (pyvirtualdomain.tuples has the cheap one)."""
    wrong = [f"{path.name}:{line} imports NamedTuple from typing"
             for module, path in modules().items()
             for target, name, line in imports(module, path)
             if target == "typing" and name == "NamedTuple" and not module.endswith(".tuples")]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("bad", [
    # the checks themselves must be able to fail
    ("core", f"{NAME}.actions.start"),
    ("virt", f"{NAME}.core.context"),
    ("base", f"{NAME}.virt.domain"),
])
def test_the_layer_rule_catches_an_upward_import(bad):
    mine, target = bad
    allowed = LAYERS[LAYERS.index(mine):]
    assert layer_of(target) not in allowed


def test_unit_tests_mirror_the_modules():
    """lib/pyvirtualdomain/<dir>/<module>.py has tests/unit/<dir>/test_<module>.py."""
    unit = Path(__file__).resolve().parent
    exempt = {"__init__", "_schemas", "locate", "profiles", "log"}
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.stem in exempt:
            continue
        rel = path.relative_to(PACKAGE)
        expected = unit / rel.parent / f"test_{rel.name}"
        if not expected.is_file():
            missing.append(str(expected.relative_to(unit.parents[1])))
    assert not missing, "modules without their unit test module: " + ", ".join(missing)
