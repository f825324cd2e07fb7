"""Cold-cache ShardLoader throughput: block shuffle vs natural order on data read from disk.

Builds once (cached in --data) a class-ordered set like FractalDB's (classes written one after
another) of 362 px grey LZ4 shards, a few GB, and a smaller 224 px RGB set. Before each timed
pass the shard files are evicted from the page cache with ``posix_fadvise(POSIX_FADV_DONTNEED)``
(checked with ``mincore``), so every byte comes from the disk. Reports img/s after the first
batch and the time to the first batch apart, batch diversity of each order, and warm-cache img/s
per worker core at 362 px grey and 224 px RGB.

    .venv/bin/python benchmarks/bench_loader_cold.py [--quick] [--data /tmp/fdsl-bench-cold]
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import finish_report, machine  # noqa: E402

from fdsl.datasets import ShardDataset, ShardLoader  # noqa: E402
from fdsl.datasets.builder.build import build_dataset  # noqa: E402
from fdsl.datasets.read.sampler import batch_diversity  # noqa: E402
from fdsl.sources import RenderedBatch  # noqa: E402

POOL = 64  # distinct base images; each item is a shifted copy (cheap to make, still ~LZ4-sized)


class ClassOrderedSource:
    """Sparse random images (``density`` of pixels lit), ``per_class`` consecutive items per
    class, like FractalDB's class-by-class layout; deterministic per item."""

    name, version = "bench-cold", "1"

    def __init__(self, classes: int, per_class: int, size: int, channels: int, density: float) -> None:
        self.classes, self.per_class, self.size = classes, per_class, size
        self.channels, self.density = channels, density
        self._pool: np.ndarray | None = None

    def config(self) -> dict:
        return {"classes": self.classes, "per_class": self.per_class, "size": self.size,
                "channels": self.channels, "density": self.density, "seed": 0}

    def class_names(self) -> list[str]:
        return [f"{c:05d}" for c in range(self.classes)]

    def num_items(self) -> int:
        return self.classes * self.per_class

    def pool(self) -> np.ndarray:
        if self._pool is None:
            rng = np.random.default_rng(0)
            shape = (POOL, self.size, self.size) + ((self.channels,) if self.channels > 1 else ())
            lit = rng.random(shape[:3]) < self.density
            values = rng.integers(1, 256, shape, dtype=np.uint8)
            self._pool = np.where(lit if self.channels == 1 else lit[..., None], values, 0).astype(np.uint8)
        return self._pool

    def render(self, start: int, stop: int) -> RenderedBatch:
        items = np.arange(start, stop)
        pool = self.pool()
        images = np.stack([np.roll(pool[i % POOL], i // POOL, axis=1) for i in items])
        return RenderedBatch(images, items // self.per_class, {}, items.astype(np.int64))

    def png_path(self, label: int, metadata: dict, item: int) -> str:
        return f"{label:05d}/{item:08d}.png"

    def extra_files(self) -> dict:
        return {}


def shard_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("shard-*.h5"))


def evict(files: list[Path]) -> None:
    """Drop the files' clean pages from the page cache."""
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.mmap.restype = ctypes.c_void_p
_LIBC.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_LIBC.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
_LIBC.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def resident_fraction(files: list[Path]) -> float:
    """Share of the files' pages in the page cache (``mincore`` on a read-only mapping)."""
    page, resident, total = mmap.PAGESIZE, 0, 0
    for path in files:
        size = path.stat().st_size
        if not size:
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            addr = _LIBC.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                raise OSError(ctypes.get_errno(), "mmap failed")
            pages = -(-size // page)
            vec = (ctypes.c_ubyte * pages)()
            if _LIBC.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore failed")
            resident += sum(b & 1 for b in bytes(vec))
            total += pages
            _LIBC.munmap(addr, size)
        finally:
            os.close(fd)
    return resident / total if total else 1.0


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def timed_pass(loader: ShardLoader, limit: int | None = None) -> dict:
    """One pass: time to first batch, then img/s and CPU-us/img over the rest."""
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    seen, first, t_first = 0, None, None
    for images, _labels in loader:
        seen += len(images)
        if first is None:
            first, t_first = seen, time.perf_counter()
        if limit is not None and seen >= limit:
            break
    end = time.perf_counter()
    rest = seen - (first or 0)
    return {"first_batch_s": (t_first or end) - t0, "img_s": rest / max(end - (t_first or end), 1e-9),
            "images": seen, "wall_s": end - t0, "cpu_us": (cpu_seconds() - cpu0) / max(seen, 1) * 1e6}


def measure_per_core(folders: dict[str, Path], quick: bool) -> list[tuple[str, ShardDataset, dict]]:
    """Warm page cache, one reader thread: what one core delivers (best CPU-µs of 3 passes)."""
    out = []
    for name in ("grey362", "rgb224"):
        sub = ShardDataset(folders[name])
        for p in shard_files(folders[name]):
            p.read_bytes()
        loader = ShardLoader(sub, batch_size=256, num_workers=1, pin_memory=False, shuffle="full")
        timed_pass(loader, 5_000)  # warm-up (buffers, code paths)
        runs = [timed_pass(loader, 10_000 if not quick else 2_000) for _ in range(3)]
        best = min(runs, key=lambda r: r["cpu_us"])
        out.append((name, sub, {**best, "img_s": max(r["img_s"] for r in runs)}))
        print(name, out[-1][2], file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small set (checks the script only)")
    parser.add_argument("--data", type=Path, default=Path("/tmp/fdsl-bench-cold"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--per-core", action="store_true",
                        help="only the warm one-thread figures, printed (no report written)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "loader_cold.md")
    args = parser.parse_args(argv)
    classes, per_class = (20, 500) if args.quick else (100, 1000)
    grey = ClassOrderedSource(classes, per_class, 362, 1, 0.055)
    rgb = ClassOrderedSource(10, 200 if args.quick else 1000, 224, 3, 0.055)
    folders = {}
    for name, source in (("grey362", grey), ("rgb224", rgb)):
        folder = args.data / f"{name}-{source.num_items()}"
        if not (folder / "manifest.json").exists():
            t = time.perf_counter()
            build_dataset(source, folder, shard_size=5000, backend="local", workers=2, compression="lz4")
            print(f"built {folder} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        folders[name] = folder
    torch.set_num_threads(1)
    if args.per_core:
        for name, _sub, r in measure_per_core(folders, args.quick):
            print(f"{name}: {r['img_s']:,.0f} img/s, {r['cpu_us']:.0f} CPU-us/img")
        return 0
    ds = ShardDataset(folders["grey362"])
    files = shard_files(folders["grey362"])
    gb = sum(p.stat().st_size for p in files) / 1e9
    load = os.getloadavg()[0]

    # eviction check: warm the files, evict, look
    for p in files:
        p.read_bytes()
    warm_frac = resident_fraction(files)
    evict(files)
    cold_frac = resident_fraction(files)

    common = {"batch_size": 256, "num_workers": args.workers, "pin_memory": False, "seed": 0}
    passes = [("in order (`shuffle=\"none\"`)", "none", None),
              ("block shuffle (`shuffle=\"block\"`)", "block", None),
              ("uniform shuffle (`shuffle=\"full\"`), first 20,000 images", "full", 20_000)]
    rows = []
    for title, order, limit in passes:
        evict(files)
        before = resident_fraction(files)
        loader = ShardLoader(ds, shuffle=order, **common)
        result = timed_pass(loader, limit)
        diversity = batch_diversity(ds.labels, loader.epoch_rows(), 256)
        rows.append((title, result, before, diversity))
        print(title, result, f"resident before {before:.3f}", diversity, file=sys.stderr)
    in_order = rows[0][1]["img_s"]

    per_core = measure_per_core(folders, args.quick)

    command = "python benchmarks/bench_loader_cold.py" + (" --quick" if args.quick else "")
    table = ["| pass | img/s after the first batch | vs in order | time to first batch, s | "
             "CPU-µs/img (all threads) | page cache before | distinct classes / batch (uniform) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for title, r, before, d in rows:
        table.append(f"| {title} | {r['img_s']:,.0f} | {r['img_s'] / in_order:.0%} | "
                     f"{r['first_batch_s']:.2f} | {r['cpu_us']:.0f} | {before:.1%} | "
                     f"{d['mean_distinct']:.1f} ({d['uniform_distinct']:.1f}) |")
    core = ["| images | img/s, 1 worker thread, warm cache (shared machine) | CPU-µs per image | "
            "img/s per busy core (1e6 / CPU-µs) |", "|---|---:|---:|---:|"]
    for name, sub, r in per_core:
        shape = "x".join(map(str, sub.image_shape))
        core.append(f"| {name} ({shape}, {sub.stored_bytes / len(sub) / 1e3:.0f} kB/img stored) | "
                    f"{r['img_s']:,.0f} | {r['cpu_us']:.0f} | {1e6 / r['cpu_us']:,.0f} |")
    return finish_report([
        "# Loader on cold cache: block shuffle vs in order",
        "",
        f"{len(ds):,} grey 362x362 images, {classes} classes written one after another (FractalDB's "
        f"layout), LZ4 shards of 5,000: {gb:.2f} GB on disk ({gb * 1e9 / len(ds) / 1e3:.0f} kB per image). "
        f"ShardLoader, batch 256, {args.workers} thread workers, uint8 batches to the main process. "
        "Before each pass every shard file is evicted with `posix_fadvise(POSIX_FADV_DONTNEED)`; "
        f"`mincore` shows {warm_frac:.0%} of the pages resident after a full read and {cold_frac:.1%} "
        "after eviction. Block shuffle: blocks of 32 images, windows of 512 blocks, each window "
        "fetched with `POSIX_FADV_WILLNEED` one window ahead. Load average before the runs: "
        f"{load:.2f} (a shared 2-core machine).",
        "",
        *table,
        "",
        f"Target: block shuffle >= 80% of in order: **{rows[1][1]['img_s'] / in_order:.0%}**.",
        "",
        "Per worker core (warm page cache, `shuffle=\"full\"`, one reader thread):",
        "",
        *core,
    ], f"{machine()}, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB memory, "
       f"torch {torch.__version__}.", command, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
