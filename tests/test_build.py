"""The dataset builder and job runner: determinism, resume (also after SIGKILL), refusals, failures."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import Gate, listed_shards, run_with_fault, write_build_script
from toy_source import ToySource

from fdsl.datasets.builder.build import build_dataset, plan_tasks
from fdsl.datasets.builder.jobs import run_tasks
from fdsl.datasets.format import read_manifest, verify_dataset
from fdsl.errors import ConfigMismatchError, FdslError

TESTS = Path(__file__).parent


def test_plan_tasks_covers_items_once():
    tasks = plan_tasks(23, 5)
    assert [(t.start, t.stop) for t in tasks] == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 23)]


@pytest.mark.slow
def test_bytes_independent_of_workers(tmp_path, hashes):
    src = ToySource(fail_every=7)
    build_dataset(src, tmp_path / "w1", shard_size=8, workers=1)
    build_dataset(src, tmp_path / "w2", shard_size=8, workers=2)
    assert hashes(tmp_path / "w1") == hashes(tmp_path / "w2")


def test_resume_skips_verified_and_rebuilds_damaged(tmp_path, hashes):
    out = tmp_path / "ds"
    first = build_dataset(ToySource(), out, shard_size=8, workers=1)
    before = hashes(out)
    again = build_dataset(ToySource(), out, shard_size=8, workers=1)
    assert (again.shards_skipped, first.shards_skipped) == (first.shards, 0)
    (out / "shard-00002.h5").write_bytes(b"garbage")
    (out / "shard-00003.h5").unlink()
    repaired = build_dataset(ToySource(), out, shard_size=8, workers=1)
    assert repaired.shards_skipped == first.shards - 2
    assert hashes(out) == before


def test_different_settings_refused_unless_overwrite(tmp_path, hashes):
    out = tmp_path / "ds"
    build_dataset(ToySource(seed=1), out, shard_size=8, workers=1)
    with pytest.raises(ConfigMismatchError, match="seed: 1 -> 2"):
        build_dataset(ToySource(seed=2), out, shard_size=8, workers=1)
    with pytest.raises(ConfigMismatchError, match="shard_size"):
        build_dataset(ToySource(seed=1), out, shard_size=9, workers=1)
    (out / "notes.txt").write_text("user file")
    build_dataset(ToySource(seed=2), out, shard_size=8, workers=1, overwrite=True)
    fresh = tmp_path / "fresh"
    build_dataset(ToySource(seed=2), fresh, shard_size=8, workers=1)
    kept = hashes(out)
    assert kept.pop("notes.txt")
    assert kept == hashes(fresh)


def test_non_empty_folder_without_manifest_refused(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"x")
    with pytest.raises(ConfigMismatchError, match="not empty"):
        build_dataset(ToySource(), tmp_path, workers=1)


def test_unwritable_out_is_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FdslError, match="cannot write to output folder"):
        build_dataset(ToySource(), blocker / "sub", workers=1)


def test_failures_recorded_and_counted(tmp_path):
    out = tmp_path / "ds"
    result = build_dataset(ToySource(fail_every=5), out, shard_size=8, workers=1)
    lines = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    assert [x["item"] for x in lines] == [4, 9, 14, 19, 24, 29]
    assert result.failures == 6 and result.images == 24
    manifest = read_manifest(out)
    assert manifest["failures"] == 6 and manifest["num_images"] == 24 and manifest["num_items"] == 30


def test_shards_written_part_by_part_hold_the_same_images(tmp_path):
    import h5py

    whole = build_dataset(ToySource(fail_every=5), tmp_path / "whole", shard_size=12, workers=1)
    # 12-item shards in parts of 5 take three render() calls
    parts = build_dataset(ToySource(fail_every=5), tmp_path / "parts", shard_size=12, workers=1, render_part=5)
    assert parts.images == whole.images == 24 and parts.failures == whole.failures == 6
    for name in ("shard-00000.h5", "shard-00001.h5", "shard-00002.h5"):
        with h5py.File(tmp_path / "whole" / name) as a, h5py.File(tmp_path / "parts" / name) as b:
            assert (a["images"][:] == b["images"][:]).all() and (a["labels"][:] == b["labels"][:]).all()
            assert (a["metadata/item"][:] == b["metadata/item"][:]).all()
    assert (tmp_path / "whole" / "failures.jsonl").read_bytes() == (tmp_path / "parts" / "failures.jsonl").read_bytes()


def test_png_tasks_rendered_part_by_part_give_the_same_files(tmp_path, hashes):
    build_dataset(ToySource(fail_every=5), tmp_path / "whole", shard_size=12, workers=1, storage="png")
    build_dataset(ToySource(fail_every=5), tmp_path / "parts", shard_size=12, workers=1, storage="png",
                  render_part=5)
    assert hashes(tmp_path / "whole") == hashes(tmp_path / "parts")


def test_png_format_layout_and_resume(tmp_path, hashes):
    out = tmp_path / "png"
    build_dataset(ToySource(classes=2, per_class=3), out, shard_size=4, storage="png", workers=1)
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert names == [f"{c:05d}/{c:05d}_{i:04d}.png" for c in range(2) for i in range(3)]
    # ImageFolder (the official training scripts) takes every folder of the root as a class.
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["00000", "00001"]
    before = hashes(out)
    assert verify_dataset(out) == []
    (out / "00001/00001_0002.png").write_bytes(b"broken")
    (out / "00000/00000_0001.png").unlink()
    problems = {(Path(p.file).name, p.check) for p in verify_dataset(out)}
    assert problems == {("00001_0002.png", "sha256"), ("00001_0002.png", "image_shape"), ("00000_0001.png", "exists")}
    again = build_dataset(ToySource(classes=2, per_class=3), out, shard_size=4, storage="png", workers=1)
    assert again.shards_skipped == 0  # both tasks lost a file
    assert hashes(out) == before


class _Flaky:
    """Fails the first time it sees each task, in any process (marker files on disk)."""

    def __init__(self, folder: Path, always: bool = False) -> None:
        self.folder, self.always = folder, always

    def __call__(self, task: int) -> int:
        marker = self.folder / f"seen-{task}"
        if self.always or not marker.exists():
            marker.touch()
            raise RuntimeError(f"transient failure {task}")
        return task * 10


def test_tasks_are_retried(tmp_path):
    got = {}
    stats = run_tasks(_Flaky(tmp_path), [1, 2, 3], lambda t, r: got.setdefault(t, r) and 1, workers=1)
    assert got == {1: 10, 2: 20, 3: 30} and stats.tasks_retried == 3


def test_task_failing_every_retry_stops_with_clear_error(tmp_path):
    with pytest.raises(FdslError, match="task 2 failed: transient failure 2"):
        run_tasks(_Flaky(tmp_path, always=True), [2], lambda t, r: 1, workers=1, retries=1)


def test_unknown_backend():
    with pytest.raises(FdslError, match="unknown backend"):
        run_tasks(abs, [1], lambda t, r: 1, backend="slurm")


@pytest.mark.slow
def test_ray_backend_same_bytes(tmp_path, hashes, monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray is optional: pip install 'fdsl[ray]'")
    # Ray's workers must import the toy source from this folder, as a cluster would import fdsl.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    build_dataset(ToySource(fail_every=7), tmp_path / "local", shard_size=8, workers=1)
    try:
        build_dataset(ToySource(fail_every=7), tmp_path / "ray", shard_size=8, workers=2, backend="ray")
    finally:
        ray.shutdown()
    assert hashes(tmp_path / "local") == hashes(tmp_path / "ray")


KILLABLE = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from toy_source import ToySource
    from fdsl.cli import run_cli
    from fdsl.datasets.builder.build import build_dataset

    def body(argv):
        build_dataset(ToySource(classes=4, per_class=12, gate=argv[1] if len(argv) > 1 else None), argv[0],
                      shard_size=4, workers=2)
        return 0

    if __name__ == "__main__":
        sys.exit(run_cli("toy-build", body, sys.argv[1:]))
""")


