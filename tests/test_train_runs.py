"""train-classifier as timm users drive it: resume and extend a saved run, timm's flag spellings,
top-5 accuracy, progress lines in batch logs, --quiet, and the epoch axis of curves.png."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")

from toy_source import ToySource  # noqa: E402

from fdsl.datasets.builder.build import build_dataset  # noqa: E402
from fdsl.train import cli  # noqa: E402
from fdsl.train.figures import curves_figure  # noqa: E402
from fdsl.train.loop import train_classifier  # noqa: E402

torch.set_num_threads(1)
SMALL = dict(model="resnet18", image_size=16, batch_size=16, workers=0, resize_ratio=1.0,
             analysis=False, device="cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("toy") / "data"
    build_dataset(ToySource(classes=4, per_class=20, size=16), out, shard_size=40, backend="inline")
    return out


def _main(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _epochs(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- --resume RUN --epochs N


def test_extending_a_finished_run_equals_a_longer_run_under_a_constant_schedule(
        data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    settings = dict(SMALL, schedule="constant", lr=0.05, hflip=0.5, mixup=0.4, random_erasing=0.3)
    two = train_classifier(data, tmp_path / "two", epochs=2, **settings)
    one = train_classifier(data, tmp_path / "one", epochs=1, **settings)
    assert one["epochs_done"] == 1
    # timm's --resume PATH: the run's own config.yaml gives data and settings; --epochs extends it.
    code, out, err = _main(["--resume", str(tmp_path / "one" / "checkpoint.pt"), "--epochs", "2",
                            "--threads", "1"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["epochs_done"] == summary["epochs"] == 2
    assert summary["state_digest"] == two["state_digest"]
    assert [m["epoch"] for m in _epochs(tmp_path / "one")] == [1, 2]
    assert json.loads((tmp_path / "one" / "config.json").read_text())["recipe_fields"]["epochs"] == 2
    assert out.count("\n") == 1 and out.startswith("top-1 ") and "after 2 epochs" in out


def test_extending_recomputes_the_schedule_for_the_new_length(data: Path, tmp_path: Path) -> None:
    """Under cosine the extended run cannot equal a 2-epoch run: its first epoch already ran the
    whole 1-epoch cosine down to min_lr. From the resume on, the rate follows the 2-epoch cosine,
    as timm's resume with a larger --epochs does."""
    settings = dict(SMALL, schedule="cosine", lr=0.05)
    two = train_classifier(data, tmp_path / "two", epochs=2, **settings)
    train_classifier(data, tmp_path / "one", epochs=1, **settings)
    extended = train_classifier(resume=tmp_path / "one", epochs=2, device="cpu")
    assert extended["epochs_done"] == 2
    first, second = _epochs(tmp_path / "one")
    planned = _epochs(tmp_path / "two")
    assert first["lr"] == planned[0]["lr"] == 0.05
    assert second["lr"] == planned[1]["lr"]  # the 2-epoch cosine at its half-way point
    # 4 steps per epoch: 0.05 * (1 + cos(pi * 4 / 8)) / 2 = 0.025
    assert second["lr"] == pytest.approx(0.025)
    assert extended["state_digest"] != two["state_digest"]  # the documented difference


