"""The HDF5 shard format: round trips, byte-stable writes, atomicity and verification."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from fdsl.datasets.format import COMPRESSIONS, read_manifest
from fdsl.datasets.format.hdf5.shardfile import open_shard
from fdsl.datasets.format.hdf5.writer import Hdf5ShardWriter
from fdsl.datasets.format.manifest import FORMAT_NAME
from fdsl.datasets.inspect.cli import main as inspect_main
from fdsl.errors import ShardError


def write_shard(folder, images, labels, metadata=None, compression="lz4"):
    """One shard written the way the builder's workers write it: ``folder/shard-00000.h5``."""
    folder.mkdir(exist_ok=True)
    writer = Hdf5ShardWriter(folder, 0, compression=compression, expected=len(labels))
    try:
        writer.append(images, labels, metadata)
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def _arrays(n=5, shape=(8, 8)):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    return images, np.arange(n) % 3, {"area": rng.random(n).astype(np.float32), "name": np.array([f"m{i}" for i in range(n)])}


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("shape", [(8, 8), (6, 7, 3)])
def test_round_trip(tmp_path, compression, shape):
    images, labels, meta = _arrays(shape=shape)
    entry = write_shard(tmp_path, images, labels, meta, compression)
    assert entry["file"] == "shard-00000.h5"
    assert entry["count"] == 5 and entry["bytes"] == (tmp_path / "shard-00000.h5").stat().st_size
    with h5py.File(tmp_path / "shard-00000.h5") as f:
        np.testing.assert_array_equal(f["images"][:], images)
        np.testing.assert_array_equal(f["labels"][:], labels)
        assert f["labels"].dtype == np.int64
        assert f["images"].chunks == (1, *shape)
        np.testing.assert_array_equal(f["metadata/area"][:], meta["area"])
        assert f["metadata/name"][2] == b"m2"
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def test_same_arrays_same_bytes(tmp_path):
    images, labels, meta = _arrays()
    a = write_shard(tmp_path / "a", images, labels, meta)
    b = write_shard(tmp_path / "b", images, labels, meta)
    assert a["sha256"] == b["sha256"]
    images[0, 0, 0] ^= 1
    c = write_shard(tmp_path / "c", images, labels, meta)
    assert c["sha256"] != a["sha256"]


def test_bad_arrays_rejected(tmp_path):
    images, labels, meta = _arrays()
    with pytest.raises(ShardError, match="uint8"):
        write_shard(tmp_path, images.astype(np.float32), labels)
    with pytest.raises(ShardError, match="labels"):
        write_shard(tmp_path, images, labels[:2])
    with pytest.raises(ShardError, match="area"):
        write_shard(tmp_path, images, labels, {"area": np.zeros(2)})
    assert not list(tmp_path.iterdir()), "a refused shard left a file"


def test_manifest_errors(tmp_path):
    with pytest.raises(ShardError, match="no such data set folder"):
        read_manifest(tmp_path / "missing")
    with pytest.raises(ShardError, match="missing manifest"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ShardError, match="unreadable manifest"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": FORMAT_NAME, "format_version": 99}))
    with pytest.raises(ShardError, match="newer"):
        read_manifest(tmp_path)


def test_open_shard_names_truncated_file(tmp_path):
    images, labels, meta = _arrays()
    path = tmp_path / "shard-00000.h5"
    write_shard(tmp_path, images, labels, meta)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match="shard-00000.h5"):
        open_shard(path)


def _dataset(tmp_path, toy):
    from fdsl.datasets.builder.build import build_dataset

    out = tmp_path / "ds"
    build_dataset(toy(classes=2, per_class=10, size=16), out, shard_size=7, workers=1)
    return out


def test_verify_catches_truncation_and_flipped_byte(tmp_path, capsys):
    from toy_source import ToySource

    out = _dataset(tmp_path, ToySource)
    assert inspect_main([str(out), "--verify"]) == 0
    assert "checksums OK" in capsys.readouterr().out

    victim = out / "shard-00001.h5"
    original = victim.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x40
    victim.write_bytes(bytes(flipped))
    assert inspect_main([str(out), "--verify"]) == 1
    err = capsys.readouterr().err
    assert "shard-00001.h5: sha256 check failed" in err
    assert "shard-00000.h5" not in err and "shard-00002.h5" not in err

    victim.write_bytes(original[:-100])
    assert inspect_main([str(out), "--verify"]) == 1
    err = capsys.readouterr().err
    assert "shard-00001.h5: size check failed: truncated" in err

    victim.unlink()
    assert inspect_main([str(out), "--verify"]) == 1
    assert "shard-00001.h5: exists check failed" in capsys.readouterr().err


