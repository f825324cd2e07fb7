"""A refused run leaves everything exactly as it was: every command (train-classifier's table is
in test_train.py) with bad inputs of every kind exits 2 with one line, creates no folder, and in
an existing folder adds, removes and changes nothing (names, sizes, mtimes and bytes of every
file and folder compared; no ``.fdsl.lock`` left behind)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fake_cub import make_fake_cub
from helpers import ViewsSource, exit_code
from toy_source import ToySource

from fdsl.datasets.builder.build import build_dataset
from fdsl.entry import COMMANDS, command_main


def _main(prog: str) -> Callable[[list[str]], int]:
    return lambda argv: command_main(prog)(argv)


MAINS = {prog: _main(prog) for prog in COMMANDS if prog != "train-classifier"}  # test_train.py has its table


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inputs the commands read (they must not change either): data sets, a fake CUB tree,
    broken files and folders."""
    root = tmp_path_factory.mktemp("inputs")
    build_dataset(ToySource(classes=3, per_class=10), root / "toy", shard_size=10, workers=1)
    build_dataset(ViewsSource(), root / "views", shard_size=60, workers=1)
    make_fake_cub(root / "cub")
    (root / "empty").mkdir()
    (root / "notdata").mkdir()
    (root / "notdata" / "readme.txt").write_text("not a data set\n")
    (root / "random.bin").write_bytes(np.random.default_rng(0).bytes(300))
    (root / "empty.bin").write_bytes(b"")
    (root / "cub-broken" / "CUB_200_2011").mkdir(parents=True)
    (root / "cub-broken" / "CUB_200_2011" / "images.txt").write_text("1 a.jpg\nnot numbers\n")
    from fdsl.datasets.export.export import export_shards

    export_shards(root / "toy", "webdataset", root / "export")
    partial = root / "partial"
    shutil.copytree(root / "toy", partial)
    (partial / "shard-00001.h5").unlink()
    return root