@pytest.mark.slow
def test_resume_after_sigkill_is_byte_identical(tmp_path, hashes):
    """Killed four times at exact points (fdsl.faults): the main process alone as its first worker
    starts, the whole group after a shard, the main process alone after five more, and the main
    process alone while a worker writes a shard. No worker may outlive it (``run_with_fault``
    checks that the run's whole session is gone), and the re-run removes what they left."""
    script, out = write_build_script(tmp_path, KILLABLE)
    reference = tmp_path / "reference"
    build_dataset(ToySource(classes=4, per_class=12), reference, shard_size=4, workers=1)
    for fault, listed in [("kill-parent@worker-started", 0), ("kill-group@shard-done:1", 1),
                          ("kill@shard-done:5", 6), ("kill-parent@shard-writing", None)]:
        done = run_with_fault([sys.executable, str(script), str(out)], fault)
        assert done.returncode == -signal.SIGKILL, (fault, done.stderr)
        assert listed is None or listed_shards(out) == listed, (fault, listed_shards(out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and 6 <= len(manifest["shards"]) < 12
    assert list(out.glob(".shard-*.h5.tmp-*")), "the killed worker left no partial shard to clean up"
    result = build_dataset(ToySource(classes=4, per_class=12), out, shard_size=4, workers=2)
    assert result.shards_skipped == len(manifest["shards"])
    assert hashes(out) == hashes(reference)
    assert not list(out.glob(".*tmp*"))


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["int-group@shard-done:1", "int@shard-done:1"])
def test_ctrl_c_stops_at_once_with_one_line_and_resumes(tmp_path, hashes, fault):
    """SIGINT (to the whole process group as a terminal's Ctrl-C sends it, or to the main process
    alone as ``kill -INT`` does) once a shard is done, while shard 0 waits at a gate that never
    opens: the run stops without waiting for it (waiting would hang), prints one line, and a
    re-run completes the set."""
    script, out = write_build_script(tmp_path, KILLABLE)
    gate = Gate(tmp_path / "gate", reached=False)
    done = run_with_fault([sys.executable, str(script), str(out), str(gate.folder)], fault)
    assert done.returncode == 130
    assert done.stderr.strip().splitlines() == ["toy-build: interrupted; re-run the same command to resume"], done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and len(manifest["shards"]) == 1
    build_dataset(ToySource(classes=4, per_class=12), out, shard_size=4, workers=2)
    build_dataset(ToySource(classes=4, per_class=12), tmp_path / "reference", shard_size=4, workers=1)
    assert hashes(out) == hashes(tmp_path / "reference")
    assert not list(out.glob(".*tmp*"))


def test_a_worker_that_cannot_see_the_output_folder_refuses_in_one_line(tmp_path):
    """A Ray node without the shared file system sees no manifest: it must not write shards the
    driver never sees, and the run must stop with one line that says why."""
    from fdsl.datasets.builder.build import ShardTask, _Job

    elsewhere = tmp_path / "not-shared"
    elsewhere.mkdir()
    job = _Job(ToySource(), str(elsewhere), "hdf5", "lz4")
    with pytest.raises(FdslError, match="shared file system") as info:
        job(ShardTask(0, 0, 8))
    assert "\n" not in str(info.value) and list(elsewhere.iterdir()) == []
    with pytest.raises(FdslError, match=r"^task shard 0 .* failed: .*not visible to the worker"):
        run_tasks(job, [ShardTask(0, 0, 8)], lambda task, entry: 8, backend="inline", workers=1)