def test_inspect_summary_grid_and_hist(tmp_path, capsys):
    from PIL import Image
    from toy_source import ToySource

    out = _dataset(tmp_path, ToySource)
    grid, hist = tmp_path / "grid.png", tmp_path / "hist.png"
    assert inspect_main([str(out), "--grid", str(grid), "--per-class", "4", "--sort-by", "inst",
                         "--hist", "inst", str(hist)]) == 0
    text = capsys.readouterr().out
    assert "images     20 of 20 planned in 3 shards" in text
    assert "c0" in text and "c1" in text
    sheet = Image.open(grid)
    assert sheet.height > 2 * 96 and sheet.width > 4 * 96  # two rows of four thumbnails
    assert Image.open(hist).size[0] > 100


def test_inspect_bad_input_one_line(tmp_path, capsys):
    assert inspect_main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such data set folder" in err[0]
    assert inspect_main([str(tmp_path)]) == 2
    assert "missing manifest" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        inspect_main([str(tmp_path), "--per-class", "0"])
    assert exc.value.code == 2


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_compressed_shards_read_in_a_fresh_process(tmp_path, compression):
    """Reading must not depend on the writer having imported hdf5plugin in the same process."""
    import subprocess
    import sys

    from toy_source import ToySource

    from fdsl.datasets.builder.build import build_dataset

    build_dataset(ToySource(), tmp_path / "ds", shard_size=10, workers=1, compression=compression)
    grid = tmp_path / "grid.png"
    done = subprocess.run([sys.executable, "-m", "fdsl.datasets.inspect.cli", str(tmp_path / "ds"), "--verify",
                           "--grid", str(grid)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert grid.stat().st_size > 0


BLAMED = [
    ("image_shape", lambda m: m.update(image_shape=[32, 32]), "image_shape",
     "[16, 16], manifest says [32, 32]"),
    ("classes", lambda m: m.update(classes=m["classes"][:1]), "classes", "labels span 0..1 but there are 1 classes"),
    ("metadata", lambda m: m["metadata_fields"].update(inst="<i8"), "metadata_fields", "fields"),
    ("count", lambda m: (m["shards"][1].update(count=6), m.update(num_images=19)), "shards[1].count",
     "manifest says 6"),
]


@pytest.mark.parametrize("storage", ["hdf5", "png"])
@pytest.mark.parametrize("name,edit,field,detail", BLAMED, ids=[b[0] for b in BLAMED])
def test_verify_blames_the_manifest_when_the_shards_match_their_checksums(tmp_path, capsys, storage, name,
                                                                          edit, field, detail):
    from helpers import edit_manifest
    from toy_source import ToySource

    from fdsl.datasets import ShardDataset
    from fdsl.datasets.builder.build import build_dataset

    out = tmp_path / "ds"
    build_dataset(ToySource(classes=2, per_class=10, size=16), out, shard_size=7, workers=1, storage=storage)
    edit_manifest(out, edit)
    assert inspect_main([str(out), "--verify"]) == 1
    bad = [line for line in capsys.readouterr().err.splitlines() if line.startswith("BAD ")]
    blamed = [line for line in bad if f"manifest.json: {field} check failed: " in line]
    assert blamed and detail in blamed[0] and "whose bytes match their recorded sha256" in blamed[0], bad
    assert not [line for line in bad if "shard-0" in line.split(": ")[0] or ".png" in line.split(": ")[0]
                or ".png-index" in line.split(": ")[0]], bad
    if name != "count":  # (the count also breaks the totals, which open refuses first)
        with pytest.raises(ShardError, match=f"manifest.json: {field.replace('[', '.').replace(']', '.')}"):
            ShardDataset(out, verify=True)


def test_verify_blames_a_changed_shard_not_the_manifest(tmp_path, capsys):
    """The same edit of the manifest, but the shard changed too: its checksum fails, so it is named."""
    from helpers import edit_manifest
    from toy_source import ToySource

    out = _dataset(tmp_path, ToySource)
    edit_manifest(out, lambda m: m.update(image_shape=[32, 32]))
    victim = out / "shard-00000.h5"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x40
    victim.write_bytes(bytes(data))
    assert inspect_main([str(out), "--verify"]) == 1
    err = capsys.readouterr().err
    assert "shard-00000.h5: sha256 check failed" in err
    assert "shard-00001.h5: image_shape check failed" not in err  # shard 1 is intact: the manifest's fault
    assert "manifest.json: image_shape check failed" in err


def test_verify_blames_the_manifests_png_digest(tmp_path, capsys):
    from helpers import edit_manifest
    from toy_source import ToySource

    from fdsl.datasets.builder.build import build_dataset

    out = tmp_path / "ds"
    build_dataset(ToySource(classes=2, per_class=10, size=16), out, shard_size=7, workers=1, storage="png")
    edit_manifest(out, lambda m: m["shards"][2].update(png_sha256="0" * 64))
    assert inspect_main([str(out), "--verify"]) == 1
    err = capsys.readouterr().err
    assert "BAD " + str(out / "manifest.json") + ": shards[2].png_sha256 check failed" in err