def _state(*folders: Path) -> dict[str, tuple]:
    """Every entry below ``folders`` (themselves included): kind, size, mtime and sha256."""
    state = {}
    for folder in folders:
        if not folder.exists():
            state[str(folder)] = ("missing",)
            continue
        for path in [folder, *sorted(folder.rglob("*"))]:
            st = path.lstat()
            if path.is_file():
                state[str(path)] = ("file", st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                state[str(path)] = ("dir" if path.is_dir() else "other", st.st_mtime_ns)
    return state


# Where --out is before the run: new (absent), new/deeper (absent with absent parents), empty,
# foreign (a non-empty folder without a manifest), dataset (a finished set of other settings),
# study (a finished run-study folder of other settings), file (a regular file).
def _prepare_out(where: str, out: Path, inputs: Path) -> None:
    if where == "empty":
        out.mkdir()
    elif where == "foreign":
        out.mkdir()
        (out / "notes.txt").write_text("the user's own file\n")
    elif where == "dataset":
        shutil.copytree(inputs / "toy", out)
    elif where == "file":
        out.write_text("a file, not a folder\n")
    elif where == "export":
        shutil.copytree(inputs / "export", out)
    elif where == "study":
        out.mkdir()
        (out / "study.json").write_text(json.dumps({"study": "pruning", "settings": {"sizes": [99]}}) + "\n")


GEN = ["--db", "rcdb", "--classes", "2", "--instances", "2", "--image-size", "32", "--workers", "1"]
RENDER = ["--classes", "chair", "--models-per-class", "1", "--views", "2", "--image-size", "32", "--workers", "1"]
CUB = ["--root", "{in}/cub", "--workers", "1", "--image-size", "16"]
PRUNE = ["pruning", "--data", "{in}/views", "--preset", "mini", "--sizes", "10", "--splits", "1",
         "--test-per-class", "10", "--threads", "1"]
# (command, where --out is, argv with {out} and {in}, words of the one-line message)
REFUSALS = [
    ("gen-fractal", "foreign", GEN + ["--out", "{out}"], "holds no fdsl manifest"),
    ("gen-fractal", "dataset", GEN + ["--out", "{out}"], "--overwrite"),
    ("gen-fractal", "file", GEN + ["--out", "{out}"], "{out}"),
    ("gen-fractal", "new", GEN + ["--out", "{out}/deeper/still", "--classes", "0"], "positive integer"),
    ("gen-fractal", "new", GEN + ["--out", "{out}/deeper", "--instances", "2000000"], "--instances"),
    ("gen-fractal", "empty", GEN + ["--out", "{out}", "--image-size", "100000"], "--image-size"),
    ("gen-fractal", "empty", GEN + ["--out", "{out}", "--points", "10"], "--points"),
    ("gen-fractal", "empty", ["--db", "fractaldb", "--classes", "2", "--instances", "2", "--image-size", "32",
                              "--workers", "1", "--params-from", "{in}/missing.npz", "--out", "{out}"], "missing.npz"),
    ("gen-fractal", "new", ["--db", "fractaldb", "--classes", "2", "--instances", "2", "--image-size", "32",
                            "--workers", "1", "--params-from", "{in}/random.bin", "--out", "{out}"], "random.bin"),
    ("gen-fractal", "new", ["--db", "fractaldb", "--classes", "2", "--instances", "2", "--image-size", "32",
                            "--workers", "1", "--params-from", "{in}/empty", "--out", "{out}"], "empty"),
    ("gen-fractal", "empty", GEN + ["--out", "{out}", "--backend", "nope"], "invalid choice"),
    ("gen-fractal", "new", GEN + ["--out", "{out}", "--fill-rate", "0.3"], "--fill-rate"),
    ("gen-fractal", "empty", GEN + ["--out", "{out}", "--shard-size", "0"], "positive integer"),
    ("gen-fractal", "foreign", GEN + ["--out", "{out}", "--no-such-flag"], "unrecognized arguments"),
    ("gen-fractal", "dataset", GEN + ["--out", "{out}", "--format", "tiff"], "invalid choice"),
    ("render-shapenet", "foreign", RENDER + ["--out", "{out}"], "holds no fdsl manifest"),
    ("render-shapenet", "dataset", RENDER + ["--out", "{out}"], "--overwrite"),
    ("render-shapenet", "file", RENDER + ["--out", "{out}"], "{out}"),
    ("render-shapenet", "new", RENDER + ["--out", "{out}", "--shapenet-root", "{in}/missing"], "no such folder"),
    ("render-shapenet", "empty", RENDER + ["--out", "{out}", "--shapenet-root", "{in}/empty"], "no ShapeNetCore"),
    ("render-shapenet", "new", ["--out", "{out}/deeper", "--classes", "unicorn", "--workers", "1"], "unknown class"),
    ("render-shapenet", "empty", ["--out", "{out}", "--classes", "chair,chair", "--workers", "1"], "twice"),
    ("render-shapenet", "empty", RENDER + ["--out", "{out}", "--views", "10000000000"], "limit of 1,000,000"),
    ("render-shapenet", "new", RENDER + ["--out", "{out}", "--shapenet-root", "{in}/notdata"], "no ShapeNetCore"),
    ("render-shapenet", "foreign", RENDER + ["--out", "{out}", "--image-size", "8"], "between 16 and 4096"),
    ("import-cub", "foreign", CUB + ["--out", "{out}"], "holds no fdsl manifest"),
    ("import-cub", "dataset", CUB + ["--out", "{out}"], "--overwrite"),
    ("import-cub", "file", CUB + ["--out", "{out}"], "{out}"),
    ("import-cub", "new", ["--root", "{in}/missing", "--out", "{out}"], "no such folder"),
    ("import-cub", "new", ["--root", "{in}/empty", "--out", "{out}/deeper"], "empty"),
    ("import-cub", "empty", ["--root", "{in}/cub-broken", "--out", "{out}"], "images.txt"),
    ("import-cub", "empty", CUB + ["--out", "{out}", "--classes", "500"], "classes"),
    ("import-cub", "new", ["--root", "{in}/toy", "--out", "{out}"], "images.txt"),
    ("import-cub", "dataset", CUB + ["--out", "{out}", "--split", "val"], "invalid choice"),
    ("inspect-shards", "new", ["{in}/missing"], "no such data set folder"),
    ("inspect-shards", "new", ["{in}/notdata"], "manifest"),
    ("inspect-shards", "new", ["{in}/empty"], "manifest"),
    ("inspect-shards", "new", ["{in}/toy", "--grid", "{out}/deeper/grid.png", "--sort-by", "nope"],
     "not a metadata field"),
    ("inspect-shards", "new", ["{in}/toy", "--hist", "nope", "{out}/hist.png"], "nope"),
    ("inspect-shards", "empty", ["{in}/toy", "--grid", "{out}"], "is a folder"),
    ("inspect-shards", "file", ["{in}/toy", "--grid", "{out}/g.png"], "--grid"),
    ("inspect-shards", "new", ["{in}/toy", "--hist", "inst", "{out}/deeper/hist.txt"], ".png"),
    ("inspect-shards", "new", ["{in}/toy", "--grid", "{out}/g.png", "--per-class", "0"], "positive integer"),
    ("inspect-shards", "new", ["{in}/partial", "--grid", "{out}/g.png"], "shard-00001"),
    ("export-shards", "new", ["{in}/missing", "--to", "imagefolder", "{out}"], "missing"),
    ("export-shards", "new", ["{in}/notdata", "--to", "webdataset", "{out}/deeper"], "manifest"),
    ("export-shards", "new", ["{in}/partial", "--to", "imagefolder", "{out}"], "shard-00001"),
    ("export-shards", "foreign", ["{in}/toy", "--to", "imagefolder", "{out}"], "no fdsl export wrote"),
    ("export-shards", "dataset", ["{in}/toy", "--to", "imagefolder", "{out}"], "no fdsl export wrote"),
    ("export-shards", "file", ["{in}/toy", "--to", "webdataset", "{out}"], "{out}"),
    ("export-shards", "new", ["{in}/toy", "--to", "imagefolder", "{in}/toy/inside"], "outside the data set"),
    ("export-shards", "export", ["{in}/toy", "--to", "webdataset", "{out}"], "--overwrite"),
    ("export-shards", "export", ["{in}/toy", "--to", "imagefolder", "{out}", "--samples-per-tar", "0"],
     "positive integer"),
    ("export-shards", "empty", ["{in}/toy", "--to", "parquet", "{out}"], "invalid choice"),
    ("run-study", "new", PRUNE + ["--out", "{out}", "--field", "nope"], "nope"),
    ("run-study", "study", PRUNE + ["--out", "{out}"], "other settings"),
    ("run-study", "study", ["augment", "--data", "{in}/toy", "--candidates", "flip", "--preset", "mini",
                            "--out", "{out}"], "other settings"),
    ("run-study", "empty", ["pruning", "--data", "{in}/missing", "--out", "{out}"], "missing"),
    ("run-study", "new", ["pruning", "--data", "{in}/notdata", "--out", "{out}/deeper"], "notdata"),
    ("run-study", "foreign", PRUNE + ["--out", "{out}", "--test-data", "{in}/missing"], "missing"),
    ("run-study", "file", PRUNE + ["--out", "{out}"], "{out}"),
    ("run-study", "new", PRUNE + ["--out", "{out}", "--sizes", "100000"], "100000"),
    ("run-study", "empty", PRUNE + ["--out", "{out}", "--finetune-from", "{in}/random.bin"], "random.bin"),
    ("run-study", "new", ["transfer", "--pretrain", "p={in}/missing", "--downstream", "digits", "--out", "{out}"],
     "missing"),
    ("run-study", "new", ["transfer", "--pretrain", "no-equals-sign", "--downstream", "digits", "--out", "{out}"],
     "NAME=DIR"),
    ("run-study", "empty", ["augment", "--data", "{in}/toy", "--candidates", "teleport", "--out", "{out}"],
     "teleport"),
    ("run-study", "new", ["transfer", "--pretrain", "p={in}/toy", "--downstream", "d={in}/missing", "--out",
                          "{out}"], "missing"),
    ("run-study", "foreign", PRUNE + ["--out", "{out}", "--fraction", "1.5"], "between 0 and 1"),
    ("run-study", "empty", PRUNE + ["--out", "{out}", "--set", "train_indices=x"], "train_indices"),
    ("run-study", "new", ["augment", "--data", "{in}/toy", "--candidates", "flip", "--top", "0", "--out", "{out}"],
     "positive integer"),
    ("run-study", "new", ["augment", "--data", "{in}/missing", "--candidates", "flip", "--out", "{out}"], "missing"),
    ("run-study", "new", ["stats", "{in}/missing", "--out", "{out}"], "missing"),
    ("run-study", "empty", ["stats", "{in}/toy", "--out", "{out}", "--checkpoint", "{in}/random.bin"], "random.bin"),
    ("run-study", "new", ["stats", "{in}/toy", "--out", "{out}/deeper", "--checkpoint", "{in}/empty.bin"],
     "empty.bin"),
]


@pytest.mark.parametrize("prog,where,argv,message", REFUSALS,
                         ids=[f"{p}:{w}:{m}" for p, w, _, m in REFUSALS])
def test_a_refused_run_leaves_everything_as_it_was(prog, where, argv, message, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    _prepare_out(where, out, inputs)
    argv = [a.format(out=out, **{"in": inputs}) for a in argv]
    before = _state(tmp_path, inputs)
    code = exit_code(MAINS[prog], argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    assert len(err.splitlines()) == 1 and err.startswith(prog) and ": error: " in err, err  # run-study SUB: error
    assert message.format(out=out) in err, err
    after = _state(tmp_path, inputs)
    changed = {k: (before.get(k), after.get(k)) for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert not changed, f"the refused run changed: {json.dumps(changed, indent=1, default=str)}"


def test_the_table_covers_every_command_but_train_classifier():
    assert {prog for prog, *_ in REFUSALS} == set(MAINS) == set(COMMANDS) - {"train-classifier"}