def test_resume_refuses_other_changes_and_fewer_epochs(data: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    train_classifier(data, tmp_path / "run", epochs=2, **SMALL)
    for argv, message in ((["--lr", "0.5"], "--resume: lr"),
                          (["--epochs", "1"], "can be extended, not shortened"),
                          (["--config", str(tmp_path / "run" / "config.yaml")], "drop --config"),
                          (["--out", str(tmp_path / "elsewhere")], "names another folder")):
        code, _, err = _main(["--resume", str(tmp_path / "run"), *argv], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "elsewhere").exists()


# ---------------------------------------------------------------- timm's spellings


def test_timm_spellings_mean_the_same_as_ours(capsys: pytest.CaptureFixture) -> None:
    ours = ["--batch-size", "16", "--workers", "0", "--schedule", "cosine", "--optimizer", "adamw",
            "--label-smoothing", "0.1", "--random-erasing", "0.25", "--compile", "--image-size", "32",
            "--grad-clip", "1", "--gamma", "0.5", "--mix-prob", "0.5", "--plateau-patience", "3"]
    timm = ["-b", "16", "-j", "0", "--sched", "cosine", "--opt", "adamw", "--smoothing", "0.1",
            "--reprob", "0.25", "--torchcompile", "--img-size", "32", "--clip-grad", "1",
            "--decay-rate", "0.5", "--mixup-prob", "0.5", "--patience-epochs", "3"]
    printed = []
    for argv in (ours, timm):
        code, out, err = _main(["--print-config", *argv], capsys)
        assert code == 0, err
        printed.append(out)
    assert printed[0] == printed[1] and "batch_size: 16" in printed[0] and "compile: true" in printed[0]
    args = cli.build_parser().parse_args(["--data-dir", "d", "--output", "o", "--cpu-threads", "2",
                                          "--log-interval", "5"])
    assert (args.data, args.out, args.threads, args.log_interval) == ("d", "o", 2, 5)
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for ours_flag, timm_flag in (("--batch-size", "-b"), ("--workers", "-j"), ("--schedule", "--sched"),
                                 ("--optimizer", "--opt"), ("--out", "--output"), ("--threads", "--cpu-threads"),
                                 ("--compile", "--torchcompile"), ("--label-smoothing", "--smoothing")):
        assert re.search(rf"{ours_flag}\b[^\n]*, {timm_flag}\b", text), (ours_flag, timm_flag)


# ---------------------------------------------------------------- top-5


def test_top5_for_sets_of_more_than_five_classes(data: Path, tmp_path: Path) -> None:
    six = tmp_path / "six"
    build_dataset(ToySource(classes=6, per_class=10, size=16), six, shard_size=30, backend="inline")
    summary = train_classifier(six, tmp_path / "run", epochs=1, val_fraction=0.2, **SMALL)
    record = _epochs(tmp_path / "run")[0]
    assert 0.0 <= record["val_top1"] <= record["val_top5"] <= 1.0
    assert summary["top5"] == record["val_top5"] and summary["val_images"] == 12
    four = train_classifier(data, tmp_path / "four", epochs=1, **SMALL)
    assert "top5" not in four and "val_top5" not in _epochs(tmp_path / "four")[0]


# ---------------------------------------------------------------- progress in batch logs, --quiet


def _run_cli(argv: list[str], tmp_path: Path) -> tuple[str, str]:
    """The command in its own process, stdout and stderr into files: a batch job's log."""
    env = dict(os.environ, FDSL_PROGRESS_INTERVAL="100000", OMP_NUM_THREADS="1")
    with open(tmp_path / "out.log", "w") as out, open(tmp_path / "err.log", "w") as err:
        code = subprocess.run([sys.executable, "-m", "fdsl.train.cli", *argv], stdout=out, stderr=err,
                              env=env, check=False).returncode
    text = (tmp_path / "out.log").read_text(), (tmp_path / "err.log").read_text()
    assert code == 0, text[1]
    return text


def test_progress_lines_every_log_interval_steps_in_a_batch_log(data: Path, tmp_path: Path) -> None:
    base = ["--data", str(data), "--model", "resnet18", "--image-size", "16", "-b", "8", "-j", "0",
            "--epochs", "1", "--device", "cpu", "--no-analysis", "--threads", "1"]
    out, err = _run_cli([*base, "--out", str(tmp_path / "run"), "--log-interval", "3"], tmp_path)
    # 72 training images (10% of 80 held out), 9 steps of 8: a line after steps 3, 6 and 9.
    steps = re.findall(r"epoch 1/1: (\d+)/9 step \(.*, loss [0-9.]+, lr [0-9.e-]+$", err, flags=re.M)
    assert steps == ["3", "6", "9"], err
    assert re.search(r"^INFO fdsl.train.loop: epoch 1/1: .*val_top1", err, flags=re.M)
    assert out.count("\n") == 1 and out.startswith("top-1 ")  # the result, once
    out, err = _run_cli([*base, "--out", str(tmp_path / "quiet"), "--log-interval", "1", "--quiet"],
                        tmp_path)
    assert err == "" and out.startswith("top-1 ")


# ---------------------------------------------------------------- curves.png


def test_curves_of_one_epoch_have_one_integer_tick() -> None:
    fig = curves_figure([{"epoch": 1, "train_loss": 1.2, "train_top1": 0.4, "val_loss": 1.3,
                          "val_top1": 0.3}])
    for ax in fig.axes:
        low, high = ax.get_xlim()
        assert [t for t in ax.get_xticks() if low <= t <= high] == [1.0] and (low, high) == (0.5, 1.5)
    fig = curves_figure([{"epoch": e, "train_loss": 1.0 / e} for e in range(1, 31)])
    ticks = fig.axes[0].get_xticks()
    assert all(float(t).is_integer() for t in ticks) and len(ticks) < 30
