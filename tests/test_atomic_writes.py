"""Every file the product writes goes through the atomic helper (``fdsl.atomic``: temporary name,
fsync, rename), checked on the source: no module writes a path with ``open(..., "w")``,
``savefig(path)``, ``np.save``, ``to_csv(path)``, ``write_text`` and the like.

Writing into an in-memory buffer (``io.BytesIO``) or under a temporary name that is then renamed
(``fdsl.atomic.temp_path``, a name holding ``TMP_MARK``) is the atomic protocol itself and is
allowed; so is ``fdsl_pkg/atomic.py``, the helper.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("fdsl_pkg", "generators", "render", "datasets", "train", "studies")
HELPER = ROOT / "fdsl_pkg" / "atomic.py"

# Calls that make in-memory buffers or temporary names; writing into those is safe.
SAFE_MAKERS = {"BytesIO", "StringIO", "temp_path", "NamedTemporaryFile", "TemporaryFile",
               "SpooledTemporaryFile", "mkstemp", "mkdtemp", "TemporaryDirectory"}
WRITE_MODES = set("wax+")
WRITE_FLAGS = {"O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND", "O_TRUNC"}
# method name -> index of the argument naming the destination (None: the receiver itself)
DEST_ARG = {"savefig": 0, "save": 0, "tofile": 0, "to_csv": 0, "to_json": 0, "to_parquet": 0,
            "to_pickle": 0, "save_to_disk": 0, "write_text": None, "write_bytes": None}
NUMPY_SAVES = {"save", "savez", "savez_compressed", "savetxt"}


def _name(func: ast.expr) -> str:
    """``np.save`` -> "np.save", ``open`` -> "open", ``x.y.savefig`` -> "x.y.savefig"."""
    return ast.unparse(func)


def _root(expr: ast.expr) -> str:
    """What a destination expression is made from: ``str(tmp / "x")`` and ``tmp.name`` -> "tmp"."""
    while True:
        if isinstance(expr, ast.Call) and _name(expr.func) in ("str", "os.fspath", "Path") and expr.args:
            expr = expr.args[0]
        elif isinstance(expr, ast.BinOp):
            expr = expr.left
        elif isinstance(expr, ast.Attribute) and expr.attr == "name":
            expr = expr.value
        else:
            return ast.unparse(expr)


def _is_safe_value(value: ast.expr) -> bool:
    for node in ast.walk(value):
        if isinstance(node, ast.Call) and _name(node.func).split(".")[-1] in SAFE_MAKERS:
            return True
        if isinstance(node, ast.Name | ast.Attribute) and _name(node).split(".")[-1] == "TMP_MARK":
            return True
    return False


def _safe_names(scope: ast.AST) -> set[str]:
    """Names (and ``self.x`` attributes) bound in ``scope`` to a buffer or a temporary name."""
    safe = {"os.devnull"}
    for node in ast.walk(scope):
        pairs: list[tuple[ast.expr, ast.expr]] = []
        if isinstance(node, ast.Assign):
            pairs = [(t, node.value) for t in node.targets]
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            pairs = [(node.target, node.value)]
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            pairs = [(node.optional_vars, node.context_expr)]
        elif isinstance(node, ast.Lambda):
            # A callback writes into whatever stream its caller hands it.
            safe |= {a.arg for a in node.args.args}
        for target, value in pairs:
            if _is_safe_value(value):
                for t in ast.walk(target):
                    if isinstance(t, ast.Name | ast.Attribute):
                        safe.add(ast.unparse(t))
    return safe


def _mode(call: ast.Call, position: int) -> str | None:
    """The constant mode string of a call (positional ``position`` or ``mode=``); "?" if not constant."""
    node = call.args[position] if len(call.args) > position else None
    for kw in call.keywords:
        if kw.arg == "mode":
            node = kw.value
    if node is None:
        return None
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else "?"


def _destination(call: ast.Call) -> ast.expr | None:
    """The path a call writes to, or None when it writes no file."""
    name = _name(call.func)
    last = name.split(".")[-1]
    if name in ("open", "io.open", "tarfile.open", "h5py.File", "zipfile.ZipFile"):
        mode = _mode(call, 1)
        if mode is not None and (mode == "?" or WRITE_MODES & set(mode)) and call.args:
            return call.args[0]
        return None
    if name == "os.open" and len(call.args) >= 2:
        flags = {n.attr for n in ast.walk(call.args[1]) if isinstance(n, ast.Attribute)}
        flags |= {n.id for n in ast.walk(call.args[1]) if isinstance(n, ast.Name)}
        return call.args[0] if flags & WRITE_FLAGS else None
    if name in ("torch.save",) and len(call.args) >= 2:
        return call.args[1]
    if name.split(".")[0] in ("np", "numpy") and last in NUMPY_SAVES and call.args:
        return call.args[0]
    if isinstance(call.func, ast.Attribute):
        if last == "open":  # Path.open("w"); Image.open(path) and the like take no literal mode
            mode = _mode(call, 0)
            return call.func.value if mode not in (None, "?") and WRITE_MODES & set(mode) else None
        if last in DEST_ARG:
            index = DEST_ARG[last]
            if index is None:
                return call.func.value
            return call.args[index] if len(call.args) > index else None
    return None


def unsafe_writes(path: Path) -> list[str]:
    """``file:line: call`` of each write in ``path`` that bypasses the atomic helper."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]

    def enclosing(node: ast.AST, kinds: list[ast.AST]) -> list[ast.AST]:
        return [k for k in kinds if any(n is node for n in ast.walk(k))]

    module_safe = _safe_names(ast.Module(body=[s for s in tree.body if not isinstance(
        s, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)], type_ignores=[]))
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        dest = _destination(call)
        if dest is None:
            continue
        safe = set(module_safe)
        for scope in enclosing(call, functions):
            safe |= _safe_names(scope)
        for cls in enclosing(call, classes):  # self._tmp set in __init__, written in a method
            safe |= {n for n in _safe_names(cls) if n.startswith("self.")}
        if _root(dest) not in safe:
            found.append(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:"
                         f"{call.lineno}: {ast.unparse(call)[:80]}")
    return found


