"""Fault injection: bad flags, tampered manifests, path escapes, concurrent runs, full disks and
SIGKILL at random moments. Each fault must give one line (or a named problem), never touch a file
outside the output folder, and leave a folder that a re-run completes byte-identically."""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    HANG_GUARD,
    Gate,
    edit_manifest,
    listed_shards,
    run_with_fault,
    write_build_script,
)
from toy_source import ToySource

from fdsl import __version__
from fdsl.datasets.builder.build import build_dataset
from fdsl.datasets.format import manifest as mf
from fdsl.datasets.format import open_dataset, read_manifest, verify_dataset
from fdsl.datasets.inspect.cli import main as inspect_main
from fdsl.errors import ConfigMismatchError, DiskFullError, FdslError, ShardError

TESTS = Path(__file__).parent
TOY = dict(classes=3, per_class=6)
BUILD = dict(shard_size=5, workers=1)


def _one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def _no_temps(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if ".tmp-" in p.name], "temporary files left behind"


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reference")
    for storage in ("hdf5", "png"):
        build_dataset(ToySource(**TOY), root / storage, storage=storage, **BUILD)
    return {"hdf5": root / "hdf5", "png": root / "png"}


def _copy(references: dict[str, Path], storage: str, dest: Path) -> Path:
    shutil.copytree(references[storage], dest)
    return dest


# --------------------------------------------------------------------------- bad flags


def _gen_main(argv):
    from fdsl.generators.cli import main

    return main(argv)


def _render_main(argv):
    from fdsl.render.cli import main

    return main(argv)


def _cub_main(argv):
    from fdsl.datasets.importers.cli import main

    return main(argv)


BUILDER_FLAGS = [("--workers", "0", "positive integer"), ("--workers", "two", "positive integer"),
                 ("--shard-size", "-3", "positive integer"), ("--format", "tiff", "invalid choice"),
                 ("--compression", "gzip", "invalid choice"), ("--backend", "slurm", "invalid choice")]
BAD_FLAGS = (
    [("gen-fractal", _gen_main, ["--db", "fractaldb", "--classes", "2", "--out", "{out}", flag, value], msg)
     for flag, value, msg in BUILDER_FLAGS]
    + [("gen-fractal", _gen_main, ["--db", "nope", "--classes", "2", "--out", "{out}"], "invalid choice"),
       ("gen-fractal", _gen_main, ["--db", "rcdb", "--classes", "0", "--out", "{out}"], "positive integer")]
    + [("render-shapenet", _render_main, ["--out", "{out}", flag, value], msg) for flag, value, msg in BUILDER_FLAGS]
    + [("render-shapenet", _render_main, ["--out", "{out}", flag, value], msg) for flag, value, msg in [
        ("--views", "0", "positive integer"), ("--image-size", "8", "between 16 and 4096"),
        ("--image-size", "1e9", "between 16 and 4096"), ("--seed", "-1", "integer >= 0"),
        ("--fov", "500", "[1, 120]"), ("--fov", "nan", "[1, 120]"), ("--msaa", "3", "invalid choice"),
        ("--models-per-class", "0", "positive integer"), ("--viewpoints", "spiral", "invalid choice")]]
    + [("import-cub", _cub_main, ["--root", "{out}", "--out", "{out}", flag, value], msg) for flag, value, msg in
       BUILDER_FLAGS + [("--image-size", "0", "between 1 and 4096"), ("--classes", "-1", "positive integer"),
                        ("--split", "val", "invalid choice")]]
    + [("inspect-shards", inspect_main, ["{out}", flag, value], msg) for flag, value, msg in [
        ("--per-class", "0", "positive integer"), ("--max-classes", "x", "positive integer")]]
)


@pytest.mark.parametrize("prog,main,argv,message", BAD_FLAGS,
                         ids=[f"{p}:{' '.join(a[-2:])}" for p, _, a, _ in BAD_FLAGS])
def test_bad_flags_are_one_line(tmp_path, capsys, prog, main, argv, message):
    argv = [a.format(out=tmp_path / "out") for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"{prog}: error:") and message in line, line
    assert not (tmp_path / "out").exists(), "a refused command wrote its output folder"


