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
    """qcow2's and VMDK's magic, and the archive magics, each live in one place (output/gzip.py writes gzip headers)."""
    allowed = {"formats", "archive.py", "gzip.py"}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in allowed or rel.name in allowed:
            continue
        text = path.read_text()
        for magic in (r"QFI\\xfb", "KDMV", r"\\x1f\\x8b", "conectix", "vhdxfile", "ustar"):
            assert not re.search(magic, text), f"{rel} matches {magic}"


# Where each provider's name may appear as a string in boxpack/: its provider module, its descriptor
# module, and kin that share a box format (vagrant-qemu reads libvirt's boxes; libvirt's driver is
# "qemu"). A new provider is its module, its descriptor and format modules, and one registration line.
PROVIDER_MODULES = {
    "libvirt": {"providers/libvirt.py", "providers/qemu.py", "descriptors/libvirt.py"},
    "qemu": {"providers/qemu.py", "providers/libvirt.py", "descriptors/libvirt.py"},
    "virtualbox": {"providers/virtualbox.py"},
    "vmware_desktop": {"providers/vmware_desktop.py"},
    "hyperv": {"providers/hyperv.py"},
    "parallels": {"providers/parallels.py"},
    "utm": {"providers/utm.py"},
}


def test_each_provider_name_is_known_only_to_its_own_modules() -> None:
    from boxpack.providers import PROVIDERS

    assert set(PROVIDERS) == set(PROVIDER_MODULES)
    mentions: dict[str, set[str]] = {name: set() for name in PROVIDERS}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in mentions:
                mentions[node.value].add(str(path.relative_to(PACKAGE)))
    assert mentions == {name: PROVIDER_MODULES[name] & mentions[name] for name in PROVIDERS}, mentions
    assert all(f"providers/{name}.py" in mentions[name] for name in PROVIDERS)
    for cls in PROVIDERS.values():  # what boxpack test gives its VM is the provider's to say
        bus, nic = cls.TEST_DEVICES
        assert bus in ("virtio", "sata") and nic in ("virtio-net-pci", "e1000", "e1000e"), cls


# The floors of the house, from the ground up, in the order the bytes travel: a module may import only from
# its own floor and those below, and every module stands on one. The disk floor is what every format reads
# through; formats and descriptors read and write one kind of file each; sources open anything by its bytes;
# output lays boxes out; providers say what a box holds; packing makes boxes and inspect reads them back;
# publishing puts them where Vagrant finds them; a run is packing and the steps after it, what the command
# line (on top) runs.
FLOORS = (
    ("ground", {"boxpack", "boxpack.errors", "boxpack.findings", "boxpack.report", "boxpack.ordered", "boxpack.accel",
                "boxpack.progress", "boxpack.member", "boxpack.vagrantfile", "boxpack.metadata", "boxpack.files",
                "boxpack.mkosi", "boxpack.options", "boxpack.xmltree",
                "boxpack.signatures"}),
    ("disk", {"boxpack.disk"}),
    ("formats", {"boxpack.formats", "boxpack.descriptors"}),
    ("sources", {"boxpack.sources"}),
    ("output", {"boxpack.output"}),
    ("providers", {"boxpack.providers"}),
    ("packing", {"boxpack.catalog", "boxpack.settings", "boxpack.packing", "boxpack.inspect"}),
    ("publishing", {"boxpack.publishing"}),
    ("a run", {"boxpack.run"}),
    ("command line", {"boxpack.cli", "boxpack.__main__"}),
)


def _floor(module: str) -> int:
    """The floor a module stands on: the longest prefix that names one (boxpack itself: the package's face,
    which imports nothing, its names loaded when first used)."""
    best = (-1, -1)
    for i, (_, names) in enumerate(FLOORS):
        for name in names:
            if module == name or (name != "boxpack" and module.startswith(name + ".")):
                best = max(best, (len(name), i))
    return best[1]


def test_every_module_stands_on_a_floor() -> None:
    missing = [_module(p) for p in PACKAGE.rglob("*.py") if _floor(_module(p)) < 0]
    assert not missing, f"add each to FLOORS: {missing}"


def test_no_floor_imports_a_higher_one() -> None:
    modules = {_module(p) for p in PACKAGE.rglob("*.py")}
    for path in PACKAGE.rglob("*.py"):
        mod = _module(path)
        here = _floor(mod)
        up = {i for i in _imports(path) if (i if i in modules else i.rsplit(".", 1)[0]) in modules
              and _floor(i if i in modules else i.rsplit(".", 1)[0]) > here}
        assert not up, f"{mod} ({FLOORS[here][0]}) imports from above: {sorted(up)}"
    for path in (PACKAGE / "formats").rglob("*.py"):  # formats read through the disk floor, never through sources
        assert not {i for i in _imports(path) if i.startswith(("boxpack.sources", "boxpack.descriptors"))}, path


def test_every_package_is_in_the_wheel() -> None:
    """pip install . (the README's lines, and CI) ships only the packages pyproject.toml lists."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert listed == {_module(p.parent / "__init__.py") for p in PACKAGE.rglob("__init__.py")}


def test_files_are_placed_by_one_writer() -> None:
    """Boxes, checksum files, catalogs and directory-store objects all go through files.py: one policy for
    fsync, mode and never replacing a file unasked. No other module renames, links or fsyncs."""
    for path in PACKAGE.rglob("*.py"):
        if path.name == "files.py" and path.parent == PACKAGE:
            continue
        text = path.read_text()
        for call in ("os.replace(", "os.rename(", "os.link(", "os.fsync(", "mkstemp("):
            assert call not in text, f"{path.relative_to(PACKAGE)} calls {call}"
