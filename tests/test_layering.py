"""The layers of ARCHITECTURE.md, checked on the source: each folder imports only the layers below it.

fdsl (fdsl_pkg/) <- datasets/ <- generators/, render/, train/ <- studies/. A generator or renderer
writes through datasets/, training reads through it, and nothing below imports what is above.
One crossing between siblings, in one file: train/data.py opens ``--data gen:FOLDER`` with
generators' on-the-fly data set (generators never import train).
"""

from __future__ import annotations

import ast
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
# file -> the further layers it may import (lazily, inside the function that needs it)
CROSSINGS = {"train/data.py": {"generators"}}


def fdsl_imports(path: Path) -> set[str]:
    """The fdsl subpackages a file imports anywhere in it (lazy imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "fdsl" and len(parts) > 1 and parts[1] in SUBPACKAGES:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(folder: str) -> None:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"no sources in {folder}/"
    wrong = {str(f.relative_to(ROOT)): sorted(fdsl_imports(f) - ALLOWED[folder]
                                              - CROSSINGS.get(str(f.relative_to(ROOT)), set())) for f in files}
    assert {f: w for f, w in wrong.items() if w} == {}


def test_the_checker_sees_lazy_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from fdsl.train.loop import train_classifier\n    import fdsl.render.cli\n")
    assert fdsl_imports(probe) == {"train", "render"}