def test_no_product_module_writes_outside_the_atomic_helper() -> None:
    files = sorted(f for folder in PRODUCT for f in (ROOT / folder).rglob("*.py") if f != HELPER)
    assert len(files) > 50
    assert [w for f in files for w in unsafe_writes(f)] == []


PROBE = '''
import io, os, numpy as np, torch
from fdsl.atomic import TMP_MARK, temp_path

def bad(path, fig, frame, array):
    with open(path, "w") as fh:
        fh.write("x")
    fig.savefig(path, dpi=100)
    np.save(path, array)
    frame.to_csv(path)
    path.write_text("x")
    torch.save({}, path)
    with path.open("ab") as fh:
        pass
    os.open(path, os.O_WRONLY | os.O_CREAT)

def good(path, fig, array, image):
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    np.save(buf, array)
    torch.save({}, buf)
    with open(path) as fh:
        fh.read()
    tmp = temp_path(path)
    with open(tmp, "wb") as fh:
        fh.write(b"")
    stage = path / f".stage{TMP_MARK}1"
    image.save_to_disk(str(stage / "data"))
    with open(os.devnull, "w") as null:
        pass
    (lambda fh: fig.savefig(fh))(buf)
    os.open(path, os.O_RDONLY)

class Writer:
    def __init__(self, path):
        self._tmp = temp_path(path)

    def open(self, h5py):
        return h5py.File(self._tmp, "w")
'''


def test_the_checker_finds_direct_writes_and_allows_buffers_and_temporary_names(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    lines = sorted(int(w.split(":")[1]) for w in unsafe_writes(probe))
    assert lines == [6, 8, 9, 10, 11, 12, 13, 15]


@pytest.mark.parametrize("source, expected", [
    ("open(p, mode)", 1), ("open(p, 'r')", 0), ("open(p, 'r+')", 1), ("np.savez(p, a=1)", 1),
    ("img.save(p)", 1), ("tarfile.open(p, 'w')", 1), ("x.to_csv()", 0),
])
def test_the_checker_reads_modes_and_destinations(tmp_path: Path, source: str, expected: int) -> None:
    probe = tmp_path / "one.py"
    probe.write_text(f"def f(p, img, x, mode):\n    {source}\n")
    assert len(unsafe_writes(probe)) == expected
