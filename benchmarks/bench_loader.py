"""Loader throughput: ShardLoader vs a PNG folder (PIL) and naive per-sample h5py, 2 workers.

Builds once (cached in --data) 20,000 grey 256x256 images with sparse fractal-like content, as
LZ4 shards and as a PNG folder, then measures images per second delivered as batched uint8
tensors (one shuffled epoch after one warm-up pass, so every file is in the page cache).

    .venv/bin/python benchmarks/bench_loader.py [--quick] [--data /tmp/fdsl-bench-loader]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import sys
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (LZ4 filter for the naive baseline)
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import finish_report  # noqa: E402

from fdsl.datasets import ShardDataset, ShardLoader  # noqa: E402
from fdsl.datasets.builder.build import RenderedBatch, build_dataset  # noqa: E402

SIZE, CLASSES = 256, 100


class SparseSource:
    """Cheap deterministic sparse images: a few random walks of grey pixels (like a fractal)."""

    name, version = "bench-sparse", "1"

    def __init__(self, n: int) -> None:
        self.n = n

    def config(self) -> dict:
        return {"n": self.n, "size": SIZE, "seed": 0}

    def class_names(self) -> list[str]:
        return [f"{c:05d}" for c in range(CLASSES)]

    def num_items(self) -> int:
        return self.n

    def image(self, item: int) -> np.ndarray:
        rng = np.random.default_rng([0, item])
        steps = rng.integers(-3, 4, (6, 1500, 2))
        walks = (rng.integers(40, SIZE - 40, (6, 1, 2)) + np.cumsum(steps, axis=1)) % SIZE
        img = np.zeros((SIZE, SIZE), np.uint8)
        img[walks[..., 0].ravel(), walks[..., 1].ravel()] = 127
        return img

    def render(self, start: int, stop: int) -> RenderedBatch:
        items = np.arange(start, stop)
        return RenderedBatch(np.stack([self.image(i) for i in items]), items % CLASSES, {},
                             items.astype(np.int64))

    def png_path(self, label: int, metadata: dict, item: int) -> str:
        return f"{label:05d}/{item:06d}.png"

    def extra_files(self) -> dict:
        return {}


def build(data: Path, n: int) -> tuple[Path, Path, list[tuple[str, int]]]:
    """The shard folder, the PNG folder and its (path, label) list (built once)."""
    shard_dir, png_dir = data / f"shards-{n}", data / f"png-{n}"
    source = SparseSource(n)
    if not (shard_dir / "manifest.json").exists():
        build_dataset(source, shard_dir, shard_size=5000, backend="inline", compression="lz4")
    if not (png_dir / "manifest.json").exists():
        build_dataset(source, png_dir, shard_size=5000, backend="inline", storage="png")
    files = [(str(png_dir / source.png_path(i % CLASSES, {}, i)), i % CLASSES) for i in range(n)]
    return shard_dir, png_dir, files


class PngFolder(torch.utils.data.Dataset):
    """ImageFolder-like baseline: one PNG per sample, decoded with PIL."""

    def __init__(self, files: list[tuple[str, int]]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.files[i]
        with Image.open(path) as im:
            return torch.from_numpy(np.array(im))[None], label


class NaiveH5(torch.utils.data.Dataset):
    """The usual h5py Dataset: files opened lazily per worker, ``dset[i]`` per sample."""

    def __init__(self, folder: Path) -> None:
        self.paths = sorted(str(p) for p in folder.glob("shard-*.h5"))
        self.counts = []
        for p in self.paths:
            with h5py.File(p, "r") as f:
                self.counts.append(len(f["labels"]))
        self.starts = np.cumsum([0, *self.counts])
        self.files: dict[int, h5py.File] = {}

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        s = int(np.searchsorted(self.starts, i, side="right") - 1)
        if s not in self.files:
            self.files[s] = h5py.File(self.paths[s], "r")
        f, j = self.files[s], i - int(self.starts[s])
        return torch.from_numpy(f["images"][j])[None], int(f["labels"][j])


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (DataLoader workers, once joined)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(make_iter) -> tuple[float, float]:
    """(images per second, CPU microseconds per image) over one full epoch, start-up included.

    Other jobs on a shared machine lower the first; the second (all processes' CPU time, so
    worker processes and inter-process copies count) is steadier.
    """
    gc.collect()
    cpu, start, seen = cpu_seconds(), time.perf_counter(), 0
    iterator = iter(make_iter())
    for images, _labels in iterator:
        assert images.dtype == torch.uint8 and images.ndim == 4
        seen += len(images)
    wall = time.perf_counter() - start
    del iterator, images
    gc.collect()  # joins DataLoader workers so that their CPU time is counted
    return seen / wall, (cpu_seconds() - cpu) / seen * 1e6


def warm(folder: Path) -> None:
    for root, _dirs, names in os.walk(folder):
        for name in names:
            Path(root, name).read_bytes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images, one repeat")
    parser.add_argument("--data", type=Path, default=Path("/tmp/fdsl-bench-loader"),
                        help="cache folder for the generated data (default %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="loader workers (default 2)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "loader.md")
    args = parser.parse_args(argv)
    n = 20_000
    limit = 6_000 if args.quick else n
    repeats = 1 if args.quick else 3
    shard_dir, png_dir, files = build(args.data, n)
    warm(shard_dir)
    warm(png_dir)
    torch.set_num_threads(1)
    w = args.workers
    ds = ShardDataset(shard_dir)
    keep = np.random.default_rng(0).permutation(n)[:limit]
    png_keep = keep[: min(limit, 6000)]  # PNG decoding is slow: fewer images

    def dataloader(dataset, subset):
        return lambda: torch.utils.data.DataLoader(
            torch.utils.data.Subset(dataset, subset.tolist()), batch_size=256, shuffle=True,
            num_workers=w, persistent_workers=False)

    cases = [
        (f"PNG folder, PIL, torch DataLoader ({w} workers)", dataloader(PngFolder(files), png_keep)),
        (f"h5py per sample (LZ4), torch DataLoader ({w} workers)", dataloader(NaiveH5(shard_dir), keep)),
        (f"ShardDataset per sample, torch DataLoader ({w} workers)", dataloader(ds, keep)),
    ]
    for bs in (256, 512):
        for kind in ("thread", "process"):
            cases.append((f"**ShardLoader**, {w} {kind} workers, batch {bs}",
                          lambda kind=kind, bs=bs: ShardLoader(ds, batch_size=bs, num_workers=w,
                                                               workers=kind, indices=keep,
                                                               pin_memory=False)))
    cases.append(("ShardLoader, 0 workers (caller thread), batch 256",
                  lambda: ShardLoader(ds, batch_size=256, num_workers=0, indices=keep,
                                      pin_memory=False)))
    load_before = os.getloadavg()[0]
    rows = []
    for name, make in cases:
        runs = [measure(make) for _ in range(repeats)]
        rate, cpu = max(r[0] for r in runs), min(r[1] for r in runs)
        rows.append((name, rate, cpu))
        print(f"{name}: {rate:,.0f} img/s, {cpu:.0f} CPU-us/img", file=sys.stderr)
    baseline = rows[0][1]
    table = ["| loader | img/s | vs PNG folder | CPU-µs per image (all processes) |",
             "|---|---:|---:|---:|"]
    table += [f"| {name} | {rate:,.0f} | {rate / baseline:.1f}x | {cpu:.0f} |"
              for name, rate, cpu in rows]
    command = "python benchmarks/bench_loader.py" + (" --quick" if args.quick else "")
    return finish_report([
        "# Loader throughput",
        "",
        f"{n:,} grey {SIZE}x{SIZE} images (sparse, fractal-like), LZ4 shards of 5,000 vs one PNG per "
        f"image; uint8 batches of 256 delivered to the main process, shuffled, page cache warm; "
        f"best of {repeats} run(s) of one epoch over {limit:,} images (PNG folder: "
        f"{min(limit, 6000):,}), worker start-up included. Load average before the runs: "
        f"{load_before:.2f} (other jobs on the machine lower img/s; CPU time is steadier).",
        "",
        *table,
        "",
        "ShardLoader reads whole batches in threads: `os.preadv` of each image's chunk at its byte "
        "offset (read once at open) and liblz4 decoding (through ctypes) straight into the batch "
        "both release the GIL, batches go into reused buffers, and nothing crosses a process "
        "boundary. Its CPU cost per image bounds what 2 "
        "idle cores can deliver at about 2e6 / CPU-µs images per second; with other jobs on the "
        "machine the measured img/s is lower. Process workers pay a shared-memory copy per batch.",
    ], f"{platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
       f"Python {platform.python_version()}, torch {torch.__version__}.", command, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
