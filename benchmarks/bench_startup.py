"""Start-up of a 1,000-image ``gen-fractal`` job: the time before its first image, by phase.

Each generator of the registry runs the real command line (``fdsl.generators.cli.main``, default
workers and backend) in a fresh process for 1,000 images of one class. The child times, from
its own process start:

- interpreter: Python and site start-up, until the first line of this script;
- imports: ``fdsl.generators.cli`` (builder, shard format, job runner, registry);
- parse: the parser with every generator's options (imports each generator module);
- search: the generator's ``make_source`` (category search, Numba cache load of its kernels);
- builder: folder checks and the first manifest, until the first ``render`` call;
- first image: that call for one item (Numba cache load of the render kernels);

and the job's total. CPU counts this process and its finished children (search workers).

    .venv/bin/python benchmarks/bench_startup.py [--repeats 3] [--generators a,b]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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

RESULTS = ROOT / "benchmarks" / "results" / "startup.md"
PHASES = ("interpreter", "imports", "parse", "search", "builder", "first image")
IMAGES = 1000


def _cpu() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def child(name: str) -> dict:
    """One 1,000-image job through the command line, with the phases marked."""
    age = process_age()
    t0 = time.perf_counter() - age
    marks = [("interpreter", age, _cpu())]

    def mark(phase: str) -> None:
        marks.append((phase, time.perf_counter() - t0, _cpu()))

    from fdsl.generators import cli, generate, registry

    mark("imports")
    real_get, real_parse = registry.get_generator, cli.build_parser

    def build_parser():
        parser = real_parse()
        mark("parse")
        return parser

    def get_generator(db: str):
        spec = real_get(db)

        def prepare_source(**kwargs):
            factory = spec.prepare_source(**kwargs)

            def make_source():
                source = factory()
                mark("search")
                render = type(source).render
                first = [True]

                def timed_render(self, start, stop):
                    if first[0]:
                        first[0] = False
                        mark("builder")
                        render(self, start, start + 1)
                        mark("first image")
                    return render(self, start, stop)

                type(source).render = timed_render
                return source

            return make_source

        return dataclasses.replace(spec, prepare_source=prepare_source)

    cli.build_parser, generate.get_generator = build_parser, get_generator
    args = ["--db", name, "--classes", "1", "--instances", str(IMAGES)]
    if name == "exfractaldb":  # its --instances must equal --instances-3d x --views
        args += ["--instances-3d", "25", "--views", "40"]
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        status = cli.main([*args, "--out", str(Path(tmp) / "out")])
    mark("total")
    phases, prev = {}, (0.0, 0.0)
    for phase, wall, cpu in marks:
        if phase == "total":
            continue
        phases[phase] = {"wall": wall - prev[0], "cpu": cpu - prev[1]}
        prev = (wall, cpu)
    return {"name": name, "status": status, "phases": phases,
            "first_image": {"wall": prev[0], "cpu": prev[1]},
            "total": {"wall": marks[-1][1], "cpu": marks[-1][2]}}


def run_child(name: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True, text=True,
                          check=False, cwd=ROOT)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"bench_startup child {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def median_row(runs: list[dict]) -> dict:
    def med(get) -> float:
        return statistics.median(get(r) for r in runs)

    return {"name": runs[0]["name"],
            "phases": {p: {k: med(lambda r, p=p, k=k: r["phases"].get(p, {}).get(k, 0.0)) for k in ("cpu", "wall")}
                       for p in PHASES},
            "first_image": {k: med(lambda r, k=k: r["first_image"][k]) for k in ("cpu", "wall")},
            "total": {k: med(lambda r, k=k: r["total"][k]) for k in ("cpu", "wall")}}


def report(rows: list[dict], repeats: int, load: str) -> str:
    head = " | ".join(PHASES)
    lines = [f"| generator | {head} | before first image | whole 1,000-image job |",
             "|---|" + "---:|" * (len(PHASES) + 2)]
    for r in rows:
        cells = " | ".join(f"{r['phases'][p]['cpu']:.2f} / {r['phases'][p]['wall']:.2f}" for p in PHASES)
        lines.append(f"| {r['name']} | {cells} | **{r['first_image']['cpu']:.2f} / {r['first_image']['wall']:.2f}** | "
                     f"{r['total']['cpu']:.2f} / {r['total']['wall']:.2f} |")
    return ("# Start-up of a 1,000-image job\n\n" + "\n".join(lines) + "\n\n"
            f"Seconds, CPU / wall, medians of {repeats} fresh processes, each running "
            f"`gen-fractal --db NAME --classes 1 --instances {IMAGES}` through `fdsl.generators.cli.main` "
            "(default workers and backend; numba cache already on disk). CPU includes finished child "
            "processes (search workers). Wall time is disturbed by the other jobs on this shared machine. "
            f"Load average (1, 5, 15 min) at the start: {load}.\n\n"
            f"Machine: {machine()}.\n\nCommand:\n\n    .venv/bin/python benchmarks/bench_startup.py "
            f"--repeats {repeats}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--generators", default=None, help="comma-separated names (default: all registered)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    parser.add_argument("--no-report", action="store_true", help="do not rewrite benchmarks/results/startup.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    from benchmarks.bench_e2e import generator_names

    names = args.generators.split(",") if args.generators else generator_names()
    load = load_average()
    for name in names:
        run_child(name)  # not timed: the numba cache on disk must exist before cache loads are timed
    rows, raw = [], []
    for name in names:
        runs = [run_child(name) for _ in range(args.repeats)]
        raw.append(runs)
        rows.append(median_row(runs))
        r = rows[-1]
        print(f"{name}: first image after {r['first_image']['cpu']:.2f} CPU-s / {r['first_image']['wall']:.2f} s",
              file=sys.stderr)
    publish(report(rows, args.repeats, load), raw, args.json, None if args.no_report else RESULTS)


if __name__ == "__main__":
    main()
