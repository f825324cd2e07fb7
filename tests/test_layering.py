"""The layers of ARCHITECTURE.md, checked on the source: each folder imports only the layers below it,
each room of datasets/ only the rooms before it on the data's way, and nothing loops.

fdsl (fdsl_pkg/) <- datasets/ <- generators/, render/, train/ <- studies/. A generator or renderer
writes through datasets/, training reads through it, and nothing below imports what is above.
An import is any ``import`` statement (lazy ones inside functions and ``TYPE_CHECKING`` ones too)
and any string constant naming an fdsl module, which is what ``importlib`` loads
(``registry.BUILTIN_MODULES``, the ``_LAZY`` maps of the package facades).
Two exceptions (``CROSSINGS``): train/data.py opens ``--data gen:FOLDER`` with generators'
on-the-fly data set (generators never import train), and fdsl_pkg/entry.py, the console scripts'
shim, names every command's module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = {"generators", "render", "datasets", "train", "studies"}
ALLOWED = {
    "fdsl_pkg": set(),
    "datasets": {"datasets"},
    "generators": {"generators", "datasets"},
    "render": {"render", "datasets"},
    "train": {"train", "datasets"},
    "studies": {"studies", "datasets", "train"},
}
# file -> the further layers it may import (lazily, inside the function that needs it); the
# console scripts' shim names every command's module (as strings): the one place above all layers
CROSSINGS = {"train/data.py": {"generators"}, "fdsl_pkg/entry.py": set(SUBPACKAGES)}
# The rooms of datasets/ along the data's way, and the rooms each may import besides itself.
# ``datasets/__init__.py`` is the public facade and may name any of them.
ROOMS = {
    "format": set(),  # what is on disk; knows no builder, loader or tool
    "builder": {"format"},
    "read": {"format"},  # readers never import the builder's machinery
    "inspect": {"format", "read"},
    "export": {"format", "read"},
    "importers": {"builder", "format"},
}
STORAGES = ("hdf5", "png")
# The whole package must form no import loop (lazy and TYPE_CHECKING imports and importlib
# strings included), within a folder or across folders.
PACKAGE = ("fdsl_pkg", *sorted(SUBPACKAGES))
_MODULE = re.compile(r"^fdsl(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_FOLDER = {"fdsl": "fdsl_pkg", **{name: name for name in SUBPACKAGES}}


def module_refs(path: Path) -> set[str]:
    """Every fdsl module a file names: imported anywhere in it, or as an importlib string.
    ``from P import X`` names the module ``P.X`` when X is one (as ``import P.X`` does), else ``P``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if module_file(sub) is not None else node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE.match(node.value):
            found.add(node.value)
    return {name for name in found if name == "fdsl" or name.startswith("fdsl.")}


def fdsl_imports(path: Path) -> set[str]:
    """The fdsl subpackages (layers) a file imports."""
    return {name.split(".")[1] for name in module_refs(path)
            if len(name.split(".")) > 1 and name.split(".")[1] in SUBPACKAGES}