@pytest.mark.parametrize("prog,main", [("inspect-shards", inspect_main), ("render-shapenet", _render_main),
                                       ("import-cub", _cub_main), ("gen-fractal", _gen_main)])
def test_version(capsys, prog, main):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert _one_line(capsys.readouterr().out) == f"{prog} (fdsl {__version__})"


def test_bad_paths_are_one_line(tmp_path, capsys, references):
    (tmp_path / "file").write_text("x")
    cases = [(inspect_main, [str(tmp_path / "missing")], "no such data set folder"),
             (inspect_main, [str(references["hdf5"]), "--grid", str(tmp_path)], "is a folder"),
             (inspect_main, [str(references["hdf5"]), "--hist", "inst", str(tmp_path)], "is a folder"),
             (inspect_main, [str(references["hdf5"]), "--grid", str(tmp_path / "file" / "g.png")], "--grid"),
             (inspect_main, [str(references["hdf5"]), "--sort-by", "nope", "--grid", str(tmp_path / "g.png")],
              "not a metadata field"),
             (_cub_main, ["--root", str(tmp_path / "missing"), "--out", str(tmp_path / "o")], "no such folder"),
             (_render_main, ["--out", str(tmp_path / "file" / "sub"), "--classes", "chair", "--views", "1",
                             "--models-per-class", "1"], "cannot write")]
    for main, argv, message in cases:
        assert main(argv) == 2
        line = _one_line(capsys.readouterr().err)
        assert message in line, line


# --------------------------------------------------------------------------- absurd sizes


class _HugeImages(ToySource):
    def image_shape(self) -> tuple[int, ...]:
        return (1_000_000, 1_000_000)


@pytest.mark.parametrize("source,shard_size,message", [
    (ToySource(classes=10**11, per_class=10**9), 10, "limit of"),
    (ToySource(classes=10**4, per_class=10**5), 1, "shards is more than the limit"),
    (_HugeImages(), 10, "of memory available"),
], ids=["items", "shards", "memory"])
def test_absurd_sizes_refused_before_any_file(tmp_path, source, shard_size, message):
    out = tmp_path / "out"
    with pytest.raises(FdslError, match=message) as exc:
        build_dataset(source, out, shard_size=shard_size, workers=2)
    assert "\n" not in str(exc.value)
    assert not out.exists()


def test_absurd_cli_sizes_are_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    for main, argv, message in [
            (_render_main, ["--out", str(out), "--classes", "chair", "--models-per-class", str(10**20)], "between 1 and"),
            (_render_main, ["--out", str(out), "--classes", "chair", "--models-per-class", "1", "--views", str(10**20)],
             "limit of"),
            (_cub_main, ["--root", str(tmp_path), "--out", str(out), "--image-size", "1000000"], "between 1 and 4096")]:
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
        assert code == 2
        assert message in _one_line(capsys.readouterr().err)
        assert not out.exists()


# --------------------------------------------------------------------------- tampered manifests


def _drop(path: tuple):
    def edit(manifest):
        target = manifest
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return edit


def _set(path: tuple, value):
    def edit(manifest):
        target = manifest
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value(target[path[-1]]) if callable(value) else value
    return edit


MISSING = [(k,) for k in mf.REQUIRED_KEYS] + [("shards", 1, k) for k in mf.RECORD_KEYS] + [
    ("format",), ("format_version",), ("image_shape",), ("extra_files", "toy.txt", "sha256")]
WRONG = [(("classes",), "abc", "classes"), (("classes",), [], "classes"), (("num_images",), -1, "num_images"),
         (("num_shards",), "4", "num_shards"), (("complete",), "yes", "complete"),
         (("shards",), {"0": 1}, "shards"), (("shards", 0, "count"), "5", "count"),
         (("shards", 0, "sha256"), "zz", "sha256"), (("shards", 0, "index"), 99, "index"),
         (("shards", 1, "file"), "shard-00000.h5", "listed twice"), (("image_shape",), [16, 0], "image_shape"),
         (("metadata_fields",), {"inst": "no-such-dtype"}, "dtype"), (("storage",), "zip", "storage"),
         (("format_version",), 99, "newer"), (("extra_files",), [], "extra_files")]


