"""RCDB speed: fdsl's Numba generator vs a plain-Python port of the official per-image algorithm.

Single process, same run, the same images (same class parameters and per-image random draws) for
both; the reference draws with Pillow's ``ImageDraw.line`` like the official make_rcdb.py.

    .venv/bin/python benchmarks/bench_rcdb.py [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import bench_parser, machine, median_cpu_seconds, results_file  # noqa: E402
from benchmarks.reference import rcdb_official as ref  # noqa: E402
from fdsl.generators import rcdb  # noqa: E402
from fdsl.generators.rcdb.params import sample_image  # noqa: E402
from fdsl.generators.rcdb.source import draw_image  # noqa: E402

RESULTS = results_file("rcdb")


def main() -> None:
    parser = bench_parser(__doc__, "fewer classes and images (under a minute)")
    args = parser.parse_args()
    classes, ref_per_class, our_per_class = (5, 3, 200) if args.quick else (20, 5, 500)
    size, seed = 512, 0

    source = rcdb.make_source(classes=classes, instances=our_per_class, seed=seed, image_size=size,
                              params_from=None, workers=1)
    source.render(0, 1)  # compile / load the kernels
    params = source.params
    draws = [(sample_image(seed, c, i, int(params.vertices[c]), int(params.contours[c])),
              float(params.perlin[c]), float(params.offset[c])) for c in range(classes) for i in range(ref_per_class)]
    ref_image = median_cpu_seconds(lambda: [ref.draw_image(d, p, o, size) for d, p, o in draws], 1) / len(draws)
    ours_same = median_cpu_seconds(lambda: [draw_image(d, p, o, size) for d, p, o in draws]) / len(draws)
    batch = 1000  # one render() call per 1000 images, as with --shard-size 1000

    def render_all() -> None:
        for start in range(0, source.num_items(), batch):
            source.render(start, min(start + batch, source.num_items()))

    ours_render = median_cpu_seconds(render_all, 2) / source.num_items()
    segments = sum(int(params.vertices[c] * params.contours[c]) for c in range(classes)) / classes

    lines = ["| measure | reference port (Python + Pillow) | fdsl (Numba) | speed-up | target |",
             "|---|---|---|---|---|",
             f"| drawing, ms per 512 px image (same {len(draws)} images) | {ref_image * 1e3:.2f} | "
             f"{ours_same * 1e3:.3f} | {ref_image / ours_same:.0f}x | |",
             f"| full render() incl. sampling, ms per 512 px image ({source.num_items()} images, "
             f"batches of {batch}) | "
             f"{ref_image * 1e3:.2f} | {ours_render * 1e3:.3f} | {ref_image / ours_render:.0f}x | <= 2 ms |",
             "",
             f"{classes} classes, {segments:.0f} segments per image on average. Official code (measured, "
             f"ANCHORS): about 50 ms per 512 px image. The reference port's Perlin noise: {ref.NOISE_SOURCE} "
             "(the official calls the C `noise` package)."]
    table = "\n".join(lines)
    print(table)
    command = "    .venv/bin/python benchmarks/bench_rcdb.py" + (" --quick" if args.quick else "")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(f"# RCDB generator\n\n{table}\n\nSingle process, CPU time (median of repeats); reference = "
                       "benchmarks/reference/rcdb_official.py on the same images.\n\n"
                       f"Machine: {machine()}.\n\nCommand:\n\n{command}\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