def module_file(name: str) -> Path | None:
    """The source file of fdsl module ``name`` (None for a name inside a module, e.g. a class)."""
    parts = name.split(".")
    if parts[0] != "fdsl":
        return None
    top = _FOLDER.get(parts[1], "fdsl_pkg") if len(parts) > 1 else "fdsl_pkg"
    rest = parts[2:] if len(parts) > 1 and parts[1] in SUBPACKAGES else parts[1:]
    base = ROOT.joinpath(top, *rest)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    """The fdsl module name of a source file."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    parts[0] = "fdsl" if parts[0] == "fdsl_pkg" else f"fdsl.{parts[0]}"
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _where(name: str) -> tuple[str, ...]:
    """(room, sub-folder, module) of a ``fdsl.datasets.*`` name, as far as it goes."""
    return tuple(name.split(".")[2:])


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(folder: str) -> None:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"no sources in {folder}/"
    wrong = {str(f.relative_to(ROOT)): sorted(fdsl_imports(f) - ALLOWED[folder]
                                              - CROSSINGS.get(str(f.relative_to(ROOT)), set())) for f in files}
    assert {f: w for f, w in wrong.items() if w} == {}


def test_datasets_is_only_rooms() -> None:
    loose = sorted(p.name for p in (ROOT / "datasets").glob("*.py") if p.name != "__init__.py")
    assert loose == [], "a datasets/ module outside the rooms of ROOMS"
    assert {p.name for p in (ROOT / "datasets").iterdir() if (p / "__init__.py").is_file()} == set(ROOMS)


@pytest.mark.parametrize("room", sorted(ROOMS))
def test_each_room_of_datasets_imports_only_the_rooms_before_it(room: str) -> None:
    wrong = {}
    for path in sorted((ROOT / "datasets" / room).rglob("*.py")):
        rooms = {_where(n)[0] for n in module_refs(path) if n.startswith("fdsl.datasets.") and _where(n)}
        if bad := sorted(rooms - ROOMS[room] - {room}):
            wrong[str(path.relative_to(ROOT))] = bad
    assert wrong == {}


def test_only_a_storage_knows_its_storage() -> None:
    """format/'s common modules name no storage, a storage no other storage, and a storage's
    reader not its writer; only format/__init__.py (the registry) names them all."""
    wrong = {}
    for path in sorted((ROOT / "datasets" / "format").rglob("*.py")):
        rel = path.relative_to(ROOT / "datasets" / "format")
        mine = rel.parts[0] if rel.parts[0] in STORAGES else None
        if rel == Path("__init__.py"):
            continue
        for name in module_refs(path):
            where = _where(name)
            if len(where) < 2 or where[0] != "format" or where[1] not in STORAGES:
                continue
            if where[1] != mine or (rel.name == "reader.py" and where[2:3] == ("writer",)):
                wrong.setdefault(str(rel), []).append(name)
    assert wrong == {}


def _graph(folders: tuple[str, ...]) -> dict[str, set[str]]:
    files = [p for folder in folders for p in (ROOT / folder).rglob("*.py")]
    names = {module_name(p) for p in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        targets = {module_file(n) for n in module_refs(path)}
        graph[module_name(path)] = {module_name(t) for t in targets if t is not None} & names
    return graph


def find_loop(folders: tuple[str, ...]) -> list[str] | None:
    """An import loop among the modules of ``folders`` (the modules on it, the first repeated at
    the end), or None."""
    graph = _graph(folders)
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt == node:
                continue
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state and (loop := visit(nxt, path + [node])):
                return loop
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (loop := visit(start, [])):
            return loop[loop.index(loop[-1]):]
    return None


def test_no_import_loops_in_the_whole_package() -> None:
    loop = find_loop(PACKAGE)
    assert loop is None, " -> ".join(loop)


def test_the_checker_sees_lazy_imports_and_importlib_strings(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from fdsl.train.loop import train_classifier\n    import fdsl.render.cli\n")
    assert fdsl_imports(probe) == {"train", "render"}
    probe.write_text('_LAZY = {"X": "fdsl.studies.cli"}\nBUILTIN_MODULES = ("fdsl.generators.rcdb",)\n'
                     'NOTE = "fdsl.train is documented here, not imported"\n')
    assert fdsl_imports(probe) == {"studies", "generators"}
    assert "generators" in fdsl_imports(ROOT / "generators" / "registry.py")  # BUILTIN_MODULES
    assert {"fdsl.datasets.read.dataset", "fdsl.datasets.builder.build"} <= module_refs(ROOT / "datasets" / "__init__.py")


def test_the_loop_finder_finds_a_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, other in (("a", "b"), ("b", "a")):
        (tmp_path / "fdsl_pkg").mkdir(exist_ok=True)
        (tmp_path / "fdsl_pkg" / f"{name}.py").write_text(
            f"from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fdsl.{other} import X\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert find_loop(("fdsl_pkg",)) == ["fdsl.a", "fdsl.b", "fdsl.a"]


def test_a_package_and_its_modules_loop_only_through_the_packages_own_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``from fdsl.pkg import other`` in a module of fdsl.pkg names the module fdsl.pkg.other, as
    ``import fdsl.pkg.other`` does; ``from fdsl.pkg import NAME`` names fdsl.pkg itself."""
    pkg = tmp_path / "fdsl_pkg" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from fdsl.pkg.sub import f\nNAME = 1\n")
    (pkg / "other.py").write_text("")
    (pkg / "sub.py").write_text("from fdsl.pkg import other\n\ndef f():\n    return other\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert find_loop(("fdsl_pkg",)) is None
    (pkg / "sub.py").write_text("def f():\n    from fdsl.pkg import NAME\n    return NAME\n")
    assert find_loop(("fdsl_pkg",)) == ["fdsl.pkg", "fdsl.pkg.sub", "fdsl.pkg"]
