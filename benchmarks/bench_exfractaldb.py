"""ExFractalDB speed: fdsl's Numba generator vs a plain-Python/NumPy port of the official algorithms.

Single process, same run, same candidate stream and point clouds. Measures the category search
per accepted class, one 3-D model (variant cloud), and the cost per 224 px image with the cloud
amortised over its 40 views (the reference projects each view with glm-style 4x4 matrices in
NumPy, the official does it in OpenGL).

    .venv/bin/python benchmarks/bench_exfractaldb.py [--quick] [--points N]

Default 10,000 points per 3-D model, as the released instance.py (and fdsl's default).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import bench_parser, machine, median_cpu_seconds, results_file  # noqa: E402
from benchmarks.reference import exfractaldb_official as ref  # noqa: E402
from fdsl.generators import exfractaldb  # noqa: E402
from fdsl.generators.exfractaldb import params as ex_params  # noqa: E402
from fdsl.generators.exfractaldb import source as ex_source  # noqa: E402
from fdsl.generators.exfractaldb import tables  # noqa: E402

RESULTS = results_file("exfractaldb")


def main() -> None:
    parser = bench_parser(__doc__, "fewer classes and images (about 1 minute)")
    parser.add_argument("--points", type=int, default=10_000, help="points per 3-D model (default 10000)")
    args = parser.parse_args()
    ref_candidates, our_classes, variants = (100, 20, 3) if args.quick else (600, 100, 25)
    seed, views, points = 0, 40, args.points

    exfractaldb.search_classes(1, seed=99, workers=1, backend="inline")  # compile / load the kernels
    found = exfractaldb.search_classes(our_classes, seed=seed, workers=1, backend="inline")
    per_class = (int(found.candidate[-1]) + 1) / our_classes  # candidates per accepted class
    ours_search = median_cpu_seconds(lambda: exfractaldb.search_classes(our_classes, seed=seed, workers=1, backend="inline"),
                         repeats=2) / our_classes

    def ref_candidates_run() -> None:
        for k in range(ref_candidates):
            params, probs, rng = ref.sample_candidate(seed, k)
            ref.accepted(ref.normalized_cloud(params, probs, rng.random(10_000)), 0.05)

    def our_candidates_run() -> None:
        ex_params._SearchChunk(seed, 10_000, 0.05)((0, ref_candidates))

    ref_candidate = median_cpu_seconds(ref_candidates_run, 1) / ref_candidates
    our_candidate = median_cpu_seconds(our_candidates_run, 3) / ref_candidates
    ref_search = ref_candidate * per_class

    classes = exfractaldb.search_classes(1, seed=seed, workers=1, backend="inline")
    ours_model = median_cpu_seconds(lambda: ex_source.variant_cloud(classes, 0, 1, seed, points))
    matrices, shifts, probs = classes.system(0, tables.instance_table("paper25")[1])
    params = np.c_[matrices.reshape(len(probs), 9), shifts]
    uniforms = np.random.default_rng(0).random(points)
    ref_model = median_cpu_seconds(lambda: ref.normalized_cloud(params, probs, uniforms), 1)

    source = exfractaldb.make_source(classes=1, instances=None, seed=seed, image_size=224,
                                     points=points, params_from=None, workers=1, backend="inline",
                                     instances_3d=variants, views=views)
    source.render(0, 2)
    ours_image = median_cpu_seconds(lambda: source.render(0, source.num_items()), 3) / source.num_items()
    cloud = ex_source.variant_cloud(classes, 0, 0, seed, points)
    angles = [ex_source.view_angles(seed, 0, 0, v, True) for v in range(10)]
    ref_view = median_cpu_seconds(lambda: [ref.render_view(cloud, *a, 224) for a in angles], 1) / len(angles)
    ref_image = ref_view + ref_model / views

    rows = [
        (f"category search, ms per candidate (first {ref_candidates}, 10k points)",
         ref_candidate * 1e3, our_candidate * 1e3, ""),
        (f"category search, s per accepted class ({per_class:.0f} candidates/class; reference "
         "extrapolated from its per-candidate time)", ref_search, ours_search, "<= 0.2 s"),
        (f"one 3-D model, {points // 1000}k points, s", ref_model, ours_model, ""),
        (f"per 224 px image, {points // 1000}k points, cloud amortised over 40 views, ms",
         ref_image * 1e3, ours_image * 1e3, "<= 1 ms"),
    ]
    lines = ["| measure | reference port (Python/NumPy) | fdsl (Numba) | speed-up | target |",
             "|---|---|---|---|---|"]
    for name, theirs, ours, target in rows:
        ours_text = f"{ours:.4g}" if ours is not None else "-"
        speed = f"{theirs / ours:.0f}x" if ours else "-"
        lines.append(f"| {name} | {theirs:.4g} | {ours_text} | {speed} | {target} |")
    lines.append("")
    lines.append(f"Official code (measured, ANCHORS): search 2.2 CPU-s per accepted class, 3-D models 3.2 CPU-s "
                 f"per class (25 models of 10k points), plus the OpenGL render. fdsl per class of 1000 images: "
                 f"search {ours_search:.3f} s + images {ours_image * 1000:.2f} s.")
    table = "\n".join(lines)
    print(table)
    command = ("    .venv/bin/python benchmarks/bench_exfractaldb.py" + (" --quick" if args.quick else "")
               + (f" --points {points}" if points != 10_000 else ""))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(f"# ExFractalDB generator\n\n{table}\n\nSingle process, CPU time (median of repeats); reference = "
                       "benchmarks/reference/exfractaldb_official.py on the same candidates and clouds "
                       f"({our_classes} classes searched by fdsl, {variants} x {views} "
                       f"images timed).\n\nMachine: {machine()}.\n\nCommand:\n\n{command}\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
