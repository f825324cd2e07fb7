"""ShardDataset / ShardLoader against plain h5py reads and the contracts."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (lets the h5py reference read LZ4 / zstd shards)
import numpy as np
import pytest
import torch

from fdsl.datasets import ShardDataset, ShardLoader
from fdsl.datasets.builder.build import RenderedBatch, build_dataset
from fdsl.datasets.format import read_manifest
from fdsl.datasets.format.manifest import shard_records
from fdsl.datasets.read.sampler import (
    batch_diversity,
    block_order,
    rank_positions,
    uniform_distinct,
)
from fdsl.errors import FdslError, ShardError

sys.path.insert(0, str(Path(__file__).parent))
from helpers import edit_manifest  # noqa: E402
from toy_source import ToySource  # noqa: E402


class RGBSource(ToySource):
    """ToySource with 3-channel, non-square images and a float metadata field."""

    name = "toy-rgb"

    def image(self, item: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, item])
        img = np.zeros((self.size, self.size + 3, 3), np.uint8)
        img[rng.random(img.shape[:2]) < 0.2] = rng.integers(1, 256, 3, dtype=np.uint8)
        return img

    def render(self, start: int, stop: int) -> RenderedBatch:
        batch = super().render(start, stop)
        batch.metadata["area"] = np.array([float((self.image(i) > 0).any(-1).sum()) for i in batch.items])
        return batch


class SparseGreySource(ToySource):
    """Compressible grey images (the fast LZ4 path; random bytes are stored as raw blocks)."""

    name = "toy-sparse"

    def image(self, item: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, item])
        return np.where(rng.random((self.size, self.size)) < 0.1, rng.integers(1, 256), 0).astype(np.uint8)


def make(tmp_path: Path, name: str = "ds", rgb: bool | str = False, compression: str = "lz4",
         classes: int = 3, per_class: int = 9, shard_size: int = 8, fail_every: int = 6) -> Path:
    """A data set with uneven shards (the last is short, and every 6th item fails)."""
    cls = {False: ToySource, True: RGBSource, "sparse": SparseGreySource}[rgb]
    source = cls(classes=classes, per_class=per_class, size=12, seed=1, fail_every=fail_every)
    out = tmp_path / name
    build_dataset(source, out, shard_size=shard_size, backend="inline", compression=compression)
    return out


def h5_reference(folder: Path) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Every image (as C,H,W), label and metadata field, read with plain h5py."""
    manifest = read_manifest(folder)
    images, labels, meta = [], [], {}
    for record in shard_records(manifest):
        with h5py.File(folder / record.file, "r") as f:
            imgs = f["images"][: record.count]
            images.append(imgs[:, None] if imgs.ndim == 3 else imgs.transpose(0, 3, 1, 2))
            labels.append(f["labels"][: record.count])
            for name in f["metadata"]:
                meta.setdefault(name, []).append(f["metadata"][name][: record.count])
    return (np.concatenate(images), np.concatenate(labels),
            {k: np.concatenate(v) for k, v in meta.items()})


def collect(loader) -> tuple[np.ndarray, np.ndarray]:
    batches = list(loader)
    for images, labels in batches:
        assert images.dtype == torch.uint8 and images.ndim == 4 and labels.dtype == torch.int64
    return (torch.cat([b[0] for b in batches]).numpy(), torch.cat([b[1] for b in batches]).numpy())


@pytest.fixture(scope="module")
def grey(tmp_path_factory) -> Path:
    return make(tmp_path_factory.mktemp("grey"))


# --------------------------------------------------------------------------- correctness


