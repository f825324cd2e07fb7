"""Workers die with their parent, and a re-run removes the temporary files of writers that are
gone, never one that a live process may still be writing."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import HANG_GUARD, run_with_fault, tree_hashes

from fdsl.atomic import remove_stale_temps, writer_alive

BIN = Path(sys.executable).parent


def _exited(pid: int) -> bool:
    """Whether process ``pid`` ends (HANG_GUARD seconds guard against a hang only)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], HANG_GUARD)[0])
    finally:
        os.close(fd)


def _zombie(tmp_path: Path) -> int:
    """A child process that has exited but was not reaped yet (as a killed run's workers are
    until init reaps them); its pid."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    assert _exited(proc.pid)
    proc.returncode = 0  # Popen must not reap it
    return proc.pid


def test_stale_temps_of_dead_writers_go_and_of_live_ones_stay(tmp_path):
    folder = tmp_path / "ds"
    (folder / "sub").mkdir(parents=True)
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    zombie = _zombie(tmp_path)
    try:
        names = {"live": f".shard-00001.h5.tmp-{live.pid}", "dead": f".shard-00002.h5.tmp-{dead.pid}",
                 "zombie": f"sub/.00001.png.tmp-{zombie}", "own": f".manifest.json.tmp-{os.getpid()}",
                 "reused": f".shard-00003.h5.tmp-{live.pid}"}
        for name in names.values():
            (folder / name).write_bytes(b"partial")
        # A pid whose process started after the file last changed is not its writer (pid reuse).
        old = time.time() - 3600
        os.utime(folder / names["reused"], (old, old))
        (folder / "shard-00000.h5").write_bytes(b"kept")
        (folder / "notes.tmp").write_bytes(b"kept")
        assert writer_alive(live.pid, folder / names["live"])
        assert not writer_alive(zombie, folder / names["zombie"])
        assert remove_stale_temps(folder) == 4
        assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == \
            sorted([names["live"], "notes.tmp", "shard-00000.h5"])
    finally:
        live.communicate(b"")
        os.waitpid(zombie, 0)


def test_without_the_kernels_help_a_watchdog_ends_the_worker(tmp_path):
    """Where PR_SET_PDEATHSIG is missing, the worker's watchdog notices its parent is gone."""
    script = textwrap.dedent("""
        import os, signal, sys
        from fdsl import workers
        workers._parent_death_signal = lambda: False
        parent = os.getpid()
        r, w = os.pipe()
        child = os.fork()
        if child == 0:
            workers.die_with_parent(parent)
            os.write(w, b"x")
            signal.pause()
        os.read(r, 1)  # the child's watchdog runs
        print(child, flush=True)
        sys.stdin.read(1)  # the parent ends when the test says so
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    child = int(parent.stdout.readline())
    parent.stdin.close()
    parent.wait(timeout=HANG_GUARD)
    if not _exited(child):
        os.kill(child, 9)
        pytest.fail("the worker outlived its parent")


@pytest.mark.slow
def test_gen_fractal_killed_while_its_workers_write_resumes_without_leftovers(tmp_path):
    """The issue's case: gen-fractal's main process SIGKILLed while its workers write shards. They
    must die with it (no process of the run is left), and the re-run removes their partial
    shards and finishes the same bytes as a run never killed."""
    argv = [str(BIN / "gen-fractal"), "--db", "rcdb", "--classes", "2", "--instances", "6", "--image-size", "32",
            "--shard-size", "2", "--workers", "2", "--out"]
    out, reference = tmp_path / "out", tmp_path / "reference"
    done = run_with_fault(argv + [str(out)], "kill-parent@shard-writing")
    assert done.returncode == -9, done.stderr
    left = [p.name for p in out.iterdir() if ".tmp-" in p.name]
    assert left and all(p.startswith(".shard-") for p in left), left
    for folder in (out, reference):
        finished = subprocess.run(argv + [str(folder)], capture_output=True, text=True, timeout=HANG_GUARD)
        assert finished.returncode == 0, finished.stderr
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    assert tree_hashes(out) == tree_hashes(reference)
