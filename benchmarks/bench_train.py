"""Training throughput fed from shards (ShardLoader) vs from synthetic batches already on the device.

The synthetic baseline is the ceiling: the same train step (device augmentation, forward,
backward, optimiser) on a uint8 batch that never leaves the device. The target is shard-fed
images/s >= 90% of it. On a CUDA machine it measures ResNet-50 (fractaldb-resnet recipe) and
ViT-Tiny (fdsl-vit recipe) at 224 px; without CUDA it runs a tiny ResNet-18 at 64 px version and
says that the GPU figure needs a GPU.

    .venv/bin/python benchmarks/bench_train.py [--quick] [--data SHARDS] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fdsl.datasets import ShardLoader
from fdsl.datasets.builder.build import RenderedBatch, build_dataset
from fdsl.train.recipes import resolve_config
from fdsl.train.trainer import build_trainer, on_device

RESULTS = Path(__file__).parent / "results" / "train.md"


class Blobs:
    """Grey images that compress like formula images: mostly black with a bright random shape."""

    name, version = "bench-blobs", "1"

    def __init__(self, count: int, size: int, classes: int = 100) -> None:
        self.count, self.size, self.classes = count, size, classes

    def config(self) -> dict:
        return {"count": self.count, "size": self.size, "classes": self.classes, "seed": 0}

    def class_names(self) -> list[str]:
        return [f"c{i}" for i in range(self.classes)]

    def num_items(self) -> int:
        return self.count

    def render(self, start: int, stop: int) -> RenderedBatch:
        s = self.size
        yy, xx = np.mgrid[0:s, 0:s]
        images = []
        for item in range(start, stop):
            rng = np.random.default_rng([0, item])
            cy, cx, r = rng.uniform(0.2 * s, 0.8 * s, 3)
            ring = np.abs(np.hypot(yy - cy, xx - cx) - r / 2) < 3
            noise = rng.random((s, s)) < 0.05
            images.append(((ring | noise) * 127).astype(np.uint8))
        items = np.arange(start, stop)
        return RenderedBatch(np.stack(images), items % self.classes, {}, items, [])

    def png_path(self, label: int, metadata: dict, item: int) -> str:
        return f"{label:05d}/{item:06d}.png"

    def extra_files(self) -> dict:
        return {}


def measure(config_overrides: dict, recipe: str, data: Path, device: torch.device, steps: int,
            warmup: int, workers: int) -> tuple[float, float]:
    """(synthetic images/s, shard-fed images/s) of the full train step."""
    config = resolve_config(recipe, flags=config_overrides)
    loader = ShardLoader(data, batch_size=config.batch_size, shuffle=True, num_workers=workers,
                         drop_last=True)
    native = min(loader.dataset.image_shape[1:])
    from fdsl.train.augment import base_side

    trainer = build_trainer(config, len(loader.dataset.classes), base_side(config, native), device)
    trainer.model.train()
    images, labels = next(iter(loader))
    images, labels = images.to(device), labels.to(device)

    def timed(batches) -> float:
        done, start = 0, 0.0
        for i, (x, y) in enumerate(batches):
            if i == warmup:
                _sync(device)
                start, done = time.perf_counter(), 0
            trainer.train_step(x, y)
            done += len(y)
            if i + 1 == warmup + steps:
                break
        _sync(device)
        return done / (time.perf_counter() - start)

    synthetic = timed((images, labels) for _ in range(warmup + steps))

    def epochs():
        epoch = 0
        while True:
            loader.set_epoch(epoch)
            yield from on_device(loader, device)
            epoch += 1

    fed = timed(epochs())
    return synthetic, fed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and images")
    parser.add_argument("--data", help="shard folder to read (default: a synthetic one made in a temp dir)")
    parser.add_argument("--workers", type=int, default=None, help="ShardLoader reader threads")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (config.compile)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here (for gpu_check)")
    args = parser.parse_args()
    cuda = torch.cuda.is_available() and args.device != "cpu"
    device = torch.device("cuda" if cuda else "cpu")
    # On CPU the reader threads share the cores with the model; one of each keeps them apart.
    workers = args.workers if args.workers is not None else (min(8, os.cpu_count() or 2) if cuda else 1)
    if cuda:
        torch.backends.cudnn.benchmark = True
        cases = [("ResNet-50", "fractaldb-resnet", dict(model="resnet50", batch_size=256, image_size=224)),
                 ("ViT-Tiny/16", "fdsl-vit", dict(model="vit_tiny", batch_size=256, image_size=224))]
        size, count = 256, 4096 if args.quick else 16384
        steps, warmup = (20, 5) if args.quick else (60, 10)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - workers))
        cases = [("ResNet-18 @64px (CPU stand-in)", "fractaldb-resnet",
                  dict(model="resnet18", batch_size=32, image_size=64))]
        size, count = 80, 512
        steps, warmup = (4, 1) if args.quick else (10, 2)
    tmp = None
    data = Path(args.data) if args.data else None
    if data is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
        data = tmp / "shards"
        build_dataset(Blobs(count, size), data, shard_size=2048, backend="inline", workers=1)
    rows, errors = [], []
    figures = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
               "paths": {"bf16_autocast": cuda, "channels_last": cuda, "compile": args.compile,
                         "pinned_memory": cuda, "reader_threads": workers},
               "image_size": cases[0][2]["image_size"], "steps": steps, "warmup": warmup,
               "rows": [], "errors": errors}
    try:
        for label, recipe, overrides in cases:
            if args.compile:
                overrides = dict(overrides, compile=True)
            try:
                synthetic, fed = measure(overrides, recipe, data, device, steps, warmup, workers)
            except Exception as exc:  # noqa: BLE001 - one model failing must not hide the other's figures
                errors.append({"model": label, "error": f"{type(exc).__name__}: {exc}"[:2000]})
                print(f"{label}: FAILED: {errors[-1]['error']}", file=sys.stderr)
            else:
                rows.append((label, recipe, synthetic, fed))
                figures["rows"].append({"model": label, "recipe": recipe, "synthetic_img_s": synthetic,
                                        "fed_img_s": fed, "fed_over_synthetic": fed / synthetic})
                print(f"{label}: synthetic {synthetic:,.0f} img/s, shards {fed:,.0f} img/s", file=sys.stderr)
            if args.json:  # after each model: a run stopped by its time box keeps what it measured
                args.json.write_text(json.dumps(figures, indent=1) + "\n")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    write_report(rows, device, workers, size, args)
    if errors:
        raise SystemExit(1)


def write_report(rows: list, device: torch.device, workers: int, size: int, args: argparse.Namespace) -> None:
    lines = ["| model | recipe | synthetic on device (img/s) | fed from shards (img/s) | shards / synthetic |",
             "|---|---|---|---|---|"]
    for label, recipe, synthetic, fed in rows:
        lines.append(f"| {label} | {recipe} | {synthetic:,.0f} | {fed:,.0f} | {fed / synthetic:.0%} |")
    table = "\n".join(lines)
    print(table)
    device_text = torch.cuda.get_device_name() if device.type == "cuda" else "CPU only"
    notes = [f"Target: shard-fed >= 90% of synthetic. Device: {device_text}; grey {size} px LZ4 shards; "
             f"ShardLoader with {workers} reader threads; full train step including device augmentation"
             + ("; bf16 autocast, channels_last, pinned-memory batches copied on a side stream"
                if device.type == "cuda" else "")
             + ("; torch.compile" if args.compile else "") + "."]
    if device.type != "cuda":
        notes.append("No CUDA device here: this is the tiny CPU stand-in (ResNet-18 at 64 px, few steps). "
                     "The ResNet-50 / ViT-Tiny figures need a GPU: run this script on a CUDA machine.")
    command = ("python benchmarks/bench_train.py" + (" --quick" if args.quick else "")
               + (" --compile" if args.compile else ""))
    machine = f"{platform.platform()}, {os.cpu_count()} cores, torch {torch.__version__}"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(f"# Training throughput\n\n{table}\n\n" + "\n\n".join(notes)
                       + f"\n\nMachine: {machine}\n\nCommand: `{command}`\n")


if __name__ == "__main__":
    main()
