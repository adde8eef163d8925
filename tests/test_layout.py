"""The package layout: one module per format and provider, no import cycles, one registry for magic bytes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "boxpack"


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every boxpack module path imports, lazy imports inside functions included."""
    mod = _module(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            target = (base + ("." + node.module if node.module else "")) if node.level else (node.module or "")
            if target.startswith("boxpack"):
                if node.module:  # `from . import x` imports the submodule x, not the package
                    found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("boxpack"))
    return found


def test_no_import_cycles() -> None:
    files = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph = {m: {i for i in _imports(p) if i in files and i != m} for m, p in files.items()}
    # A package's __init__ importing its own submodules is registration, not a cycle, unless they import it back.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_magic_bytes_are_matched_only_in_the_format_registry_and_box_reader() -> None:
    """qcow2's and VMDK's magic, and the archive magics, each live in one place (compress.py writes gzip headers)."""
    allowed = {"formats", "box.py", "compress.py"}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in allowed or rel.name in allowed:
            continue
        text = path.read_text()
        for magic in (r"QFI\\xfb", "KDMV", r"\\x1f\\x8b", "conectix", "vhdxfile", "ustar"):
            assert not re.search(magic, text), f"{rel} matches {magic}"
