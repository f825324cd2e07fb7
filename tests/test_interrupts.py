"""Ctrl-C in every command at exact moments (fdsl.faults), start-up and pool creation included:
exit status 130, exactly one line, no output from the children, no process left running, no
temporary file left, and a re-run finishes the same bytes as a run never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from fake_cub import make_fake_cub
from helpers import HANG_GUARD, ViewsSource, run_with_fault, tree_hashes
from toy_source import ToySource

from fdsl import entry, interrupts
from fdsl.cli import run_cli
from fdsl.datasets.builder.build import build_dataset

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
START = ["int-group@startup", "int-group@imported"]
# A terminal's Ctrl-C reaches the whole group; `kill -INT` the main process alone.
POOL = ["int-group@pool-created", "int-group@task-submitted:1", "int-group@worker-starting",
        "int-group@worker-started", "int@pool-created"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    build_dataset(ToySource(classes=3, per_class=10), root / "toy", shard_size=10, workers=1)
    build_dataset(ViewsSource(), root / "views", shard_size=60, workers=1)
    cub, _ = make_fake_cub(root / "cub")
    return {"toy": root / "toy", "views": root / "views", "cub": cub}


COMMANDS = {
    # command: (argv with {out} and inputs, faults, re-run to the end and compare)
    "gen-fractal": (["--db", "rcdb", "--classes", "2", "--instances", "4", "--image-size", "32",
                     "--shard-size", "2", "--workers", "2", "--out", "{out}"], START + POOL + ["int@shard-done:1"], True),
    "render-shapenet": (["--out", "{out}", "--classes", "chair,car", "--models-per-class", "1", "--views", "4",
                         "--image-size", "32", "--shard-size", "4", "--workers", "2"],
                        START + POOL + ["int-group@shard-done:1"], True),
    "import-cub": (["--root", "{cub}", "--out", "{out}", "--image-size", "16", "--shard-size", "4",
                    "--workers", "2"], START + POOL + ["int@shard-done:2"], True),
    "inspect-shards": (["{toy}", "--verify"], START, False),
    "export-shards": (["{toy}", "--to", "imagefolder", "{out}"], START, True),
    "train-classifier": (["--data", "{toy}", "--out", "{out}", "--epochs", "1", "--image-size", "16",
                          "--batch-size", "8", "--device", "cpu", "--workers", "0"], START, False),
    "run-study": (["pruning", "--data", "{views}", "--out", "{out}", "--preset", "mini", "--sizes", "10",
                   "--splits", "1", "--test-per-class", "10", "--jobs", "2", "--threads", "1", "--set", "epochs=1"],
                  START + ["int-group@pool-created", "int-group@worker-starting", "int-group@worker-started"], False),
}


def _argv(prog: str, out: Path, inputs: dict[str, Path]) -> list[str]:
    return [str(BIN / prog)] + [a.format(out=out, **inputs) for a in COMMANDS[prog][0]]


@pytest.mark.slow
@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_ctrl_c_at_every_start_up_moment_is_one_line_and_resumes(prog, inputs, tmp_path):
    _, faults, rerun = COMMANDS[prog]
    out = tmp_path / "out"
    line = f"{prog}: interrupted; re-run the same command to resume"
    before: dict[str, list[str]] = {}  # what each interrupted run printed before its line
    for fault in faults:
        done = run_with_fault(_argv(prog, out, inputs), fault)
        assert done.returncode == 130, (fault, done.returncode, done.stderr)
        *before[fault], last = done.stderr.splitlines() or [""]
        assert last == line, (fault, done.stderr)
        if fault in START:
            assert not out.exists(), f"{fault}: the interrupted start-up created {out}"
        assert not [p for p in out.rglob("*") if ".tmp-" in p.name], f"{fault}: temporary files left"
    # The interrupt adds its one line and nothing else: the lines before it are the command's
    # own log lines (those that a whole run prints too), never a traceback from any process.
    usual: set[str] = set()
    if rerun:
        for folder in (out, tmp_path / "reference"):
            done = subprocess.run(_argv(prog, folder, inputs), capture_output=True, text=True, timeout=HANG_GUARD)
            assert done.returncode == 0, done.stderr
            usual |= set(done.stderr.splitlines())
        assert tree_hashes(out, skip=("run.json", "export.json")) == \
            tree_hashes(tmp_path / "reference", skip=("run.json", "export.json"))
    for fault, lines in before.items():
        assert not [x for x in lines if x not in usual and not x.startswith("INFO fdsl.")], (fault, lines)


def test_every_console_script_starts_in_the_entry_shim():
    """pyproject.toml's scripts go through fdsl.entry, whose table names each command's main."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == set(entry.COMMANDS)
    for prog, target in scripts.items():
        assert target == f"fdsl.entry:{prog.replace('-', '_')}"
        assert callable(getattr(entry, prog.replace("-", "_")))
        assert callable(entry.command_main(prog))


SIGINT_BIT = 1 << (signal.SIGINT - 1)


@pytest.fixture
def sigint_handler():
    """Give the SIGINT handler back after a test that installs the commands' one."""
    old = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, old)
    interrupts.clear()


def _blocked_in_child() -> bool:
    status = subprocess.run([sys.executable, "-c", "print(open('/proc/self/status').read())"],
                            capture_output=True, text=True, timeout=HANG_GUARD, check=True).stdout
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:"))
    return bool(int(mask, 16) & SIGINT_BIT)


def test_deferred_holds_sigint_back_and_children_start_with_it_blocked():
    inside = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            inside.append(_blocked_in_child())  # no KeyboardInterrupt in the block
    assert inside == [True]
    assert not _blocked_in_child()  # and nothing blocked after it


def test_deferred_nests_and_the_commands_handler_remembers(sigint_handler):
    interrupts.install()
    with pytest.raises(KeyboardInterrupt):
        with interrupts.deferred():
            with interrupts.deferred():
                os.kill(os.getpid(), signal.SIGINT)
            assert not interrupts.pending()  # handed to the outer block
    assert interrupts.pending()
    with pytest.raises(KeyboardInterrupt):
        interrupts.check()


def test_a_swallowed_ctrl_c_still_ends_the_command_in_one_line(sigint_handler, capsys):
    """A library's catch-all except (scipy's at import) must not turn Ctrl-C into a finished run."""
    interrupts.install()

    def body(argv):
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except BaseException:  # noqa: BLE001 - what such a library does
            pass
        return 0

    assert run_cli("toy", body, []) == 130
    assert capsys.readouterr().err.splitlines() == ["toy: interrupted; re-run the same command to resume"]
    assert not interrupts.pending()


def test_install_takes_back_an_ignored_sigint(sigint_handler):
    """A command started with SIGINT ignored (``cmd &`` in a script) still answers Ctrl-C."""
    code = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
            "sys.argv = ['gen-fractal', '--version']; os.environ['FDSL_FAULT'] = 'int@startup'; "
            "from fdsl.entry import gen_fractal; sys.exit(gen_fractal())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD)
    assert done.returncode == 130, done.stderr
    assert done.stderr.splitlines() == ["gen-fractal: interrupted; re-run the same command to resume"]
