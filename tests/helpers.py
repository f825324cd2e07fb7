"""Helpers shared by several test modules (tests/ is on sys.path through conftest.py)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
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


def wait_for_shards(proc: subprocess.Popen, out: Path, shards: int, timeout: float, poll: float) -> None:
    """Wait until the manifest in ``out`` lists ``shards`` shards; the run must still be going."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and listed_shards(out) < shards:
        time.sleep(poll)
    assert proc.poll() is None, "run finished before it could be interrupted"


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
