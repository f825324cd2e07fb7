"""One command-line face for every command and run-study subcommand (issue 20): ``--quiet``,
``--threads``, data folders as ``--data DIR`` / ``--out DIR`` beside the positional forms,
``--version`` in one format, each result printed once, and progress lines in batch logs."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest
from toy_source import ToySource

from fdsl.datasets.builder.build import build_dataset
from fdsl.entry import COMMANDS, command_main

STUDIES = ("pruning", "transfer", "augment", "stats")
# Every command and subcommand, as the words that start it.
EVERY = [(prog,) for prog in COMMANDS if prog != "run-study"] + [("run-study", s) for s in STUDIES]


def _parser(words: tuple[str, ...]) -> argparse.ArgumentParser:
    """The parser of a command or run-study subcommand."""
    import importlib

    module = importlib.import_module(command_main(words[0]).__module__)
    parser = module.build_parser()
    for word in words[1:]:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return parser


def _options(words: tuple[str, ...]) -> set[str]:
    return {o for action in _parser(words)._actions for o in action.option_strings}


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("toy") / "toy"
    build_dataset(ToySource(classes=2, per_class=8, size=16), out, shard_size=8, workers=1, progress=False)
    return out


# ---------------------------------------------------------------- --quiet


@pytest.mark.parametrize("words", EVERY, ids=" ".join)
def test_every_command_takes_quiet(words: tuple[str, ...]) -> None:
    assert "--quiet" in _options(words)
    assert "--quiet" in _parser(words).format_help()


# (subcommand, its argv, the module and function the CLI hands over to)
STUDY_CALLS = [
    ("pruning", ["--data", "{toy}"], "fdsl.studies.pruning", "run_pruning_study"),
    ("transfer", ["--pretrain", "p={toy}", "--downstream", "d={toy}"], "fdsl.studies.transfer", "run_transfer_study"),
    ("augment", ["--data", "{toy}"], "fdsl.studies.augment", "run_augment_study"),
    ("stats", ["{toy}"], "fdsl.studies.stats", "checkpoint_stats"),
]


@pytest.mark.parametrize("study,argv,module,name", STUDY_CALLS, ids=[c[0] for c in STUDY_CALLS])
@pytest.mark.parametrize("quiet", [False, True])
def test_run_study_quiet_reaches_the_study(study, argv, module, name, quiet, toy, tmp_path, monkeypatch,
                                           capsys) -> None:
    import importlib

    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs)
        return {"table": "", "feature_space": "x", "mean_intra_class_std": 1.0,
                "mean_class_mean_distance": 1.0, "written": []}

    monkeypatch.setattr(importlib.import_module(module), name, fake)
    argv = [study, *[a.format(toy=toy) for a in argv], "--out", str(tmp_path / "s")] + (["--quiet"] * quiet)
    assert command_main("run-study")(argv) == 0
    assert seen["progress"] is (not quiet)


def _train_cell(toy: Path, out: Path):
    from fdsl.studies.runner import Cell

    return Cell(out=str(out), data=str(toy), recipe="fractaldb-resnet", row={},
                overrides={"model": "resnet18", "image_size": 16, "resize_ratio": 1.0, "batch_size": 8,
                           "epochs": 1, "workers": 0, "amp": False, "analysis": False, "val_fraction": 0.25},
                threads=1, device="cpu")


def test_study_runs_show_progress_unless_told_not_to(toy, tmp_path, monkeypatch, caplog) -> None:
    """``progress=False`` (run-study --quiet) silences the study's progress and its runs' alike."""
    from fdsl.studies.runner import run_cells

    monkeypatch.setenv("FDSL_PROGRESS_INTERVAL", "0")
    caplog.set_level(logging.INFO, logger="fdsl.progress")
    rows = run_cells([_train_cell(toy, tmp_path / "quiet")], progress=False, desc="q")
    assert rows[0]["epochs"] == 1
    assert [r for r in caplog.records if r.name == "fdsl.progress"] == []
    run_cells([_train_cell(toy, tmp_path / "shown")], desc="shown")
    lines = [r.getMessage() for r in caplog.records if r.name == "fdsl.progress"]
    assert any(line.startswith("epoch 1/1: ") for line in lines), lines
    assert lines[-1].startswith("shown: 1/1 run (100.0%)") and "ETA" in lines[-1]


# ---------------------------------------------------------------- --threads

# Commands whose work runs on torch take --threads (torch CPU threads per process); the data
# commands scale with --workers processes of one thread each and take no --threads.
THREADED = {("train-classifier",), *((("run-study", s)) for s in STUDIES)}


@pytest.mark.parametrize("words", EVERY, ids=" ".join)
def test_threads_where_torch_computes_with_one_meaning(words: tuple[str, ...], capsys) -> None:
    from helpers import exit_code

    parser = _parser(words)
    action = next((a for a in parser._actions if "--threads" in a.option_strings), None)
    assert (action is not None) == (words in THREADED)
    if action is None:
        return
    assert action.help.startswith("torch CPU threads per process (default: ")
    assert exit_code(command_main(words[0]), [*words[1:], "--threads", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--threads" in err and "expected a positive integer, got 0" in err


def test_run_study_stats_takes_threads(toy, tmp_path, monkeypatch) -> None:
    import torch

    import fdsl.studies.stats

    seen = {}

    def fake(*args, **kwargs):
        seen["threads"] = torch.get_num_threads()
        return {"feature_space": "x", "mean_intra_class_std": 1.0, "mean_class_mean_distance": 1.0,
                "written": []}

    monkeypatch.setattr(fdsl.studies.stats, "checkpoint_stats", fake)
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    try:
        assert command_main("run-study")(["stats", str(toy), "--out", str(tmp_path), "--threads", str(wanted)]) == 0
    finally:
        torch.set_num_threads(before)
    assert seen["threads"] == wanted


# ---------------------------------------------------------------- folders: --data DIR / --out DIR


@pytest.mark.parametrize("words", EVERY, ids=" ".join)
def test_a_data_set_folder_is_data_and_an_output_folder_is_out(words: tuple[str, ...]) -> None:
    """Every command that reads an fdsl data set takes it as --data (run-study transfer names
    its sets NAME=DIR); every command that writes a folder of its own takes it as --out."""
    options = _options(words)
    reads = {("inspect-shards",), ("export-shards",), ("train-classifier",), ("run-study", "pruning"),
             ("run-study", "augment"), ("run-study", "stats")}
    assert ("--data" in options) == (words in reads)
    assert ("--out" in options) == (words != ("inspect-shards",))  # it writes files named by its flags


# (command words, argv with {toy} and {out}, the folders it must see)
SPELLINGS = [
    ("inspect-shards", ["{toy}"]), ("inspect-shards", ["--data", "{toy}"]),
    ("run-study stats", ["{toy}", "--out", "{out}"]), ("run-study stats", ["--out", "{out}", "--data", "{toy}"]),
    ("export-shards", ["{toy}", "--to", "imagefolder", "{out}"]),
    ("export-shards", ["--data", "{toy}", "--to", "imagefolder", "--out", "{out}"]),
    ("export-shards", ["{toy}", "--to", "imagefolder", "--out", "{out}"]),
    ("export-shards", ["--to", "imagefolder", "{out}", "--data", "{toy}"]),
]


@pytest.mark.parametrize("words,argv", SPELLINGS, ids=[f"{w} {' '.join(a)}" for w, a in SPELLINGS])
def test_folders_positionally_or_by_flag(words: str, argv: list[str], toy: Path, tmp_path: Path) -> None:
    from fdsl.cli import OneLineParser

    parser = _parser(tuple(words.split()))
    prefix = words.split()[1:]
    if prefix:  # a subcommand: parse through run-study's own parser
        parser = _parser(("run-study",))
    assert isinstance(parser, OneLineParser)
    args = parser.parse_args([*prefix, *[a.format(toy=toy, out=tmp_path) for a in argv]])
    assert args.data == str(toy) and getattr(args, "out", str(tmp_path)) == str(tmp_path)
    assert not [k for k in vars(args) if "positional" in k or k.startswith("_")]


REFUSED = [
    ("inspect-shards", ["{toy}", "--data", "{toy}"], "the data set folder is given twice, as '{toy}' and as --data"),
    ("inspect-shards", ["--verify"], "give the data set folder: DIR or --data DIR"),
    ("run-study", ["stats", "{toy}", "--data", "{toy}", "--out", "{out}"], "the data set folder is given twice"),
    ("run-study", ["stats", "--out", "{out}"], "run-study stats: error: give the data set folder"),
    ("export-shards", ["{toy}", "--to", "hf", "{out}", "--data", "{toy}"], "the data set folder is given twice"),
    ("export-shards", ["{toy}", "--to", "hf", "{out}", "--out", "{out}"], "the export folder is given twice"),
    ("export-shards", ["--data", "{toy}", "--out", "{out}", "--to", "hf", "{toy}"],
     "'{toy}' is one folder too many: --data and --out already name the data set folder and the export folder"),
    ("export-shards", ["--data", "{toy}", "--to", "hf"], "give the export folder: OUT or --out OUT"),
    ("export-shards", ["--to", "hf"], "give the data set folder: DIR or --data DIR"),
]


@pytest.mark.parametrize("prog,argv,message", REFUSED, ids=[f"{p} {' '.join(a)}" for p, a, _ in REFUSED])
def test_a_folder_given_twice_or_not_at_all_is_one_line(prog, argv, message, toy, tmp_path, capsys) -> None:
    from helpers import assert_refused_in_one_line

    out = tmp_path / "out"
    fill = {"toy": toy, "out": out}
    assert_refused_in_one_line(capsys, command_main(prog), [a.format(**fill) for a in argv], message.format(**fill))
    assert not out.exists()


def test_help_shows_both_spellings_of_a_folder() -> None:
    text = " ".join(_parser(("export-shards",)).format_help().split())  # whatever the terminal width
    assert "[DIR] [OUT]" in text
    assert "DIR the fdsl data set folder (with manifest.json); or --data DIR" in text
    assert "--data DIR the data set folder: the same as DIR" in text
    assert "--out OUT the export folder: the same as OUT" in text


# ---------------------------------------------------------------- --version


@pytest.mark.parametrize("words", [*EVERY, ("run-study",)], ids=" ".join)
def test_version_in_one_format_everywhere(words: tuple[str, ...], capsys) -> None:
    from helpers import exit_code

    from fdsl import __version__

    assert exit_code(command_main(words[0]), [*words[1:], "--version"]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == (f"{' '.join(words)} (fdsl {__version__})\n", "")


# ---------------------------------------------------------------- the README's command lines


def _readme_command_lines() -> list[list[str]]:
    import re
    import shlex

    readme = Path(__file__).resolve().parent.parent / "README.md"
    found = []
    for block in re.findall(r"^```bash\n(.*?)^```", readme.read_text(), flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] in COMMANDS:
                found.append(words)
    return found


README_LINES = _readme_command_lines()


def test_the_readme_shows_every_command_and_the_shared_spellings() -> None:
    assert {words[0] for words in README_LINES} == set(COMMANDS)
    used = {w for words in README_LINES for w in words}
    assert {"--data", "--out", "--threads"} <= used


@pytest.mark.parametrize("words", README_LINES, ids=[" ".join(w)[:60] for w in README_LINES])
def test_every_command_line_in_the_readme_parses(words: list[str]) -> None:
    """The usage lines are the ones the parsers take (nothing runs: parsing only)."""
    parser = _parser((words[0],))
    try:
        parser.parse_args(words[1:])
    except SystemExit as exc:  # argparse leaves through SystemExit; its message is on stderr
        pytest.fail(f"{' '.join(words)}: exit {exc.code}")