@pytest.mark.parametrize("key", MISSING, ids=["/".join(map(str, k)) for k in MISSING])
def test_missing_key_is_one_line_naming_file_and_key(tmp_path, references, capsys, key):
    folder = _copy(references, "hdf5", tmp_path / "ds")
    edit_manifest(folder, _drop(key))
    with pytest.raises(ShardError) as exc:
        open_dataset(folder)
    message = str(exc.value)
    assert "\n" not in message and "manifest.json" in message
    assert repr(key[-1]) in message or key[-1] == "format", message
    assert inspect_main([str(folder), "--verify"]) == 1
    assert "manifest.json: manifest check failed" in capsys.readouterr().err
    with pytest.raises(ConfigMismatchError, match="--overwrite"):
        build_dataset(ToySource(**TOY), folder, **BUILD)


@pytest.mark.parametrize("key,value,named", WRONG, ids=[f"{'/'.join(map(str, k))}={v!r}" for k, v, _ in WRONG])
def test_wrong_value_is_refused(tmp_path, references, key, value, named):
    folder = _copy(references, "hdf5", tmp_path / "ds")
    edit_manifest(folder, _set(key, value))
    with pytest.raises(ShardError, match=named) as exc:
        open_dataset(folder)
    assert "\n" not in str(exc.value)
    assert [p.check for p in verify_dataset(folder)] == ["manifest"]


INCONSISTENT = [
    ("count lowered", lambda m: m["shards"][0].update(count=4), {"count", "totals"}),
    ("count raised, total too", lambda m: (m["shards"][0].update(count=6), m.update(num_images=19)),
     {"count", "totals"}),
    ("counts moved between shards", lambda m: (m["shards"][0].update(count=6), m["shards"][3].update(count=2)),
     {"count"}),
    ("num_images raised", lambda m: m.update(num_images=m["num_images"] + 1), {"totals"}),
    ("fewer classes than labels", lambda m: m.update(classes=m["classes"][:2]), {"labels"}),
    ("other image shape", lambda m: m.update(image_shape=[8, 8]), {"image_shape"}),
    ("other metadata dtype", lambda m: m["metadata_fields"].update(inst="<i8"), {"metadata"}),
    ("complete with a shard missing", lambda m: (m["shards"].pop(), m.update(num_images=15)), {"totals"}),
]


@pytest.mark.parametrize("storage", ["hdf5", "png"])
@pytest.mark.parametrize("name,edit,checks", INCONSISTENT, ids=[c[0] for c in INCONSISTENT])
def test_inconsistent_manifest_is_caught(tmp_path, references, hashes, storage, name, edit, checks):
    folder = _copy(references, storage, tmp_path / "ds")
    edit_manifest(folder, edit)
    assert {p.check for p in verify_dataset(folder, checksum=False)} == checks
    with pytest.raises(ShardError) as exc:
        open_dataset(folder)
    assert "\n" not in str(exc.value)
    # A re-run never calls a tampered data set complete: it rebuilds what disagrees.
    build_dataset(ToySource(**TOY), folder, storage=storage, **BUILD)
    assert hashes(folder) == hashes(references[storage])


@pytest.mark.parametrize("content", ["{not json", "[]", '"text"', "", "\x00\xff"])
def test_unreadable_manifest_refused_then_overwrite_rebuilds(tmp_path, references, hashes, content):
    folder = _copy(references, "png", tmp_path / "ds")
    (folder / "manifest.json").write_text(content, errors="surrogateescape")
    (folder / "notes.txt").write_text("user file")
    with pytest.raises(ConfigMismatchError, match="pass --overwrite") as exc:
        build_dataset(ToySource(**TOY), folder, storage="png", **BUILD)
    assert "\n" not in str(exc.value)
    build_dataset(ToySource(**TOY), folder, storage="png", overwrite=True, **BUILD)
    kept = hashes(folder)
    assert kept.pop("notes.txt")
    assert kept == hashes(references["png"])


# --------------------------------------------------------------------------- path escapes


