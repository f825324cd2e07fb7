"""On-the-fly generation: the training fallback's cost on this CPU, and the GPU kernels' speed.

Without CUDA, ``--data gen:FOLDER`` makes its images with the CPU kernels in the loader's workers;
the fallback may add only the hand-over to training to the kernel's own cost (target: within 1.3x
per image). This script measures, for every generator at its native size, CPU time per image of

- the kernel alone: the generator's CPU kernel drawing the same items into arrays, batch by batch
  (``images_of``: RCDB's and LineDB's kernels take a whole batch, FractalDB and ExFractalDB render
  item by item; random rows, so FractalDB's orbit cache rarely helps);
- the fallback: the same batches through train-classifier's loader (``fdsl.train.data.MapLoader``
  over ``OnTheFlyDataset``: ``__getitems__``, tensors, collation, the DataLoader), in process.

Two functions serve ``make gpu-check`` (benchmarks/gpu_parts.py):

- ``ondevice_throughput(generator, device, seconds) -> dict``: images/s made on ``device`` at the
  generator's native size (FractalDB 362 px, ExFractalDB 224, RCDB 512, LineDB 512);
- ``kernel_mismatches(generator, device) -> dict``: images made on ``device`` against the CPU
  kernels' (which write the shards), pixel for pixel.

    .venv/bin/python benchmarks/bench_ondevice.py [--quick]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import bench_parser, finish_report, machine, median_cpu_seconds, results_file  # noqa: E402

RESULTS = results_file("ondevice")
# gen-fractal settings of the benchmark sets: native image sizes and points, few classes (a short
# category search); every image of a class differs, so a few classes measure the same per-image cost.
NATIVE: dict[str, dict[str, Any]] = {
    "fractaldb": dict(classes=4, image_size=362),
    "exfractaldb": dict(classes=4, image_size=224),
    "rcdb": dict(classes=16, image_size=512),
    "linedb": dict(classes=16, image_size=512),
}
GPU_BATCH = 1024
CPU_BATCH = 32


def native_set(generator: str, folder: Path, **settings: Any) -> Path:
    """A --params-only set of ``generator`` at its native size in ``folder`` (no shards)."""
    from fdsl.generators.generate import generate

    out = folder / generator
    generate(generator, out, workers=1, backend="inline", params_only=True, **{**NATIVE[generator], **settings})
    return out


def _maker(generator: str, device: str, folder: Path, **settings: Any) -> Any:
    from fdsl.generators.device import ImageMaker
    from fdsl.generators.rebuild import source_from_folder

    return ImageMaker(source_from_folder(native_set(generator, folder, **settings)), device)


def _synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return machine() if device == "cpu" else f"{device} (numba CUDA simulator)"


def ondevice_throughput(generator: str, device: str, seconds: float) -> dict[str, Any]:
    """Images/s of ``generator`` made on ``device`` at its native size: batches of random item
    indices (1024 on a GPU, 32 on the CPU) for about ``seconds`` after a first batch that compiles
    the kernels; the device is synchronised before the clock stops."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench-ondevice-") as tmp:
        maker = _maker(generator, device, Path(tmp))
        batch = GPU_BATCH if device.startswith("cuda") else CPU_BATCH
        maker.images(rng.integers(0, maker.num_items, batch))  # compile, copy the class tables
        _synchronize(device)
        made, started = 0, time.perf_counter()
        while True:
            maker.images(rng.integers(0, maker.num_items, batch))
            made += batch
            if time.perf_counter() - started >= seconds:
                break
        _synchronize(device)
        elapsed = time.perf_counter() - started
        return {"images_per_second": round(made / elapsed, 1), "images": made, "seconds": round(elapsed, 3),
                "batch": batch, "image_size": NATIVE[generator]["image_size"], "device": _device_name(device)}


