"""train-classifier refuses bad input in one line, exit 2, and leaves everything as it was: a
refused run creates no run folder, and in an existing folder adds and changes nothing (no
``.fdsl.lock``). Each case compares a full listing (names, sizes, sha256) before and after."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")

from toy_source import ToySource  # noqa: E402

from fdsl.datasets.builder.build import build_dataset  # noqa: E402
from fdsl.train import cli  # noqa: E402
from fdsl.train.models import build_model  # noqa: E402

torch.set_num_threads(1)
FAST = ["--workers", "0", "--device", "cpu", "--model", "resnet18", "--image-size", "16",
        "--batch-size", "8", "--epochs", "1", "--no-analysis"]


def listing(*roots: Path) -> dict[str, tuple[str, int, str]]:
    """Every folder and file below ``roots``: kind, size and sha256 by path."""
    found = {}
    for root in roots:
        for path in sorted([root, *root.rglob("*")]):
            if path.is_dir():
                found[str(path)] = ("dir", 0, "")
            else:
                data = path.read_bytes()
                found[str(path)] = ("file", len(data), hashlib.sha256(data).hexdigest())
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data folders good and bad, checkpoint files good and bad, and a finished run."""
    root = tmp_path_factory.mktemp("world")
    build_dataset(ToySource(classes=4, per_class=10, size=16), root / "data", shard_size=10, backend="inline")
    build_dataset(ToySource(classes=3, per_class=10, size=16), root / "other", shard_size=10, backend="inline")
    (root / "empty").mkdir()
    (root / "junk").mkdir()
    (root / "junk" / "notes.txt").write_text("not a data set\n")
    shutil.copytree(root / "data", root / "unfinished")
    manifest = json.loads((root / "unfinished" / "manifest.json").read_text())
    manifest["complete"] = False  # as a killed build leaves it
    (root / "unfinished" / "manifest.json").write_text(json.dumps(manifest))
    shutil.copytree(root / "data", root / "holey")
    (root / "holey" / manifest["shards"][1]["file"]).unlink()
    weights = root / "weights"
    weights.mkdir()
    (weights / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (weights / "empty.pt").write_bytes(b"")
    torch.save([1, 2, 3], weights / "list.pt")
    state = build_model("resnet18", 4).state_dict()
    torch.save(dict(state, **{"conv1.weight": torch.zeros(64, 1, 7, 7)}), weights / "shape.pt")
    torch.save(state, weights / "good.pt")
    good = (weights / "good.pt").read_bytes()
    (weights / "truncated.pt").write_bytes(good[: len(good) // 2])
    (weights / "folder.pt").mkdir()
    (root / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    # A finished one-epoch run: resuming it with other settings must not touch it.
    assert cli.main(["--data", str(root / "data"), "--out", str(root / "finished"), *FAST]) == 0
    return root


CASES = {
    "data: empty folder": ["--data", "{w}/empty"],
    "data: not a data set": ["--data", "{w}/junk"],
    "data: unfinished build": ["--data", "{w}/unfinished"],
    "data: shard missing": ["--data", "{w}/holey"],
    "data: missing folder": ["--data", "{w}/nowhere"],
    "val-data: other classes": ["--data", "{w}/data", "--val-data", "{w}/other"],
    "finetune-from: missing": ["--data", "{w}/data", "--finetune-from", "{w}/weights/none.pt"],
    "finetune-from: random bytes": ["--data", "{w}/data", "--finetune-from", "{w}/weights/random.pt"],
    "finetune-from: empty file": ["--data", "{w}/data", "--finetune-from", "{w}/weights/empty.pt"],
    "finetune-from: pickled list": ["--data", "{w}/data", "--finetune-from", "{w}/weights/list.pt"],
    "finetune-from: wrong shape": ["--data", "{w}/data", "--finetune-from", "{w}/weights/shape.pt"],
    "finetune-from: truncated": ["--data", "{w}/data", "--finetune-from", "{w}/weights/truncated.pt"],
    "finetune-from: a folder": ["--data", "{w}/data", "--finetune-from", "{w}/weights/folder.pt"],
    "resume: no checkpoint": ["--data", "{w}/data", "--resume"],
    "prune-field: unknown": ["--data", "{w}/data", "--prune", "drop-smallest", "--prune-field", "area"],
    "split-by: unknown": ["--data", "{w}/data", "--split-by", "model_id"],
    "config: binary file": ["--data", "{w}/data", "--config", "{w}/binary.yaml"],
}
# What the one line must name for each case.
NAMES = {"data: empty folder": "empty", "data: not a data set": "junk",
         "data: unfinished build": "unfinished", "data: shard missing": "holey",
         "data: missing folder": "nowhere", "val-data: other classes": "other classes",
         "finetune-from: missing": "none.pt", "finetune-from: random bytes": "random.pt",
         "finetune-from: empty file": "empty.pt", "finetune-from: pickled list": "list.pt",
         "finetune-from: wrong shape": "shape.pt", "finetune-from: truncated": "truncated.pt",
         "finetune-from: a folder": "folder.pt", "resume: no checkpoint": "no checkpoint.pt",
         "prune-field: unknown": "area", "split-by: unknown": "model_id",
         "config: binary file": "binary.yaml"}


def _refused(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("where", ["new folder", "existing folder"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_run_leaves_everything_as_it_was(case: str, where: str, world: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    if where == "existing folder":
        out.mkdir()
        (out / "notes.txt").write_text("the user's own file\n")
    before = listing(world, tmp_path)
    argv = [a.format(w=world) for a in CASES[case]]
    err = _refused([*argv, "--out", str(out), *FAST], capsys)
    assert NAMES[case] in err
    assert listing(world, tmp_path) == before


@pytest.mark.parametrize("argv, message", [
    (["--lr", "0.5"], "--resume: lr"),
    (["--data", "{w}/other"], "other classes"),
    (["--set", "seed=3"], "--resume: seed"),
])
def test_refused_resume_leaves_the_finished_run_as_it_was(argv: list[str], message: str, world: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    run = world / "finished"
    before = listing(world)
    base = ["--data", str(world / "data")] if "--data" not in argv else []
    err = _refused([*base, *[a.format(w=world) for a in argv], "--out", str(run), "--resume", *FAST],
                   capsys)
    assert message in err
    assert listing(world) == before  # the run's own lock file stays as the run left it