@pytest.mark.parametrize("escape", ["../victim.txt", "{abs}", "sub/../../victim.txt", "link/victim.txt"])
@pytest.mark.parametrize("where", ["shard", "extra"])
def test_paths_outside_the_folder_are_refused_and_never_deleted(tmp_path, references, escape, where):
    folder = _copy(references, "hdf5", tmp_path / "ds")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (folder / "link").symlink_to(tmp_path)
    escape = escape.format(abs=str(victim))
    if where == "shard":
        edit_manifest(folder, _set(("shards", 0, "file"), escape))
    else:
        edit_manifest(folder, lambda m: m["extra_files"].update({escape: {"bytes": 8, "sha256": "0" * 64}}))
    with pytest.raises(ShardError, match="outside the data set folder"):
        read_manifest(folder)
    assert verify_dataset(folder)[0].check == "manifest"
    with pytest.raises(ConfigMismatchError, match="outside the data set folder"):
        build_dataset(ToySource(**TOY), folder, **BUILD)
    build_dataset(ToySource(seed=5, **TOY), folder, overwrite=True, **BUILD)
    assert victim.read_text() == "precious"
    assert open_dataset(folder, verify=True).manifest["config"]["seed"] == 5


def test_png_listing_escape_never_deleted(tmp_path, references):
    folder = _copy(references, "png", tmp_path / "ds")
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"precious")
    listing = folder / ".png-index-00000.csv"
    lines = listing.read_text().splitlines()
    lines[1] = "../victim.png," + lines[1].split(",", 1)[1]
    listing.write_text("\n".join(lines) + "\n")
    # The manifest is made to agree with the tampered listing, so only the path check is left.
    from fdsl.datasets.format.checksum import sha256_file

    edit_manifest(folder, lambda m: m["shards"][0].update(bytes=listing.stat().st_size, sha256=sha256_file(listing)))
    problems = verify_dataset(folder)
    assert [(p.check, "outside the data set folder" in p.detail) for p in problems] == [("listing", True)]
    build_dataset(ToySource(seed=5, **TOY), folder, storage="png", overwrite=True, **BUILD)
    assert victim.read_bytes() == b"precious"


def test_resolve_member():
    root = Path("/data/set")
    for bad in ["../x", "/etc/passwd", "a/../../x", "", "a\\b", "~/x", None, 3]:
        with pytest.raises(ShardError):
            mf.resolve_member(root, bad)
    assert mf.resolve_member(root, "a/b.png") == root / "a" / "b.png"


def test_readers_refuse_float_indices(references):
    for storage in ("hdf5", "png"):
        reader = open_dataset(references[storage])
        with pytest.raises(ShardError, match="integers"):
            reader.read_images([1.5])
        with pytest.raises(ShardError, match="out of range"):
            reader.read_images([len(reader)])
        np.testing.assert_array_equal(reader.read_images([-1]), reader.read_images([len(reader) - 1]))


# --------------------------------------------------------------------------- concurrent runs

HOLDER = textwrap.dedent("""
    import sys
    from fdsl.atomic import folder_lock
    with folder_lock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.read()  # holds the lock until the test closes its end
""")

SLOW_BUILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from toy_source import ToySource
    from fdsl.datasets.builder.build import build_dataset
    if __name__ == "__main__":
        build_dataset(ToySource(classes=3, per_class=6, gate=sys.argv[4]), sys.argv[1], shard_size=5,
                      workers=int(sys.argv[2]), storage=sys.argv[3])