@pytest.mark.parametrize("rgb", [False, "sparse", True], ids=["grey", "grey-sparse", "rgb"])
@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_every_image_matches_h5py(tmp_path, rgb, compression):
    folder = make(tmp_path, rgb=rgb, compression=compression)
    images, labels, meta = h5_reference(folder)
    counts = [r.count for r in shard_records(read_manifest(folder))]
    assert len(set(counts)) > 1  # uneven shards
    ds = ShardDataset(folder, mode=None)  # the stored channels
    if rgb in ("sparse", True) and compression == "lz4":  # the chunks really are compressed
        nbytes = int(np.prod(images.shape[1:]))
        assert all((layout.sizes < nbytes).all() for layout in ds._index.images.layouts)
    assert len(ds) == len(labels) == sum(counts)
    assert ds.image_shape == images.shape[1:]
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.dtype == torch.uint8 and np.array_equal(image.numpy(), images[i])
        assert label == labels[i] and isinstance(label, int)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.labels.dtype == np.int64
    assert set(ds.metadata) == set(meta)
    for name in meta:
        np.testing.assert_array_equal(ds.metadata[name], meta[name])
    got_images, got_labels = collect(ShardLoader(folder, batch_size=5, shuffle=False, num_workers=2))
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


@pytest.mark.parametrize("workers,num", [("thread", 0), ("thread", 3), ("process", 2)])
def test_loader_modes_agree(grey, workers, num):
    images, labels, _ = h5_reference(grey)
    loader = ShardLoader(grey, batch_size=4, shuffle=True, seed=5, num_workers=num, workers=workers)
    loader.set_epoch(2)
    rows = loader.epoch_rows()
    got_images, got_labels = collect(loader)
    np.testing.assert_array_equal(got_images, images[rows])
    np.testing.assert_array_equal(got_labels, labels[rows])
    assert len(loader) == -(-len(images) // 4)


def test_h5py_fallback_reads_the_same(tmp_path, monkeypatch):
    folder = make(tmp_path, compression="zstd")
    monkeypatch.setattr("fdsl.datasets.format.hdf5.chunks._ZSTD", False)  # as if zstandard were missing
    ds = ShardDataset(folder)
    assert {layout.codec for layout in ds._index.images.layouts} == {"h5py"}
    images, _, _ = h5_reference(folder)
    np.testing.assert_array_equal(collect(ShardLoader(ds, batch_size=7, shuffle=False))[0], images)


# --------------------------------------------------------------------------- order


def test_shuffle_is_reproducible_per_epoch_and_differs_across_epochs(grey):
    def items(seed: int, epoch: int) -> np.ndarray:
        loader = ShardLoader(grey, batch_size=4, seed=seed, num_workers=2)
        loader.set_epoch(epoch)
        return collect(loader)[0].reshape(len(loader.dataset), -1)[:, :8]

    first = items(0, 0)
    np.testing.assert_array_equal(first, items(0, 0))
    assert not np.array_equal(first, items(0, 1))
    assert not np.array_equal(first, items(1, 0))
    natural = collect(ShardLoader(grey, batch_size=4, shuffle=False, num_workers=0))[0]
    # a permutation: the same images, every one exactly once
    assert sorted(map(bytes, first)) == sorted(map(bytes, natural.reshape(len(natural), -1)[:, :8]))


@pytest.mark.parametrize("n", [0, 1, 7, 10, 23])
def test_rank_parts_are_equal_disjoint_and_cover(n):
    for shuffle in (False, True, "block"):
        parts = [rank_positions(n, shuffle=shuffle, seed=3, epoch=1, rank=r, world_size=2) for r in range(2)]
        assert len(parts[0]) == len(parts[1]) == -(-n // 2)
        assert set(parts[0]) | set(parts[1]) == set(range(n))
        overlap = len(parts[0]) + len(parts[1]) - n  # padding only
        assert len(set(parts[0]) & set(parts[1])) <= overlap < 2
    np.testing.assert_array_equal(rank_positions(n, shuffle=False, seed=0, epoch=0), np.arange(n))


def test_distributed_loaders_split_the_data(grey):
    n = len(ShardDataset(grey))
    assert n % 2 == 1  # exercises the padding
    loaders = [ShardLoader(grey, batch_size=3, seed=9, rank=r, world_size=2, num_workers=1)
               for r in range(2)]
    got = [collect(loader) for loader in loaders]
    rows = [loader.epoch_rows() for loader in loaders]
    assert len(rows[0]) == len(rows[1]) == (n + 1) // 2
    assert len(loaders[0]) == len(loaders[1]) == -(-((n + 1) // 2) // 3)
    assert set(rows[0]) | set(rows[1]) == set(range(n))
    assert len(set(rows[0]) & set(rows[1])) == 1
    images, _, _ = h5_reference(grey)
    for r in range(2):
        np.testing.assert_array_equal(got[r][0], images[rows[r]])
    dropped = ShardLoader(grey, batch_size=4, rank=1, world_size=2, drop_last=True)
    assert len(dropped) == ((n + 1) // 2) // 4 == len(list(dropped))
    assert all(len(b[0]) == 4 for b in dropped)


def test_block_order_is_a_seeded_permutation_of_contiguous_blocks():
    n = 1000
    order = block_order(n, seed=4, epoch=2, block_size=10, window_blocks=5)
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
    np.testing.assert_array_equal(order, block_order(n, seed=4, epoch=2, block_size=10, window_blocks=5))
    assert not np.array_equal(order, block_order(n, seed=4, epoch=3, block_size=10, window_blocks=5))
    assert not np.array_equal(order, block_order(n, seed=5, epoch=2, block_size=10, window_blocks=5))
    # each window of 5 blocks (50 positions) is a union of 5 whole blocks, mixed inside
    for start in range(0, n, 50):
        window = order[start:start + 50]
        blocks = np.unique(window // 10)
        assert len(blocks) == 5 and set(window) == set((blocks[:, None] * 10 + np.arange(10)).ravel())
        assert len(np.unique(window[:10] // 10)) > 1
    assert not np.array_equal(order[:50] // 10, np.sort(order[:50] // 10))  # mixed, not sorted


@pytest.mark.parametrize("classes,per_class", [(1000, 1000), (100, 400), (300, 37)])
def test_block_order_keeps_batches_diverse_on_class_ordered_data(classes, per_class):
    labels = np.repeat(np.arange(classes), per_class)  # written class by class, like FractalDB
    order = block_order(len(labels), seed=0, epoch=0)  # the loader's defaults
    diversity = batch_diversity(labels, order, 256)
    uniform = batch_diversity(labels, np.random.default_rng(0).permutation(len(labels)), 256)
    assert abs(uniform["mean_distinct"] - uniform_distinct(labels, 256)) < 0.02 * uniform_distinct(labels, 256)
    assert diversity["mean_distinct"] >= 2 / 3 * diversity["uniform_distinct"]
    assert diversity["ratio"] >= 2 / 3
    # in natural order a batch holds one or two classes: the measure can fail
    assert batch_diversity(labels, np.arange(len(labels)), 256)["ratio"] < 0.1


def test_block_shuffle_in_the_loader(grey):
    images, labels, _ = h5_reference(grey)
    loader = ShardLoader(grey, batch_size=4, shuffle="block", block_size=3, window_blocks=2,
                         seed=1, num_workers=2)
    assert loader.order == "block"
    got_images, got_labels = collect(loader)
    rows = loader.epoch_rows()
    np.testing.assert_array_equal(np.sort(rows), np.arange(len(labels)))
    np.testing.assert_array_equal(got_images, images[rows])
    np.testing.assert_array_equal(got_labels, labels[rows])
    for kind, num in (("thread", 0), ("process", 2)):
        again = ShardLoader(grey, batch_size=4, shuffle="block", block_size=3, window_blocks=2,
                            seed=1, num_workers=num, workers=kind)
        np.testing.assert_array_equal(collect(again)[0], got_images)
    parts = [ShardLoader(grey, batch_size=4, shuffle="block", block_size=3, rank=r, world_size=2)
             for r in range(2)]
    rows = [p.epoch_rows() for p in parts]
    assert len(rows[0]) == len(rows[1]) and set(rows[0]) | set(rows[1]) == set(range(len(labels)))
    for part, part_rows in zip(parts, rows, strict=True):
        np.testing.assert_array_equal(collect(part)[0], images[part_rows])


def test_auto_shuffle_picks_block_only_for_data_bigger_than_the_memory_share(grey):
    assert ShardLoader(grey).order == "full"  # a few kB
    assert ShardLoader(grey, shuffle=True).order == "full"
    assert ShardLoader(grey, ram_fraction=1e-12).order == "block"
    assert ShardLoader(grey, shuffle="full", ram_fraction=1e-12).order == "full"
    assert ShardLoader(grey, shuffle=False).order == "none"
    for bad in ("random", "blocks"):
        with pytest.raises(FdslError, match="unknown shuffle"):
            ShardLoader(grey, shuffle=bad)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(FdslError, match="ram_fraction"):
            ShardLoader(grey, ram_fraction=bad)
    with pytest.raises(FdslError, match="block_size"):
        ShardLoader(grey, shuffle="block", block_size=0)


def test_read_ahead_advice_merges_contiguous_chunks(grey):
    ds = ShardDataset(grey)
    images = ds._index.images
    rows = np.arange(len(ds))
    shards_used = len(np.unique(images.shard_of))
    # natural order: one range per shard; every other image of one shard: still one (small gaps)
    assert images.advise(rows) == shards_used
    first = np.flatnonzero(images.shard_of == 0)[::2]
    assert images.advise(first) == 1
    assert images.advise(first, gap=0) == len(first)


# --------------------------------------------------------------------------- torchvision-style


def test_imagefolder_style_attributes_and_transforms(tmp_path):
    from PIL import Image

    for rgb in (False, True):
        folder = make(tmp_path, name=f"ds{rgb}", rgb=rgb)
        images, labels, _ = h5_reference(folder)
        seen = []

        def transform(image, seen=seen):
            seen.append(image)
            return np.asarray(image)

        ds = ShardDataset(folder, transform=transform, target_transform=lambda y: f"class-{y}", mode=None)
        assert ds.targets == labels.tolist() and all(type(t) is int for t in ds.targets)
        assert ds.class_to_idx == {name: i for i, name in enumerate(ds.classes)}
        assert len(ds.classes) == 3
        image, target = ds[2]
        assert isinstance(seen[-1], Image.Image) and seen[-1].mode == ("RGB" if rgb else "L")
        expected = images[2].transpose(1, 2, 0) if rgb else images[2][0]
        np.testing.assert_array_equal(image, expected)
        assert target == f"class-{labels[2]}"
        sub = ds.subset([2, 0])
        assert sub[0][1] == target and sub.targets == [labels[2], labels[0]]
        plain = ShardDataset(folder)  # the fast default: uint8 CHW tensors, int labels
        assert plain[2][0].dtype == torch.uint8 and plain[2][1] == labels[2]


def test_non_integer_indices_are_refused(grey):
    ds = ShardDataset(grey)
    for bad in (1.0, np.float32(2), True, "3", None):
        with pytest.raises(TypeError, match="integers"):
            ds[bad]
    assert ds[np.int64(1)][1] == ds[1][1] == ds[torch.tensor(1)][1]
    for bad in ([0.0, 1.5], np.array([1.0]), np.array([True, False])):
        with pytest.raises(FdslError, match="indices must be integers"):
            ShardLoader(grey, indices=bad)
        with pytest.raises(FdslError, match="indices must be integers"):
            ds.subset(bad)
    assert len(ShardLoader(grey, indices=[], batch_size=2)) == 0


# --------------------------------------------------------------------------- views


def test_subset_and_metadata(tmp_path):
    folder = make(tmp_path, rgb=True)
    images, labels, meta = h5_reference(folder)
    ds = ShardDataset(folder)
    assert ds.classes == ["c0", "c1", "c2"]
    assert "item" in ds.metadata and "area" in ds.metadata
    keep = np.array([5, 0, 17, 3, 11])
    sub = ds.subset(keep)
    assert len(sub) == 5
    np.testing.assert_array_equal(sub.labels, labels[keep])
    np.testing.assert_array_equal(sub.metadata["area"], meta["area"][keep])
    for k, i in enumerate(keep):
        assert np.array_equal(sub[k][0].numpy(), images[i]) and sub[k][1] == labels[i]
    subsub = sub.subset([4, 1])
    np.testing.assert_array_equal(subsub.metadata["item"], meta["item"][keep[[4, 1]]])
    got = collect(ShardLoader(ds, batch_size=2, shuffle=False, indices=keep, num_workers=2))
    np.testing.assert_array_equal(got[0], images[keep])
    got = collect(ShardLoader(sub, batch_size=2, shuffle=False, num_workers=1))
    np.testing.assert_array_equal(got[1], labels[keep])
    with pytest.raises(IndexError):
        ds.subset([len(ds)])
    with pytest.raises(IndexError):
        sub[5]
    assert sub[-1][1] == labels[11]


def test_dataset_pickles_without_open_files(grey):
    ds = ShardDataset(grey)
    _ = ds[0]  # opens a file in this process
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._index.images._fds == {}
    assert np.array_equal(clone[3][0].numpy(), ds[3][0].numpy())


def test_spawn_dataloader_over_shard_dataset(grey):
    images, labels, _ = h5_reference(grey)
    loader = torch.utils.data.DataLoader(ShardDataset(grey, mode=None), batch_size=6, shuffle=False,
                                         num_workers=2, multiprocessing_context="spawn")
    got = collect(loader)
    np.testing.assert_array_equal(got[0], images)
    np.testing.assert_array_equal(got[1], labels)


def test_fork_dataloader_after_reading_in_parent(grey):
    ds = ShardDataset(grey, mode=None)
    _ = ds[len(ds) - 1]  # the parent holds open descriptors before the fork
    loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=2,
                                         multiprocessing_context="fork")
    np.testing.assert_array_equal(collect(loader)[0], h5_reference(grey)[0])


def test_datasets_package_does_not_import_torch():
    code = ("import sys, fdsl.datasets, fdsl.datasets.format, fdsl.datasets.builder.build; "
            "assert 'torch' not in sys.modules; from fdsl.datasets import ShardLoader; "
            "assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- bad input


def one_line_naming(exc: pytest.ExceptionInfo, name: str) -> None:
    message = str(exc.value)
    assert "\n" not in message and name in message, message


def refusal(folder: Path, name: str, **options) -> str:
    """``ShardDataset(folder, **options)`` is refused in one line naming ``name``; the message."""
    with pytest.raises(ShardError) as exc:
        ShardDataset(folder, **options)
    one_line_naming(exc, name)
    return str(exc.value)


def test_folder_without_manifest(tmp_path):
    (tmp_path / "empty").mkdir()
    refusal(tmp_path / "empty", "manifest.json")
    with pytest.raises(ShardError):
        ShardLoader(tmp_path / "nowhere")


def test_missing_shard(tmp_path):
    folder = make(tmp_path)
    (folder / "shard-00001.h5").unlink()
    refusal(folder, "shard-00001.h5")


def test_flipped_byte_fails_verify(tmp_path):
    folder = make(tmp_path)
    path = folder / "shard-00002.h5"
    data = bytearray(path.read_bytes())
    data[-40] ^= 0xFF
    path.write_bytes(bytes(data))
    assert "sha256" in refusal(folder, "shard-00002.h5", verify=True)


def test_corrupted_chunk_names_the_file_when_read(tmp_path):
    folder = make(tmp_path)
    ds = ShardDataset(folder)
    layout = ds._index.images.layouts[0]
    path = folder / "shard-00000.h5"
    data = bytearray(path.read_bytes())
    data[int(layout.offsets[2]) + 4] ^= 0x7F  # the LZ4 header's size field of image 2
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError) as exc:
        ShardDataset(folder)[2]
    one_line_naming(exc, "shard-00000.h5")


def test_truncated_file(tmp_path):
    folder = make(tmp_path)
    path = folder / "shard-00000.h5"
    path.write_bytes(path.read_bytes()[:-100])
    assert "truncated" in refusal(folder, "shard-00000.h5")


def test_incomplete_dataset(tmp_path):
    folder = make(tmp_path)

    def unfinished(manifest: dict) -> None:
        manifest["complete"] = False
        manifest["shards"] = manifest["shards"][:2]

    edit_manifest(folder, unfinished)
    assert "incomplete" in refusal(folder, "manifest.json")


def test_manifest_count_beyond_shard(tmp_path):
    folder = make(tmp_path)

    def one_more_image(manifest: dict) -> None:
        manifest["shards"][0]["count"] += 1  # must not read past what the shard holds
        manifest["num_images"] += 1  # (a consistent manifest: the shard itself must catch it)

    edit_manifest(folder, one_more_image)
    refusal(folder, "shard-00000.h5")


def test_index_out_of_range(grey):
    ds = ShardDataset(grey)
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(IndexError):
        ds[-len(ds) - 1]
    assert ds[-1][1] == ds.labels[-1]


def test_batch_buffers_are_reused_only_when_released(grey):
    images, _, _ = h5_reference(grey)
    loader = ShardLoader(grey, batch_size=2, shuffle=False, num_workers=2)
    for _ in loader:  # each batch dropped at once: a handful of buffers serve the epoch
        pass
    assert len(loader._pool._buffers) <= 2 * loader.num_workers * loader.prefetch + 2
    kept = [batch[0][:1] for batch in loader]  # views keep their buffers alive
    np.testing.assert_array_equal(torch.cat(kept).numpy(), images[::2])


def test_stopping_early_then_iterating_again(grey):
    loader = ShardLoader(grey, batch_size=3, shuffle=False, num_workers=2)
    first = next(iter(loader))[1]
    for _ in loader:
        break
    again = collect(loader)[1]
    np.testing.assert_array_equal(again[:3], first.numpy())
    assert len(again) == len(loader.dataset)


# --------------------------------------------------------------------------- pruning


def test_pruning_budgets_ties_and_modes():
    from fdsl.datasets.read.pruning import select_per_class

    labels = np.array([0] * 10 + [1] * 5)
    values = np.array([5, 1, 1, 9, 3, 7, 2, 8, 6, 4] + [2, 2, 2, 1, 3], np.float64)
    small = select_per_class(labels, values, mode="drop-smallest", keep_fraction=0.8)
    # class 0 keeps round(8.0) = 8: drops the two 1s; class 1 keeps round(4.0) = 4: drops the 1
    np.testing.assert_array_equal(small, [0, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14])
    large = select_per_class(labels, values, mode="drop-largest", keep_fraction=0.6)
    # class 0 keeps 6 smallest; class 1 keeps round(3.0) = 3 of 1, 2, 2, 2 (ties: stable order)
    np.testing.assert_array_equal(large, [0, 1, 2, 4, 6, 9, 10, 11, 13])
    rand = select_per_class(labels, None, mode="random", keep_fraction=0.5, seed=3)
    assert np.array_equal(rand, select_per_class(labels, None, mode="random", keep_fraction=0.5, seed=3))
    assert (labels[rand] == 0).sum() == 5 and (labels[rand] == 1).sum() == 2  # round(2.5) = 2
    others = [select_per_class(labels, None, mode="random", keep_fraction=0.5, seed=s) for s in range(4, 9)]
    assert any(not np.array_equal(rand, o) for o in others)


def test_prune_dataset_saves_indices_usable_with_subset(grey, tmp_path):
    from fdsl.datasets.read.pruning import load_kept, prune_dataset
    from fdsl.errors import FdslError

    ds = ShardDataset(grey)
    kept = prune_dataset(ds, mode="drop-largest", keep_fraction=0.5, field="inst",
                         out=tmp_path / "kept.json")
    np.testing.assert_array_equal(load_kept(tmp_path / "kept.json"), kept)
    sub = ds.subset(kept)
    for label in range(3):
        inst = ds.metadata["inst"][ds.labels == label]
        assert (sub.labels == label).sum() == round(0.5 * len(inst))
        assert sub.metadata["inst"][sub.labels == label].max() <= np.sort(inst)[round(0.5 * len(inst)) - 1]
    with pytest.raises(FdslError, match="no metadata field"):
        prune_dataset(ds, mode="drop-smallest", keep_fraction=0.9, field="area")
    with pytest.raises(FdslError, match="unknown pruning mode"):
        prune_dataset(ds, mode="hardest", keep_fraction=0.9, field="inst")


def test_without_liblz4_the_lz4_package_decodes(tmp_path, monkeypatch):
    folder = make(tmp_path, rgb="sparse")
    monkeypatch.setattr("fdsl.datasets.format.hdf5.chunks._LIBLZ4", [None])  # as if ctypes found no liblz4
    images, _, _ = h5_reference(folder)
    np.testing.assert_array_equal(collect(ShardLoader(folder, batch_size=4, shuffle=False))[0], images)


# --------------------------------------------------------------------------- PNG trees


@pytest.mark.parametrize("rgb", [False, True], ids=["grey", "rgb"])
def test_png_sets_load_like_shards_and_prune_by_area(tmp_path, rgb):
    from fdsl.datasets.read.pruning import prune_dataset

    cls = RGBSource if rgb else SparseGreySource
    shards_dir, png_dir = tmp_path / "h5", tmp_path / "png"
    for out, storage in ((shards_dir, "hdf5"), (png_dir, "png")):
        source = cls(classes=3, per_class=9, size=12, seed=1, fail_every=6)
        build_dataset(source, out, shard_size=8, backend="inline", storage=storage)
    h5, png = ShardDataset(shards_dir), ShardDataset(png_dir)
    assert len(png) == len(h5) and png.classes == h5.classes and png.image_shape == h5.image_shape
    np.testing.assert_array_equal(png.labels, h5.labels)
    assert set(png.metadata) == set(h5.metadata)
    for name in h5.metadata:
        np.testing.assert_array_equal(png.metadata[name], h5.metadata[name])
    for i in (0, len(png) - 1):
        assert np.array_equal(png[i][0].numpy(), h5[i][0].numpy()) and png[i][1] == h5[i][1]
    for kind, num in (("thread", 2), ("process", 1)):
        got = collect(ShardLoader(png, batch_size=5, seed=3, num_workers=num, workers=kind))
        want = collect(ShardLoader(h5, batch_size=5, seed=3, num_workers=num, workers=kind))
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    from fdsl.train.data import open_data  # train-classifier opens data folders with this

    source = open_data(png_dir, 12, None)
    assert source.kind == "shards" and source.classes == h5.classes
    batches = list(source.loader(np.arange(len(png)), batch_size=4, shuffle=True, workers=1, seed=0))
    assert sum(len(b[1]) for b in batches) == len(png)
    if rgb:  # area is recorded per image: area-based pruning works on the PNG tree
        kept = prune_dataset(png, mode="drop-smallest", field="area", keep_fraction=0.5)
        np.testing.assert_array_equal(kept, prune_dataset(h5, mode="drop-smallest", field="area",
                                                          keep_fraction=0.5))
        assert len(kept) < len(png)
