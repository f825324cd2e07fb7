"""``make gpu-check``: the GPU paths, measured on a CUDA machine in under 8 minutes.

Parts, each in its own process group with its own time box (a part that fails, is not available
or runs out of time is recorded and the next one still runs):

1. ``gpu tests``: ``pytest -m gpu`` on the test files that hold GPU tests;
2. ``kernels vs CPU``: every GPU kernel against its CPU kernel, mismatched pixels (must be 0);
3. ``on-the-fly generation``: images/s made on the device per generator at its native size;
4. ``train: synthetic and shards``: ``bench_train.py --quick --compile``: ResNet-50 and ViT-Tiny at
   224 px, synthetic batches on the device against shard-fed (bf16 autocast, channels_last,
   torch.compile, pinned-memory batches);
5. ``train: on the fly``: the same two models on images generated on the device
   (``train-classifier --data gen:FOLDER``), against 4.'s synthetic figures;
6. ``DDP (torchrun)``: a one-process ``torchrun`` training run;
7. ``render (EGL)``: ``bench_render.py --quick`` with NVIDIA's EGL: views/s.

Parts 2, 3, 5 and 6 run benchmarks/gpu_parts.py; 2 and 3 call ``kernel_mismatches`` and
``ondevice_throughput`` of benchmarks/bench_ondevice.py, and a part whose functions are not in the
checkout says "not available". Results go to ``benchmarks/results/gpu.md`` and ``gpu.json`` with
the device named; the exit status is 0 only when every part passed. Without a CUDA device it says
so in one line and exits with status 3 before any long work.

    .venv/bin/python benchmarks/gpu_check.py [--budget SECONDS] [--out FOLDER]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
EXIT_FAILED, EXIT_NO_CUDA = 1, 3
EXIT_NOT_AVAILABLE = 4  # gpu_parts.py: what the part needs is not in this checkout
BUDGET_S = 460.0  # all parts together; with start-up this keeps the check under 8 minutes
MIN_PART_S = 20.0  # a part offered less than this is skipped, not started
# Targets of issue 19 (benchmarks, not tests): images/s on one H100 at the generator's native size.
ONTHEFLY_TARGETS = {"fractaldb": 50_000, "rcdb": 20_000, "exfractaldb": 50_000}
ONTHEFLY_OVER_SYNTHETIC = 0.9  # ViT-Tiny trained on generated data vs on synthetic tensors


@dataclass(frozen=True)
class Part:
    """One step of the check: a command, its time box, and the JSON file it writes (if any)."""

    name: str
    command: list[str]
    limit_s: float
    env: dict[str, str] = field(default_factory=dict)
    figures: Path | None = None
    check: Callable[[dict[str, Any]], str | None] | None = None  # figures -> what is wrong, or None


@dataclass
class PartResult:
    name: str
    status: str  # passed, failed, timed out, skipped, not available
    seconds: float
    returncode: int | None
    detail: str = ""
    figures: dict[str, Any] | None = None


def cuda_device() -> tuple[dict[str, Any] | None, str]:
    """(device description, '') when torch sees a CUDA device, else (None, why not)."""
    try:
        import torch
    except ImportError as exc:
        return None, f"torch does not import ({exc})"
    if not torch.cuda.is_available():
        build = (f"torch {torch.__version__} is a CPU-only build" if torch.version.cuda is None
                 else f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no device")
        return None, build
    props = torch.cuda.get_device_properties(0)
    return {"name": props.name, "count": torch.cuda.device_count(),
            "capability": f"{props.major}.{props.minor}", "memory_gib": round(props.total_memory / 2**30, 1),
            "torch": torch.__version__, "cuda": torch.version.cuda, "driver": _driver_version()}, ""


def _driver_version() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _wait(proc: subprocess.Popen, limit: float) -> str:
    output, _ = proc.communicate(timeout=limit)
    return output


def run_part(part: Part, limit: float, wait: Callable[[subprocess.Popen, float], str] = _wait) -> PartResult:
    """Run one part in its own process group, killed with all its children after ``limit`` seconds
    (``wait`` returns its output, or raises TimeoutExpired when the time box is over)."""
    if part.figures is not None:
        part.figures.unlink(missing_ok=True)
    env = dict(os.environ, **part.env)
    start = time.monotonic()
    proc = subprocess.Popen(part.command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output = wait(proc, limit)
        status = {0: "passed", EXIT_NOT_AVAILABLE: "not available"}.get(proc.returncode, "failed")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the part's own process group: its children too
        output, _ = proc.communicate()
        status = "timed out"
    seconds = time.monotonic() - start
    detail = _tail(output or "")
    if status == "timed out":
        detail = f"stopped after its time box of {limit:.0f} s" + (f"\n{detail}" if detail else "")
    figures = None
    if part.figures is not None and part.figures.is_file():
        try:
            figures = json.loads(part.figures.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            detail += f"\nunreadable figures file {part.figures}: {exc}"
    if status == "not available" and figures and figures.get("why"):
        detail = figures["why"]
    problem = part.check(figures or {}) if part.check is not None and status == "passed" else None
    if problem:
        status, detail = "failed", f"{problem}\n{detail}"
    return PartResult(part.name, status, seconds, proc.returncode, detail, figures)


def run_parts(parts: Sequence[Part], budget_s: float, min_part_s: float = MIN_PART_S,
              clock: Callable[[], float] = time.monotonic,
              run: Callable[[Part, float], PartResult] = run_part) -> list[PartResult]:
    """Every part in order, within ``budget_s`` seconds in all: each gets its own time box or what
    is left of the budget, and is skipped when that is under ``min_part_s``. Failures are recorded,
    not raised."""
    deadline = clock() + budget_s
    results = []
    for part in parts:
        limit = min(part.limit_s, deadline - clock())
        if limit < min_part_s:
            result = PartResult(part.name, "skipped", 0.0, None, f"only {max(limit, 0):.0f} s of the budget left")
        else:
            print(f"gpu-check: {part.name} (time box {limit:.0f} s) ...", file=sys.stderr, flush=True)
            result = run(part, limit)
        print(f"gpu-check: {part.name}: {result.status} in {result.seconds:.0f} s", file=sys.stderr, flush=True)
        results.append(result)
    return results


def _nvidia_egl(figures: dict[str, Any]) -> str | None:
    if not figures.get("on_nvidia"):
        return f"EGL rendered with {figures.get('gl_renderer', 'an unknown renderer')}, not NVIDIA's driver"
    return None


def _no_mismatch(figures: dict[str, Any]) -> str | None:
    bad = [f"{r['generator']}: {r['mismatched_pixels']} mismatched pixels" for r in figures.get("rows", [])
           if r.get("mismatched_pixels", 0) != 0]
    return "; ".join(bad) or None


def gpu_test_files(tests: Path = ROOT / "tests") -> list[str]:
    """The test files that hold GPU tests (the others are not collected: their imports may need
    packages the GPU node lacks)."""
    return [str(p.relative_to(ROOT)) for p in sorted(tests.glob("test_*.py")) if "mark.gpu" in p.read_text()]


def default_parts(out: Path, python: str = sys.executable) -> list[Part]:
    """The parts of the check (time boxes sum to more than the budget: the last one gets what the
    earlier ones leave)."""
    egl = {"PYOPENGL_PLATFORM": "egl"}

    def worker(name: str, part: str, limit: float, check=None) -> Part:
        figures = out / f"gpu-{part}.json"
        return Part(name, [python, "benchmarks/gpu_parts.py", part, "--json", str(figures)], limit, {}, figures,
                    check)

    return [
        Part("gpu tests", [python, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                           *(gpu_test_files() or ["tests"])], 60.0, egl),
        worker("kernels vs CPU", "kernels", 40.0, _no_mismatch),
        worker("on-the-fly generation", "onthefly", 45.0),
        Part("train: synthetic and shards", [python, "benchmarks/bench_train.py", "--quick", "--compile", "--device",
                                             "cuda", "--json", str(out / "gpu-train.json")], 150.0, {},
             out / "gpu-train.json"),
        worker("train: on the fly", "train-onthefly", 90.0),
        worker("DDP (torchrun)", "ddp", 40.0),
        Part("render (EGL)", [python, "benchmarks/bench_render.py", "--quick", "--no-report",
                              "--json", str(out / "gpu-render.json")], 60.0, egl, out / "gpu-render.json",
             _nvidia_egl),
    ]


def _met(value: float, target: float) -> str:
    return f"target >= {target:,.0f}: {'met' if value >= target else 'NOT met'}"


def summarise(result: PartResult, synthetic: dict[str, float] | None = None) -> list[str]:
    """Markdown lines with a part's figures (``synthetic``: bench_train's img/s per model)."""
    f = result.figures or {}
    if result.status == "not available":
        return [f"- not available: {result.detail}"]
    if result.name.startswith("render") and f:
        lines = [f"- GL renderer: {f.get('gl_renderer')} ({'NVIDIA' if f.get('on_nvidia') else 'NOT the NVIDIA driver'})",
                 f"- end to end (procedural set into shards): {f.get('end_to_end_views_per_s', 0):,.0f} views/s"]
        lines += [f"- fdsl renderer, {c['mesh']}, {f['image_size']} px: {c['fdsl_views_per_s']:,.0f} views/s "
                  f"(naive pyrender {1e3 / c['naive']['wall_ms']:,.0f})" for c in f.get("cases", [])[:2]]
        return lines
    if result.name.startswith("kernels"):
        return [f"- {r['generator']}: FAILED {r['error'].splitlines()[0]}" if "error" in r else
                f"- {r['generator']}: {r['mismatched_pixels']:,} mismatched pixels"
                + (f" of {r['pixels']:,}" if "pixels" in r else "") + (f" ({r['images']:,} images)" if "images" in r else "")
                for r in f.get("rows", [])]
    if result.name.startswith("on-the-fly"):
        lines = []
        for r in f.get("rows", []):
            if "error" in r:
                lines.append(f"- {r['generator']}: FAILED {r['error'].splitlines()[0]}")
                continue
            size = f" @{r['image_size']} px" if "image_size" in r else ""
            target = ONTHEFLY_TARGETS.get(r["generator"])
            lines.append(f"- {r['generator']}{size}: {r['images_per_s']:,.0f} images/s"
                         + (f" ({_met(r['images_per_s'], target)})" if target else ""))
        return lines
    if result.name == "train: on the fly":
        lines = []
        for r in f.get("rows", []):
            base = (synthetic or {}).get(r["model"])
            ratio = (f" = {r['onthefly_img_s'] / base:.0%} of synthetic {base:,.0f} img/s"
                     f" (target >= {ONTHEFLY_OVER_SYNTHETIC:.0%})" if base else "")
            lines.append(f"- {r['model']} @{f.get('image_size')} px on generated FractalDB: "
                         f"{r['onthefly_img_s']:,.0f} img/s{ratio}")
        return lines + [f"- {e['model']}: FAILED {e['error'].splitlines()[0]}" for e in f.get("errors", [])]
    if result.name.startswith("train") and f:
        lines = [f"- paths: {', '.join(k for k, v in f.get('paths', {}).items() if v is True)}"]
        lines += [f"- {r['model']} @{f.get('image_size')} px: synthetic {r['synthetic_img_s']:,.0f} img/s, "
                  f"shard-fed {r['fed_img_s']:,.0f} img/s ({r['fed_over_synthetic']:.0%}; target >= 90%)"
                  for r in f.get("rows", [])]
        lines += [f"- {e['model']}: FAILED {e['error'].splitlines()[0]}" for e in f.get("errors", [])]
        return lines
    if result.name.startswith("DDP") and f:
        return [f"- torchrun, 1 process: world size {f['world_size']} on {f['device']}, {f['epochs_done']} epoch, "
                f"{f['images_per_second']:,.0f} img/s, {f['seconds']:.0f} s"]
    return []


def write_report(results: Sequence[PartResult], device: dict[str, Any], out: Path, seconds: float) -> Path:
    """``out/gpu.md`` (for RESULTS.md) and ``out/gpu.json`` (everything, for later comparison)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps({"device": device, "seconds": round(seconds, 1),
                                              "machine": platform.platform(),
                                              "parts": [asdict(r) for r in results]}, indent=1) + "\n")
    lines = ["# GPU check", "",
             f"Device: {device['name']} (x{device['count']}, compute {device['capability']}, "
             f"{device['memory_gib']} GiB), driver {device.get('driver') or '?'}, torch {device['torch']} "
             f"(CUDA {device['cuda']}). {seconds:.0f} s in all.", "",
             "| part | status | seconds |", "|---|---|---:|"]
    lines += [f"| {r.name} | {r.status} | {r.seconds:.0f} |" for r in results]
    train = next((r.figures for r in results if r.name == "train: synthetic and shards" and r.figures), {})
    synthetic = {row["model"]: row["synthetic_img_s"] for row in train.get("rows", [])}
    for r in results:
        lines += ["", f"**{r.name}**", ""] + (summarise(r, synthetic) or ["- no figures"])
        if r.status not in ("passed", "not available") and r.detail:
            lines += ["", "```", r.detail, "```"]
    lines += ["", "Command: `make gpu-check` (`python benchmarks/gpu_check.py`; on an offline node "
              "`make gpu-check OFFLINE=1 WHEELHOUSE=DIR`)", ""]
    path = out / "gpu.md"
    path.write_text("\n".join(lines))
    return path


def gpu_check(out: Path = RESULTS, budget_s: float = BUDGET_S, parts: Sequence[Part] | None = None,
              find_device: Callable[[], tuple[dict[str, Any] | None, str]] = cuda_device) -> int:
    """Run the check; 0 when every part passed, 1 when one did not, 3 without a CUDA device."""
    device, why = find_device()
    if device is None:
        print(f"gpu-check: no CUDA device ({why}); nothing was run. Run `make gpu-check` on a machine "
              "with an NVIDIA GPU and a CUDA build of torch.", file=sys.stderr)
        return EXIT_NO_CUDA
    print(f"gpu-check: {device['name']}, budget {budget_s:.0f} s", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    results = run_parts(parts if parts is not None else default_parts(out), budget_s)
    report = write_report(results, device, out, time.monotonic() - start)
    print(report.read_text())
    print(f"gpu-check: wrote {report} and {report.with_suffix('.json')}", file=sys.stderr)
    return 0 if all(r.status == "passed" for r in results) else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=BUDGET_S, help=f"seconds for all parts (default {BUDGET_S:.0f})")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for gpu.md and gpu.json")
    args = parser.parse_args(argv)
    return gpu_check(args.out, args.budget)


if __name__ == "__main__":
    sys.exit(main())