""")


def test_second_run_refused_in_one_line(tmp_path, capsys, references):
    out = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FdslError, match="in use by another fdsl run"):
            build_dataset(ToySource(**TOY), out, **BUILD)
        assert _render_main(["--out", str(out), "--classes", "chair", "--views", "1", "--models-per-class", "1",
                             "--workers", "1"]) == 2
        assert "in use by another fdsl run" in _one_line(capsys.readouterr().err)
        assert _gen_main(["--db", "rcdb", "--classes", "1", "--instances", "1", "--image-size", "32",
                          "--out", str(out), "--workers", "1"]) == 2
        assert "in use by another fdsl run" in _one_line(capsys.readouterr().err)
        assert sorted(p.name for p in out.iterdir()) == [".fdsl.lock"], "a refused run touched the folder"
    finally:
        holder.kill()
        holder.wait(timeout=HANG_GUARD)
    build_dataset(ToySource(**TOY), out, **BUILD)  # the lock died with its holder


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["hdf5", "png"])
def test_concurrent_runs_first_undisturbed(tmp_path, hashes, references, storage):
    """While the first run waits at a gate mid-work (so it certainly holds the folder), runs with
    the same and with other settings are refused; the first then finishes undisturbed."""
    script, out = write_build_script(tmp_path, SLOW_BUILD)
    gate = Gate(tmp_path / "gate")
    first = subprocess.Popen([sys.executable, str(script), str(out), "2", storage, str(gate.folder)],
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        gate.wait_reached(first)
        others = [subprocess.run([sys.executable, str(script), str(out), "1", other, str(gate.folder)],
                                 stderr=subprocess.PIPE, text=True, timeout=HANG_GUARD)
                  for other in (storage, "png" if storage == "hdf5" else "hdf5")]
        for second in others:
            assert second.returncode != 0 and "in use by another fdsl run" in second.stderr, second.stderr
        assert first.poll() is None  # still at the gate: the refusals cannot have come after it
        gate.open()
        assert first.wait(timeout=HANG_GUARD) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert hashes(out) == hashes(references[storage])


# --------------------------------------------------------------------------- full disks


def _fail_writes_after(limit: int):
    """An ``open`` for fdsl.atomic whose files raise ENOSPC once ``limit`` bytes were written."""
    written = [0]

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            written[0] += len(data)
            if written[0] > limit:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def fake_open(path, mode="r", *args, **kwargs):
        fh = builtins.open(path, mode, *args, **kwargs)
        return Full(fh) if "w" in mode else fh

    return fake_open


@pytest.mark.parametrize("storage", ["hdf5", "png"])
def test_disk_full_is_one_line_and_resumes(tmp_path, monkeypatch, hashes, references, storage):
    """ENOSPC injected into every atomic write (HDF5 shards forced onto the in-memory path that a
    nearly full disk takes); always runs, unlike the tmpfs test."""
    from fdsl import atomic
    from fdsl.datasets.format.hdf5 import writer

    out = tmp_path / "ds"
    monkeypatch.setattr(writer, "SAFE_FACTOR", 10**12)
    monkeypatch.setattr(atomic, "open", _fail_writes_after(6000), raising=False)
    with pytest.raises(DiskFullError) as exc:
        build_dataset(ToySource(**TOY), out, storage=storage, **BUILD)
    message = str(exc.value)
    assert "\n" not in message and f"disk full writing {out}" in message and "free" in message, message
    _no_temps(out)
    monkeypatch.undo()
    build_dataset(ToySource(**TOY), out, storage=storage, **BUILD)
    assert hashes(out) == hashes(references[storage])
    _no_temps(out)


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


FULL_DISK = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from toy_source import ToySource
    from fdsl.cli import run_cli
    from fdsl.datasets.builder.build import build_dataset

    def body(argv):
        build_dataset(ToySource(classes=4, per_class=50, size=128), argv[0], shard_size=50,
                      workers=int(argv[1]), storage=argv[2], compression="none")
        return 0

    if __name__ == "__main__":
        sys.exit(run_cli("toy-build", body, sys.argv[1:]))
""")