def kernel_mismatches(generator: str, device: str, images: int = 48) -> dict[str, Any]:
    """``images`` random images of ``generator`` at its native size made on ``device`` against
    the CPU kernels' (the shards' bytes): how many pixels and images differ (0 is the target)."""
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory(prefix="bench-mismatch-") as tmp:
        maker = _maker(generator, device, Path(tmp), classes=2 if generator in ("fractaldb", "exfractaldb") else 4)
        items = rng.choice(maker.num_items, size=min(images, maker.num_items), replace=False)
        made = maker.images(items).cpu().numpy()
        cpu = maker.source
        expected = np.stack([cpu.render(int(i), int(i) + 1).images[0] for i in items])
        differ = made != expected
        if differ.ndim == 4:
            differ = differ.any(axis=-1)
        return {"images": len(items), "mismatched_pixels": int(differ.sum()),
                "mismatched_images": int(differ.any(axis=(1, 2)).sum()),
                "image_size": NATIVE[generator]["image_size"], "device": _device_name(device)}


def fallback_cost(generator: str, folder: Path, batches: int) -> dict[str, float]:
    """CPU ms per image of the kernel alone and of the training fallback, same items and order."""
    import torch

    from fdsl.train.data import open_data

    source = open_data(f"gen:{native_set(generator, folder)}", 224, None)
    # Random rows, as a shuffled epoch asks for them; the loader keeps their order (shuffle off).
    items = np.random.default_rng(0).permutation(len(source.labels))[:batches * CPU_BATCH]
    loader = source.loader(items, batch_size=CPU_BATCH, shuffle=False, workers=0, seed=0,
                           device=torch.device("cpu"))
    kernel = source.dataset.maker.source

    def kernel_alone() -> None:
        for start in range(0, len(items), CPU_BATCH):
            kernel.images_of(items[start:start + CPU_BATCH])

    def through_loader() -> None:
        for _ in loader:
            pass

    # One torch thread, as in a DataLoader worker (torch sets it there): on a shared machine the
    # threads' waits at each parallel copy would count as CPU time the workers never spend.
    torch.set_num_threads(1)
    through_loader()  # compile the kernels and warm the caches before timing either
    count = batches * CPU_BATCH
    alone = median_cpu_seconds(kernel_alone) / count
    fallback = median_cpu_seconds(through_loader) / count
    return {"kernel_ms": alone * 1e3, "fallback_ms": fallback * 1e3, "ratio": fallback / alone}


def main() -> int:
    parser = bench_parser(__doc__, "fewer batches (about a minute)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda to add the GPU figures")
    args = parser.parse_args()
    batches = 2 if args.quick else 6
    lines = ["# On-the-fly generation", "",
             "Training on `--data gen:FOLDER` without CUDA: CPU ms per image of the kernel alone and of the "
             f"fallback (train-classifier's loader, batches of {CPU_BATCH}, in process), the same random items; "
             "median of 3 runs, CPU time.", "",
             "| generator | size | kernel alone, ms / image | fallback, ms / image | fallback / kernel | target |",
             "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="bench-fallback-") as tmp:
        for generator in NATIVE:
            cost = fallback_cost(generator, Path(tmp), batches)
            ok = "yes" if cost["ratio"] <= 1.3 else "no"
            lines.append(f"| {generator} | {NATIVE[generator]['image_size']} px | {cost['kernel_ms']:.3f} | "
                         f"{cost['fallback_ms']:.3f} | {cost['ratio']:.2f}x | <= 1.3x: {ok} |")
    if args.device != "cpu":
        lines += ["", f"On {_device_name(args.device)}: images/s made on the device at native size, and "
                  "mismatched pixels against the CPU kernels.", "",
                  "| generator | size | images/s | mismatched pixels (images) |", "|---|---|---|---|"]
        for generator in NATIVE:
            speed = ondevice_throughput(generator, args.device, 2.0 if args.quick else 5.0)
            check = kernel_mismatches(generator, args.device)
            lines.append(f"| {generator} | {speed['image_size']} px | {speed['images_per_second']:,.0f} | "
                         f"{check['mismatched_pixels']} ({check['mismatched_images']} of {check['images']}) |")
    command = ".venv/bin/python benchmarks/bench_ondevice.py" + (" --quick" if args.quick else "") + \
        (f" --device {args.device}" if args.device != "cpu" else "")
    return finish_report(lines, machine(), command, RESULTS)


if __name__ == "__main__":
    sys.exit(main())
