"""The import rule of docs/architecture.md: lower floors never import higher ones.

The floors are read from the documentation itself (the sentence "Lower floors never import
higher ones: a, b -> c -> ..."), so the rule checked is the rule written. Every import
statement of every module counts, those inside functions (imported late to keep start-up
fast or to break a cycle) and under ``TYPE_CHECKING`` included: they are dependencies all
the same.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import precomputed_tif

PACKAGE = Path(precomputed_tif.__file__).parent
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"

# Imports that go up a floor today, each with why it is there. An entry that no longer
# matches any import fails the test, so a fixed one is taken off the list.
ALLOWED_UPWARD = {
    # An existing dataset as a source is read through its format's store (imported inside
    # the functions that need it, so that sources/ loads without formats/).
    ("precomputed_tif.sources", "precomputed_tif.formats.stores"):
        "DatasetSource reads a dataset through its format's store",
    # The version number is set on the package's first line, before it imports anything,
    # so reading it (inside a function) adds no dependency on what the package imports.
    ("precomputed_tif.formats.ome_tiff.metadata", "precomputed_tif.__version__"):
        "the version number written into an OME-TIFF's Creator",
}


def documented_floors(text: str) -> list[set[str]]:
    """The floors, lowest first, of the sentence "Lower floors never import higher ones:
    a, b -> c -> ..." in ``text``: each a set of top-level names of the package."""
    m = re.search(r"Lower floors never import higher ones:\s*(.*?)\.(?:\s|$)", text, re.S)
    assert m, "docs/architecture.md no longer states the floors"
    floors = [{name.strip(" `\n") for name in part.split(",")} for part in m.group(1).split("->")]
    assert all(all(re.fullmatch(r"[a-z_]+", n) for n in f) for f in floors), floors
    return floors


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.Import | ast.ImportFrom, name: str, is_package: bool) -> list[str]:
    """The dotted names ``node`` (in module ``name``) imports: a module, or for ``from m
    import x`` the submodule ``m.x`` when there is one, else ``m.x`` as an attribute of ``m``."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    return [f"{module}.{a.name}" for a in node.names]


def floor_of(dotted: str, package: str, floors: list[set[str]]) -> int | None:
    """The floor of a name inside the package (None for anything outside it); the package
    itself, and any name set in its ``__init__``, is above every floor."""
    parts = dotted.split(".")
    if parts[0] != package:
        return None
    top = parts[1] if len(parts) > 1 else ""
    for i, names in enumerate(floors):
        if top in names:
            return i
    return len(floors)


def upward_imports(root: Path, floors: list[set[str]]) -> list[tuple[str, int, str]]:
    """(module, line, imported name) of every import in the package at ``root`` of a name on a
    higher floor than the module's own. A module whose top-level name is on no floor is an
    error: the documentation must place it."""
    package = root.name
    found = []
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        own = floor_of(name, package, floors)
        if name != package:
            assert own is not None and own < len(floors), (
                f"{name} is on no floor: place {name.split('.')[1]} in the floors of docs/architecture.md")
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in imported(node, name, is_package):
                other = floor_of(target, package, floors)
                if other is None:
                    continue
                if other > own:
                    found.append((name, node.lineno, target))
    return found


def _allowed(module: str, target: str, entry: tuple[str, str]) -> bool:
    """Whether the import of ``target`` by ``module`` is the allowed ``entry`` (a module
    and a module or name it may import, with anything imported from that module)."""
    m, t = entry
    return module == m and (target == t or target.startswith(t + "."))


def test_lower_floors_never_import_higher_ones():
    floors = documented_floors(ARCHITECTURE.read_text())
    found = upward_imports(PACKAGE, floors)
    unexplained = [f"{m}:{line} imports {t}" for m, line, t in found
                   if not any(_allowed(m, t, entry) for entry in ALLOWED_UPWARD)]
    assert not unexplained, "imports from a higher floor:\n" + "\n".join(unexplained)
    stale = [entry for entry in ALLOWED_UPWARD if not any(_allowed(m, t, entry) for m, _, t in found)]
    assert not stale, f"allowed upward imports that no longer exist (take them off the list): {stale}"


def test_nothing_below_the_commands_imports_them():
    floors = documented_floors(ARCHITECTURE.read_text())
    cli = next(i for i, names in enumerate(floors) if "cli" in names)
    assert {"serving", "pipeline", "formats", "storage", "sources", "process"} <= set().union(*floors[:cli])
    found = upward_imports(PACKAGE, floors)
    assert not [f for f in found if f[2].startswith("precomputed_tif.cli")]


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_check_finds_an_upward_import_however_it_is_written(tmp_path):
    floors = documented_floors("Lower floors never import higher ones: low -> mid, side -> top.\n")
    assert floors == [{"low"}, {"mid", "side"}, {"top"}]
    pkg = _write(tmp_path / "pkg", {
        "__init__.py": "from .top import main\n",
        "low.py": "import os\n",
        "mid/__init__.py": "from .. import low\nfrom ..side import helper\n",
        "mid/sub/__init__.py": "",
        "mid/sub/deep.py": "def f():\n    from ...top import cmd\n",  # late, two folders down
        "side.py": "import pkg.top\n",  # absolute
        "top/__init__.py": "from ..mid import deep\n",
        "top/cmd.py": "from pkg import low\n",
    })
    found = upward_imports(pkg, floors)
    assert [(m, t) for m, _, t in found] == [("pkg.mid.sub.deep", "pkg.top.cmd"), ("pkg.side", "pkg.top")]
    # A name set in the package's own __init__ is above every floor.
    _write(pkg, {"low.py": "from . import main\n"})
    assert ("pkg.low", "pkg.main") in [(m, t) for m, _, t in upward_imports(pkg, floors)]
    # A module the floors do not place is refused, not skipped.
    _write(pkg, {"stray.py": ""})
    with pytest.raises(AssertionError, match="stray"):
        upward_imports(pkg, floors)
