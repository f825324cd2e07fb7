"""Every command as a batch job sees it (Slurm, nohup, CI): run as a console script in a process
of its own, stdout and stderr into files, ``FDSL_PROGRESS_INTERVAL=0`` (a progress line at every
update). Each prints its result once (not also as a log line), repeats no line, lets no other
library's INFO notes or terminal bars into the log, and each long command writes progress lines
"done/total ... ETA" into it; ``--quiet`` leaves only the result."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from fake_cub import make_fake_cub
from helpers import HANG_GUARD, ViewsSource
from toy_source import ToySource

from fdsl.datasets.builder.build import build_dataset

BIN = Path(sys.executable).parent
STUDY_END = [r"\bstudy (folder|done)\b"]  # the end of a study, as the CLI prints it or a log line says it
TRAIN = ["--set", "epochs=1", "--set", "image_size=16", "--set", "workers=0", "--set", "model=resnet18",
         "--threads", "1"]
HF = pytest.mark.skipif(importlib.util.find_spec("datasets") is None, reason="needs the datasets library")


def _row(name, argv, results, progress, marks=()):
    return pytest.param(argv, results, progress, id=name, marks=marks)


# (argv with {toy}, {views}, {cub} and {tmp}; what the result says, each exactly once in the two
# streams; a progress line the command writes, None for one that is not long work)
COMMANDS = [
    _row("gen-fractal fractaldb", ["gen-fractal", "--db", "fractaldb", "--classes", "2", "--instances", "4",
                                   "--image-size", "32", "--workers", "1", "--shard-size", "2", "--out", "{tmp}/fdb"],
         [r"8 images in 2 classes"], r"fractaldb: \d/8 img \(.*ETA"),
    _row("gen-fractal rcdb", ["gen-fractal", "--db", "rcdb", "--classes", "2", "--instances", "4", "--image-size", "32",
                              "--workers", "1", "--shard-size", "2", "--out", "{tmp}/rcdb"],
         [r"8 images in 2 classes"], r"rcdb: \d/8 img \(.*ETA"),
    _row("render-shapenet", ["render-shapenet", "--classes", "chair,car", "--models-per-class", "2", "--views", "4",
                             "--image-size", "32", "--workers", "1", "--out", "{tmp}/render"],
         [r"16 images in 2 classes", r"models: 4 rendered"], r"render-shapenet: \d+/16 img \(.*ETA"),
    _row("import-cub", ["import-cub", "--root", "{cub}", "--image-size", "16", "--workers", "1", "--out", "{tmp}/cub"],
         [r"11 images in 3 classes", r"1 unreadable images skipped"], r"cub-200-2011: \d+/12 img \(.*ETA"),
    _row("inspect-shards", ["inspect-shards", "--data", "{toy}", "--verify", "--grid", "{tmp}/grid.png",
                            "--stats", "{tmp}/stats"],
         [r"checksums OK", r"grid\.png", r"stats\.json"], r"verify: \d/2 shard \(.*ETA"),
    _row("inspect-shards summary", ["inspect-shards", "{toy}"], [r"images +16 of 16"], None),
    _row("export-shards webdataset", ["export-shards", "{toy}", "--to", "webdataset", "{tmp}/wds"],
         [r"exported 16 images"], r"export webdataset: \d+/16 img \(.*ETA"),
    _row("export-shards imagefolder", ["export-shards", "--data", "{toy}", "--to", "imagefolder", "--out", "{tmp}/if"],
         [r"exported 16 images"], r"export imagefolder: \d+/16 img \(.*ETA"),
    _row("export-shards hf", ["export-shards", "{toy}", "--to", "hf", "{tmp}/hf"],
         [r"exported 16 images"], r"export hf: \d+/16 img \(.*ETA", marks=HF),
    _row("train-classifier", ["train-classifier", "--data", "{toy}", "--out", "{tmp}/run", "--epochs", "1",
                              "--image-size", "16", "-b", "8", "-j", "0", "--device", "cpu", "--model", "resnet18",
                              "--threads", "1"],
         [r"top-1 "], r"epoch 1/1: \d/\d step \(.*ETA"),
    _row("run-study pruning", ["run-study", "pruning", "--data", "{views}", "--out", "{tmp}/pruning", "--sizes", "10",
                               "--splits", "1", "--test-per-class", "10", *TRAIN],
         STUDY_END, r"pruning study: \d/3 run \(.*ETA"),
    _row("run-study stats", ["run-study", "stats", "--data", "{toy}", "--out", "{tmp}/stats"],
         [r"feature space: ", r"stats\.json"], r"stats: \d+/16 img \(.*ETA"),
    _row("run-study augment", ["run-study", "augment", "--data", "{toy}", "--out", "{tmp}/augment", "--candidates",
                               "flip", *TRAIN],
         STUDY_END, r"augment study: \d/3 run \(.*ETA", marks=pytest.mark.slow),
    _row("run-study transfer", ["run-study", "transfer", "--pretrain", "p={toy}", "--downstream", "d={views}",
                                "--out", "{tmp}/transfer", "--seeds", "0", "--pretrain-seeds", "0",
                                "--train-per-class", "5", *TRAIN, *[w.replace("--set", "--pretrain-set")
                                                                    for w in TRAIN[:8]]],
         STUDY_END, r"fine-tuning: \d/2 run \(.*ETA", marks=pytest.mark.slow),
]
# Log lines a study writes once per run (each run trains), so they repeat.
PER_RUN = re.compile(r"^INFO fdsl\.(datasets\.read\.loader|progress): ")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    build_dataset(ToySource(classes=2, per_class=8, size=16), root / "toy", shard_size=8, workers=1,
                  progress=False)
    build_dataset(ViewsSource(), root / "views", shard_size=60, workers=1, progress=False)
    cub, _ = make_fake_cub(root / "cub")
    return {"toy": root / "toy", "views": root / "views", "cub": cub}


@pytest.fixture(scope="module")
def batch_log(inputs, tmp_path_factory):
    """``run(argv)``: (exit status, stdout, stderr) of the command in a batch job (each run once)."""
    done: dict[tuple[str, ...], tuple[int, str, str]] = {}

    def run(argv: list[str]) -> tuple[int, str, str]:
        key = tuple(argv)
        if key not in done:
            tmp = tmp_path_factory.mktemp("job")
            words = [a.format(tmp=tmp, **inputs) for a in argv]
            env = dict(os.environ, FDSL_PROGRESS_INTERVAL="0", OMP_NUM_THREADS="1")
            with open(tmp / "out.log", "w") as out, open(tmp / "err.log", "w") as err:
                code = subprocess.run([str(BIN / words[0]), *words[1:]], stdout=out, stderr=err, env=env,
                                      stdin=subprocess.DEVNULL, timeout=HANG_GUARD, check=False).returncode
            done[key] = code, (tmp / "out.log").read_text(), (tmp / "err.log").read_text()
        return done[key]
    return run


@pytest.mark.parametrize("argv,results,progress", COMMANDS)
def test_each_result_once_no_repeated_line_no_foreign_noise(argv, results, progress, batch_log) -> None:
    code, out, err = batch_log(argv)
    assert code == 0, err
    lines = out.splitlines() + err.splitlines()
    for result in results:
        found = [line for line in lines if re.search(result, line)]
        assert len(found) == 1, (result, found)
    repeated = [line for line, n in Counter(err.splitlines()).items() if n > 1 and not PER_RUN.match(line)]
    assert not repeated, repeated
    foreign = [line for line in err.splitlines() if re.match(r"(DEBUG|INFO) (?!fdsl[.:])", line)]
    assert not foreign, foreign  # e.g. INFO OpenGL.acceleratesupport: No OpenGL_accelerate module loaded
    assert "\r" not in err  # no terminal progress bars drawn into a log


LONG = [c for c in COMMANDS if c.values[2] is not None]  # the commands that are long work


@pytest.mark.parametrize("argv,results,progress", LONG)
def test_long_commands_write_progress_lines_into_a_batch_log(argv, results, progress, batch_log) -> None:
    code, out, err = batch_log(argv)
    assert code == 0, err
    found = [line for line in err.splitlines() if re.match(rf"INFO fdsl\.progress: {progress}", line)]
    assert found, err


@pytest.mark.slow
@pytest.mark.parametrize("argv,results,progress", COMMANDS)
def test_quiet_leaves_the_result_and_warnings_only(argv, results, progress, batch_log) -> None:
    code, out, err = batch_log([*argv, "--quiet"])
    assert code == 0, err
    assert not [line for line in err.splitlines() if not line.startswith("WARNING ")
                and not any(re.search(r, line) for r in results)], err
    assert all(re.search(r, out + err) for r in results)