@pytest.mark.slow
@pytest.mark.parametrize("workers,storage", [(1, "hdf5"), (2, "hdf5"), (1, "png")])
def test_tmpfs_full_then_freed_resumes_byte_identical(tmp_path, tiny_disk, hashes, workers, storage):
    script = tmp_path / "full.py"
    script.write_text(FULL_DISK.format(tests=str(TESTS)))
    out = tiny_disk / "ds"
    done = subprocess.run([sys.executable, str(script), str(out), str(workers), storage],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, (done.returncode, done.stderr)  # not -11: no crash inside HDF5
    line = _one_line(done.stderr)
    assert f"disk full writing {out}" in line and "re-run the same command" in line, line
    _no_temps(out)
    subprocess.run(["mount", "-o", "remount,size=8m", str(tiny_disk)], check=True)
    done = subprocess.run([sys.executable, str(script), str(out), str(workers), storage],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    reference = tmp_path / "reference"
    subprocess.run([sys.executable, str(script), str(reference), "1", storage], check=True, timeout=300)
    assert hashes(out) == hashes(reference)
    _no_temps(out)


# --------------------------------------------------------------------------- SIGKILL


KILLABLE = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from toy_source import ToySource
    from fdsl.datasets.builder.build import build_dataset
    if __name__ == "__main__":
        build_dataset(ToySource(classes=4, per_class=10), sys.argv[1], shard_size=4,
                      workers=int(sys.argv[2]), storage=sys.argv[3])
""")
KILLABLE_SHARDS = 10


def _kill_point(rng: np.random.Generator, workers: int, left: int) -> tuple[str, int | None]:
    """A seeded choice of where to kill a run that has ``left`` of its shards to build, and how
    many more shards the manifest then lists (None: depends on how far the other worker got).
    Every choice lands before the run could finish."""
    points: list[tuple[str, int | None]] = []
    if left >= 2:
        n = int(rng.integers(1, left))
        points += [(f"kill@shard-done:{n}", n), (f"kill-group@shard-done:{n}", n)]
    if workers == 1:
        n = int(rng.integers(1, left + 1))
        points.append((f"kill@shard-writing:{n}", n - 1))  # the main process itself mid-write
    else:
        points += [("kill@pool-created", 0), ("kill-parent@worker-started", 0),
                   (f"kill-parent@shard-writing:{int(rng.integers(1, 3))}", None)]  # workers mid-write
    return points[int(rng.integers(len(points)))]


@pytest.mark.slow
@pytest.mark.parametrize("seed,storage", [(0, "hdf5"), (1, "png"), (2, "hdf5")])
def test_sigkill_at_random_moments_resumes_byte_identical(tmp_path, hashes, seed, storage):
    """SIGKILL at seeded-random but exact points (fdsl.faults): after n shards, mid-write, as the
    pool starts; the main process alone (its workers must die with it) or the whole group."""
    rng = np.random.default_rng(seed)
    script, out = write_build_script(tmp_path, KILLABLE)
    listed = 0
    for _ in range(3):
        workers = int(rng.integers(1, 3))
        fault, more = _kill_point(rng, workers, KILLABLE_SHARDS - listed)
        done = run_with_fault([sys.executable, str(script), str(out), str(workers), storage], fault)
        assert done.returncode == -signal.SIGKILL, (fault, done.returncode, done.stderr)
        now = max(listed_shards(out), 0)
        assert now == listed + more if more is not None else listed <= now < KILLABLE_SHARDS, (fault, listed, now)
        listed = now
    assert not json.loads((out / "manifest.json").read_text())["complete"]
    reference = tmp_path / "reference"
    build_dataset(ToySource(classes=4, per_class=10), reference, shard_size=4, workers=1, storage=storage)
    result = build_dataset(ToySource(classes=4, per_class=10), out, shard_size=4, workers=1, storage=storage)
    assert result.shards_skipped == listed
    assert hashes(out) == hashes(reference)
    _no_temps(out)


# --------------------------------------------------------------------------- Ctrl-C on Ray

RAY_INTERRUPTIBLE = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from toy_source import ToySource
    from fdsl.cli import run_cli
    from fdsl.datasets.builder.build import build_dataset

    def body(argv):
        build_dataset(ToySource(classes=4, per_class=12, gate=argv[1]), argv[0], shard_size=4, workers=2,
                      backend="ray")
        return 0

    if __name__ == "__main__":
        sys.exit(run_cli("toy-build", body, sys.argv[1:]))
""")


@pytest.mark.slow
def test_ctrl_c_on_ray_is_one_line(tmp_path):
    """SIGINT once a shard is done, while the task of shard 0 waits at a gate that never opens:
    the run must stop without waiting for it (a hang fails the test), in one line."""
    pytest.importorskip("ray", reason="Ray is optional: pip install 'fdsl[ray]'")
    script, out = write_build_script(tmp_path, RAY_INTERRUPTIBLE)
    gate = Gate(tmp_path / "gate", reached=False)
    done = run_with_fault([sys.executable, str(script), str(out), str(gate.folder)], "int@shard-done:1",
                          env={"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])})
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip().splitlines() == ["toy-build: interrupted; re-run the same command to resume"], done.stderr
    assert listed_shards(out) == 1
    _no_temps(out)
