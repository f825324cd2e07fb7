"""The data commands in batch logs: progress lines (``fdsl.progress``) from the builder, the
exports and inspect-shards when stderr is not a terminal; ``--quiet`` silences them (results still
print); inspect-shards checks every output argument before it prints or writes anything."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from toy_source import ToySource

from fdsl.datasets.builder.build import build_dataset
from fdsl.datasets.export.cli import main as export_main
from fdsl.datasets.inspect.cli import main as inspect_main


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    """The progress lines logged, one at every update (the interval set to 0 s)."""
    monkeypatch.setenv("FDSL_PROGRESS_INTERVAL", "0")
    caplog.set_level(logging.INFO, logger="fdsl.progress")

    def read() -> list[str]:
        found = [r.getMessage() for r in caplog.records if r.name == "fdsl.progress"]
        caplog.clear()
        return found
    return read


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "ds"
    build_dataset(ToySource(classes=2, per_class=6, size=8), out, shard_size=4, workers=1, progress=False)
    return out


def test_build_writes_progress_lines_into_a_log(tmp_path: Path, lines) -> None:
    build_dataset(ToySource(classes=2, per_class=6, size=8), tmp_path / "a", shard_size=4, workers=1)
    got = lines()
    assert len(got) == 3 and got[-1].startswith("toy: 12/12 img (100.0%), ") and "ETA" in got[-1]
    build_dataset(ToySource(classes=2, per_class=6, size=8), tmp_path / "b", shard_size=4, workers=1,
                  progress=False)
    assert lines() == []


def test_inspect_verify_and_stats_write_progress_lines_and_quiet_silences_them(data: Path, tmp_path: Path,
                                                                                lines, capsys) -> None:
    assert inspect_main([str(data), "--verify", "--stats", str(tmp_path / "s1")]) == 0
    got = lines()
    assert got[-1].startswith("stats: 12/12 img") and any(g.startswith("verify: 3/3 shard") for g in got)
    assert "checksums OK" in capsys.readouterr().out
    assert inspect_main([str(data), "--verify", "--stats", str(tmp_path / "s2"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert lines() == [] and "images     12 of 12 planned" in out and "checksums OK" in out


def test_export_writes_progress_lines_and_quiet_silences_them(data: Path, tmp_path: Path, lines, capsys) -> None:
    assert export_main([str(data), "--to", "imagefolder", str(tmp_path / "a")]) == 0
    assert lines()[-1].startswith("export imagefolder: 12/12 img (100.0%)")
    assert export_main([str(data), "--to", "imagefolder", str(tmp_path / "b"), "--quiet"]) == 0
    assert lines() == [] and "exported 12 images" in capsys.readouterr().out


def test_import_cub_quiet(tmp_path: Path, lines, capsys) -> None:
    pytest.importorskip("torch")
    from fake_cub import make_fake_cub

    from fdsl.datasets.importers.cli import main

    root, _ = make_fake_cub(tmp_path / "cub")
    argv = ["--root", str(root), "--image-size", "16", "--workers", "1", "--backend", "inline"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert lines()[-1].startswith("cub-200-2011: ")
    assert main([*argv, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert lines() == [] and "images in 3 classes" in capsys.readouterr().err


@pytest.mark.parametrize("extra,message", [
    (["--stats", "{afile}"], "--stats {afile} is a file; give a folder"),
    (["--grid", "{tmp}/sheet.txt"], "--grid {tmp}/sheet.txt: give an image file name"),
    (["--hist", "inst", "{tmp}"], "--hist {tmp} is a folder"),
    (["--verify", "--stats", "{tmp}/new", "--grid", "{tmp}/g.gif"], "--grid {tmp}/g.gif: give an image"),
])
def test_inspect_checks_its_arguments_before_printing_or_writing(data: Path, tmp_path: Path, capsys,
                                                                 extra: list[str], message: str) -> None:
    afile = tmp_path / "afile.txt"
    afile.write_text("mine\n")
    before = sorted(tmp_path.rglob("*"))
    argv = [a.format(afile=afile, tmp=tmp_path) for a in extra]
    assert inspect_main([str(data), *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and message.format(afile=afile, tmp=tmp_path) in err
    assert sorted(tmp_path.rglob("*")) == before and afile.read_text() == "mine\n"
