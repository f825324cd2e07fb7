"""Helpers shared by several test modules (tests/ is on sys.path through conftest.py)."""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def tree_hashes(folder: Path, skip: tuple[str, ...] = ("run.json",)) -> dict[str, str]:
    """sha256 of every file below ``folder`` by relative path (run logs excluded)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip}


def assert_same_bytes_for_1_and_2_workers(generate: Callable[..., Any], db: str, tmp_path: Path,
                                          **settings: Any) -> None:
    """Generate ``db`` into ``tmp_path/w1`` with one worker and ``tmp_path/w2`` with two; the two
    trees must hold the same bytes."""
    generate(db, tmp_path / "w1", workers=1, **settings)
    generate(db, tmp_path / "w2", workers=2, **settings)
    assert tree_hashes(tmp_path / "w1") == tree_hashes(tmp_path / "w2")


def exit_code(main: Callable[[list[str]], int], argv: list[str]) -> int:
    """``main(argv)``'s exit status, also when it leaves through SystemExit (argparse, --version)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def assert_refused_in_one_line(capsys: pytest.CaptureFixture, main: Callable[[list[str]], int],
                               argv: list[str], message: str) -> None:
    """``main(argv)`` exits 2 and writes one line holding ``message`` to stderr."""
    assert exit_code(main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def edit_manifest(folder: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite ``folder/manifest.json`` after ``edit`` changed it in place."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def listed_shards(folder: Path) -> int:
    """How many shards ``folder/manifest.json`` lists (-1 when there is no manifest yet)."""
    manifest = folder / "manifest.json"
    return len(json.loads(manifest.read_text())["shards"]) if manifest.exists() else -1


def write_build_script(tmp_path: Path, template: str, **values: Any) -> tuple[Path, Path]:
    """``template`` (formatted with ``tests`` = this folder and ``values``) saved as
    ``tmp_path/build.py``; returns the script and the output folder ``tmp_path/ds`` for it."""
    script = tmp_path / "build.py"
    script.write_text(template.format(tests=str(Path(__file__).parent), **values))
    return script, tmp_path / "ds"


def start_script(script: Path, *args: str, stderr: int = subprocess.DEVNULL) -> subprocess.Popen:
    """Run ``python script args...`` in a process group of its own (so a test can signal it all)."""
    return subprocess.Popen([sys.executable, str(script), *args], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=stderr, text=True)


# Seconds a test waits for something that must happen whatever the machine's speed; reached only
# when the code under test hangs, so tests never depend on how fast a run is.
HANG_GUARD = 120.0


def run_with_fault(argv: list[str], fault: str, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run ``argv`` in a session of its own with ``FDSL_FAULT=fault`` (fdsl.faults) and wait for
    it; every process of the session must be gone afterwards (``assert_session_gone``)."""
    env = {**os.environ, "FDSL_FAULT": fault, **kwargs.pop("env", {})}
    proc = subprocess.Popen(argv, start_new_session=True, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kwargs)
    try:
        out, err = proc.communicate(timeout=HANG_GUARD)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert_session_gone(proc.pid)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def session_processes(sid: int) -> list[int]:
    """The live (not zombie) processes of session ``sid``, found through /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def assert_session_gone(sid: int) -> None:
    """Every process of session ``sid`` ends (orphaned workers must die with their parent); one
    still running after HANG_GUARD seconds is killed and fails the test."""
    survivors = []
    for pid in session_processes(sid):
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            if not select.select([fd], [], [], HANG_GUARD)[0]:
                survivors.append(pid)
                os.kill(pid, signal.SIGKILL)
        finally:
            os.close(fd)
    assert not survivors, f"processes {survivors} outlived the run they belonged to"


class Gate:
    """Where a ``ToySource(gate=str(gate.folder))`` stops: rendering item 0 blocks until the test
    calls ``open``, and ``wait_reached`` returns once a run got there, so a test knows a run is
    mid-work without sleeping. Two FIFOs in ``folder`` carry the news."""

    def __init__(self, folder: Path, *, reached: bool = True) -> None:
        self.folder = folder
        folder.mkdir(parents=True)
        os.mkfifo(folder / "go")
        self._reached = None
        if reached:
            os.mkfifo(folder / "reached")
            self._reached = os.open(folder / "reached", os.O_RDONLY | os.O_NONBLOCK)

    def wait_reached(self, proc: subprocess.Popen) -> None:
        pidfd = os.pidfd_open(proc.pid)
        try:
            ready = select.select([self._reached, pidfd], [], [], HANG_GUARD)[0]
        finally:
            os.close(pidfd)
        assert self._reached in ready, "the run ended (or hung) before it reached the gate"
        os.read(self._reached, 1)

    def open(self) -> None:
        """Let the run waiting at the gate go on (the source's open of ``go`` meets this one)."""
        os.close(os.open(self.folder / "go", os.O_WRONLY))


class SmallSource:
    """Base of the tests' in-memory ShardSources: ``per_class`` items of ``size`` px per name in
    ``CLASSES``; a subclass gives ``name``, ``CLASSES`` and ``render``."""

    name: str
    version = "1"
    CLASSES: tuple[str, ...] = ()

    def __init__(self, per_class: int, size: int) -> None:
        self.per_class, self.size = per_class, size

    def config(self) -> dict:
        return {"per_class": self.per_class, "size": self.size}

    def class_names(self) -> list[str]:
        return list(self.CLASSES)

    def num_items(self) -> int:
        return len(self.CLASSES) * self.per_class

    def png_path(self, label: int, metadata: dict, item: int) -> str:
        return f"{label:05d}/{item:05d}.png"

    def extra_files(self) -> dict:
        return {}


class ViewsSource:
    """A render-like set for run-study: 3 classes x 4 models x 10 views with ``model_id`` and a
    numeric ``area`` (the view index)."""

    name, version = "views", "1"

    def config(self) -> dict:
        return {}

    def class_names(self) -> list[str]:
        return ["a", "b", "c"]

    def num_items(self) -> int:
        return 120

    def render(self, start: int, stop: int) -> Any:
        import numpy as np

        from fdsl.sources import RenderedBatch

        items = np.arange(start, stop)
        images = np.stack([np.full((16, 16), 40 * (i // 40) + i % 10, np.uint8) for i in items])
        meta = {"model_id": np.array([f"m{i // 10}".encode() for i in items], "S8"),
                "area": (items % 10).astype(np.float32)}
        return RenderedBatch(images, items // 40, meta, items, [])

    def extra_files(self) -> dict:
        return {}


def counter_draw(key: int, i: int) -> int:
    """Draw ``i`` of fdsl's counter-based stream ``key`` worked out in plain Python from seeding's
    splitmix64 (independent of the Numba kernels): the finaliser of key + (i + 1) * golden."""
    from fdsl.generators.seeding import GOLDEN, MASK64, mix64

    return mix64((key + (i + 1) * GOLDEN) & MASK64)


def counter_uniform(key: int, i: int) -> float:
    """Draw ``i`` of ``key`` as a float in [0, 1): its top 53 bits times 2**-53."""
    return (counter_draw(key, i) >> 11) * 2.0**-53


def counter_below(key: int, i: int, n: int) -> int:
    """Draw ``i`` of ``key`` as an integer in [0, n): Lemire's multiply-shift of the top 32 bits."""
    return ((counter_draw(key, i) >> 32) * n) >> 32
