"""End to end against kernel only, for every registered generator, start-up kept apart.

For each generator of the registry (so one added later is measured too), a fresh process:

1. start-up, before the first image: interpreter and imports (generator module and builder),
   ``make_source`` (the category search, where the data set has one), the first ``render`` of one
   item (Numba cache load);
2. per image, with the kernels warm, alternated ``--repeats`` times (medians):
   - kernel only: ``source.render`` over the same items, in the builder's parts, nothing kept;
   - end to end: ``build_dataset`` into LZ4 HDF5 shards, one process (``backend="inline"``):
     render, compression, chunk writes, fsync, sha256, manifest.

CPU time (of this one process) is the headline: the machine is shared, and CPU seconds are what
a full-machine run pays per image. Wall time is given too.

    .venv/bin/python benchmarks/bench_e2e.py [--quick] [--images N] [--generators a,b]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import load_average, machine, process_age, publish  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "e2e.md"
# Sizes per generator for N images: a few classes, the data set's own image size and defaults.
CLASSES = 4


def generator_names() -> list[str]:
    """Every generator the registry knows (so new ones are benchmarked without edits here)."""
    from fdsl.generators.registry import generators

    return list(generators())


def make_source(name: str, images: int):
    """A source of ``images`` items in CLASSES classes with the data set's defaults."""
    from fdsl.generators.registry import get_generator

    spec = get_generator(name)
    per_class = max(1, images // CLASSES)
    kwargs = dict(classes=CLASSES, seed=0, params_from=None, workers=1, backend="inline")
    kwargs.update({k: v for k, v in dict(instances=per_class, image_size=None, points=None).items()
                   if spec.takes(k)})
    if name == "exfractaldb":  # images per class = models x views (1000 = 25 x 40, the defaults)
        views = min(40, per_class)
        kwargs.update(instances=None, instances_3d=max(1, per_class // views), views=views)
    return spec.make_source(**kwargs)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _fixed_parts(source, start: int, stop: int, part: int = 1000):
    for first in range(start, stop, part):
        yield source.render(first, min(first + part, stop))


def render_only(source) -> int:
    """Render every item in the builder's parts, keeping nothing; returns the image count.
    Memory is handled as in the builder's tasks (freed parts reused), when the builder does so."""
    from fdsl.datasets.builder import build

    try:
        from fdsl.datasets.builder._heap import reuse_freed_memory
    except ImportError:  # an fdsl without it (the "before" runs)
        reuse_freed_memory = contextlib.nullcontext
    parts = getattr(build, "render_parts", _fixed_parts)
    done = 0
    with reuse_freed_memory():
        for batch in parts(source, 0, source.num_items()):
            done += len(batch.items)
    return done


# Where end-to-end CPU time goes: (label, function name as cProfile reports it, cumulative?).
STAGES = (("render (kernel)", "render", True),
          ("HDF5 chunk writes incl. LZ4", "__setitem__", True),
          ("sha256 of the shard", "sha256_file", True),
          ("fsync", "<built-in method posix.fsync>", False))


def profile_stages(source, out: Path, count: int) -> dict[str, float]:
    """One more end-to-end build under cProfile (CPU clock): CPU-ms per image by stage."""
    import cProfile
    import pstats

    from fdsl.datasets.builder import build

    profiler = cProfile.Profile(time.process_time)
    cpu = time.process_time()
    profiler.runcall(build.build_dataset, source, out, workers=1, backend="inline")
    total = time.process_time() - cpu
    stats = pstats.Stats(profiler).stats  # (file, line, name) -> (cc, nc, tottime, cumtime, callers)
    stages, counted = {}, 0.0
    for label, name, cumulative in STAGES:
        keys = [k for k in stats if k[2] == name and (name != "render" or "generators" in k[0])]
        seconds = sum(stats[k][3 if cumulative else 2] for k in keys)
        if keys:
            stages[label] = seconds * 1e3 / count
            counted += seconds
    stages["everything else (metadata, manifest, Python)"] = (total - counted) * 1e3 / count
    stages["total (profiled)"] = total * 1e3 / count
    return stages


def child(name: str, images: int, repeats: int) -> dict:
    """Run in a fresh process: start-up phases, then alternated kernel / end-to-end timings."""
    age = process_age()  # seconds since this process started (interpreter start-up included)
    marks = {"interpreter": (age, _cpu())}
    t0 = time.perf_counter() - age
    from fdsl.datasets.builder import build
    from fdsl.generators.registry import get_generator

    get_generator(name)
    marks["imports"] = (time.perf_counter() - t0, _cpu())
    source = make_source(name, images)
    marks["make_source"] = (time.perf_counter() - t0, _cpu())
    source.render(0, 1)
    marks["first_image"] = (time.perf_counter() - t0, _cpu())
    kernel, kernel_wall, e2e, e2e_wall = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        count = 0
        for r in range(repeats):
            cpu, wall = time.process_time(), time.perf_counter()
            count = render_only(source)
            kernel.append(time.process_time() - cpu)
            kernel_wall.append(time.perf_counter() - wall)
            out = Path(tmp) / f"run{r}"
            cpu, wall = time.process_time(), time.perf_counter()
            result = build.build_dataset(source, out, workers=1, backend="inline")
            e2e.append(time.process_time() - cpu)
            e2e_wall.append(time.perf_counter() - wall)
            size = result.bytes
            if r + 1 < repeats:
                for f in out.iterdir():
                    f.unlink()
        stages = profile_stages(source, Path(tmp) / "profiled", count)
    phases, prev = {}, (0.0, 0.0)
    for key, value in marks.items():
        phases[key] = {"wall": value[0] - prev[0], "cpu": value[1] - prev[1]}
        prev = value
    ms = 1e3 / count
    return {"name": name, "images": count, "image_shape": list(source.render(0, 1).images.shape[1:]),
            "startup": phases, "startup_wall": marks["first_image"][0], "startup_cpu": marks["first_image"][1],
            "kernel_cpu_ms": statistics.median(kernel) * ms, "kernel_wall_ms": statistics.median(kernel_wall) * ms,
            "e2e_cpu_ms": statistics.median(e2e) * ms, "e2e_wall_ms": statistics.median(e2e_wall) * ms,
            "kernel_cpu_all": [t * ms for t in kernel], "e2e_cpu_all": [t * ms for t in e2e],
            "kib_per_image": size / count / 1024, "stages_cpu_ms": stages}


def run_child(name: str, images: int, repeats: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", name, str(images), str(repeats)],
                          capture_output=True, text=True, check=False, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"bench_e2e child {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(rows: list[dict], args: argparse.Namespace, load: str) -> str:
    lines = ["| generator | image | images | kernel only, CPU-ms/img | end to end, CPU-ms/img | "
             "end to end / kernel (CPU) | kernel wall-ms/img | end-to-end wall-ms/img | KiB/img (LZ4) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        shape = "x".join(str(s) for s in r["image_shape"])
        lines.append(f"| {r['name']} | {shape} | {r['images']} | {r['kernel_cpu_ms']:.3f} | {r['e2e_cpu_ms']:.3f} | "
                     f"**{r['e2e_cpu_ms'] / r['kernel_cpu_ms']:.2f}x** | {r['kernel_wall_ms']:.3f} | "
                     f"{r['e2e_wall_ms']:.3f} | {r['kib_per_image']:.1f} |")
    lines += ["", "Start-up before the first image (same processes; seconds, CPU / wall):", "",
              "| generator | interpreter | imports (generator + builder) | make_source (search) | "
              "first render (Numba cache load) | total CPU | total wall |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        p = r["startup"]
        cells = " | ".join(f"{p[k]['cpu']:.2f} / {p[k]['wall']:.2f}"
                           for k in ("interpreter", "imports", "make_source", "first_image"))
        lines.append(f"| {r['name']} | {cells} | {r['startup_cpu']:.2f} | {r['startup_wall']:.2f} |")
    labels = list(dict.fromkeys(k for r in rows for k in r["stages_cpu_ms"]))
    lines += ["", "Where the end-to-end CPU time goes (one more build under cProfile with a CPU clock; "
              "CPU-ms per image; profiling adds a little to each):", "",
              "| stage | " + " | ".join(r["name"] for r in rows) + " |", "|---|" + "---:|" * len(rows)]
    for label in labels:
        cells = " | ".join(f"{r['stages_cpu_ms'][label]:.3f}" if label in r["stages_cpu_ms"] else "-" for r in rows)
        lines.append(f"| {label} | {cells} |")
    command = f"    .venv/bin/python benchmarks/bench_e2e.py --images {args.images} --repeats {args.repeats}"
    return ("# End to end against kernel only\n\n" + "\n".join(lines) + "\n\n"
            f"Per image: medians of {args.repeats} alternated runs in one process after start-up, "
            f"{CLASSES} classes with each data set's defaults (image size, points, views); kernel only = "
            "`source.render` over the same items in the builder's parts; end to end = `build_dataset` "
            "(one process, inline backend, LZ4 shards of 10,000, fsync + sha256 + manifest). CPU time of "
            "the process (`time.process_time`); wall time is disturbed by the other jobs on this shared "
            f"machine. Load average (1, 5, 15 min) at the start: {load}.\n\n"
            f"Machine: {machine()}.\n\nCommand:\n\n{command}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000, help="images per generator (default 4000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--generators", default=None, help="comma-separated names (default: all registered)")
    parser.add_argument("--quick", action="store_true", help="400 images, 1 repeat (a smoke run)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    parser.add_argument("--no-report", action="store_true", help="do not rewrite benchmarks/results/e2e.md")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, images, repeats = args.child
        print(json.dumps(child(name, int(images), int(repeats))))
        return
    if args.quick:
        args.images, args.repeats = 400, 1
    names = args.generators.split(",") if args.generators else generator_names()
    load = load_average()
    rows = []
    for name in names:
        row = run_child(name, args.images, args.repeats)
        rows.append(row)
        print(f"{name}: kernel {row['kernel_cpu_ms']:.3f} CPU-ms/img, end to end {row['e2e_cpu_ms']:.3f} "
              f"({row['e2e_cpu_ms'] / row['kernel_cpu_ms']:.2f}x), start-up {row['startup_cpu']:.2f} CPU-s "
              f"/ {row['startup_wall']:.2f} s", file=sys.stderr)
    publish(report(rows, args, load), rows, args.json, None if args.no_report else RESULTS)


if __name__ == "__main__":
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    main()
