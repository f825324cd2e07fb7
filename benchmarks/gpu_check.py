"""``make gpu-check``: the GPU paths, measured on a CUDA machine in under 8 minutes.

Parts, each in its own process with its own time box (a part that fails or runs out of time is
recorded and the next one still runs):

1. ``gpu tests``: ``pytest -m gpu`` (bf16 autocast, channels_last and the CUDA training run);
2. ``train``: ``bench_train.py --quick --compile``: ResNet-50 and ViT-Tiny at 224 px, shard-fed
   against synthetic batches on the device (bf16 autocast, channels_last, torch.compile,
   pinned-memory batches); its figures are saved after each model;
3. ``render``: ``bench_render.py --quick`` with NVIDIA EGL (``PYOPENGL_PLATFORM=egl``): views/s.

Results go to ``benchmarks/results/gpu.md`` and ``gpu.json`` with the device named. Without a
CUDA device it says so in one line and exits with status 3 before any long work.

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
BUDGET_S = 460.0  # all parts together; with start-up this keeps the check under 8 minutes
MIN_PART_S = 20.0  # a part offered less than this is skipped, not started


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
    status: str  # passed, failed, timed out, skipped
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


def run_part(part: Part, deadline: float, min_part_s: float = MIN_PART_S) -> PartResult:
    """Run one part in its own process group, stopped at its time box or at ``deadline``."""
    limit = min(part.limit_s, deadline - time.monotonic())
    if limit < min_part_s:
        return PartResult(part.name, "skipped", 0.0, None, f"only {max(limit, 0):.0f} s of the budget left")
    if part.figures is not None:
        part.figures.unlink(missing_ok=True)
    env = dict(os.environ, **part.env)
    start = time.monotonic()
    proc = subprocess.Popen(part.command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=limit)
        status = "passed" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the part's own process group: its children too
        output, _ = proc.communicate()
        status = "timed out"
    seconds = time.monotonic() - start
    detail = _tail(output or "")
    if status == "timed out":
        detail = f"stopped after its time box of {limit:.0f} s\n{detail}"
    figures = None
    if part.figures is not None and part.figures.is_file():
        try:
            figures = json.loads(part.figures.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            detail += f"\nunreadable figures file {part.figures}: {exc}"
    problem = part.check(figures or {}) if part.check is not None and status == "passed" else None
    if problem:
        status, detail = "failed", f"{problem}\n{detail}"
    return PartResult(part.name, status, seconds, proc.returncode, detail, figures)


def _nvidia_egl(figures: dict[str, Any]) -> str | None:
    if not figures.get("on_nvidia"):
        return f"EGL rendered with {figures.get('gl_renderer', 'an unknown renderer')}, not NVIDIA's driver"
    return None


def run_parts(parts: Sequence[Part], budget_s: float, min_part_s: float = MIN_PART_S) -> list[PartResult]:
    """Every part in order, within ``budget_s`` seconds in all; failures are recorded, not raised."""
    deadline = time.monotonic() + budget_s
    results = []
    for part in parts:
        print(f"gpu-check: {part.name} (time box {min(part.limit_s, deadline - time.monotonic()):.0f} s) ...",
              file=sys.stderr, flush=True)
        result = run_part(part, deadline, min_part_s)
        print(f"gpu-check: {part.name}: {result.status} in {result.seconds:.0f} s", file=sys.stderr, flush=True)
        results.append(result)
    return results


def default_parts(out: Path, python: str = sys.executable) -> list[Part]:
    """The three parts of the check (time boxes sum to more than the budget: the last one gets
    what the earlier ones leave)."""
    egl = {"PYOPENGL_PLATFORM": "egl"}
    return [
        Part("gpu tests", [python, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests"],
             90.0, egl),
        Part("train throughput", [python, "benchmarks/bench_train.py", "--quick", "--compile", "--device", "cuda",
                                  "--json", str(out / "gpu-train.json")], 260.0, {}, out / "gpu-train.json"),
        Part("render (EGL)", [python, "benchmarks/bench_render.py", "--quick", "--no-report",
                              "--json", str(out / "gpu-render.json")], 110.0, egl, out / "gpu-render.json",
             _nvidia_egl),
    ]


def summarise(result: PartResult) -> list[str]:
    """Markdown lines with a part's figures."""
    f = result.figures or {}
    if result.name.startswith("render") and f:
        lines = [f"- GL renderer: {f.get('gl_renderer')} ({'NVIDIA' if f.get('on_nvidia') else 'NOT the NVIDIA driver'})",
                 f"- end to end (procedural set into shards): {f.get('end_to_end_views_per_s', 0):,.0f} views/s"]
        lines += [f"- fdsl renderer, {c['mesh']}, {f['image_size']} px: {c['fdsl_views_per_s']:,.0f} views/s "
                  f"(naive pyrender {1e3 / c['naive']['wall_ms']:,.0f})" for c in f.get("cases", [])[:2]]
        return lines
    if result.name.startswith("train") and f:
        lines = [f"- paths: {', '.join(k for k, v in f.get('paths', {}).items() if v is True)}"]
        lines += [f"- {r['model']} @{f.get('image_size')} px: synthetic {r['synthetic_img_s']:,.0f} img/s, "
                  f"shard-fed {r['fed_img_s']:,.0f} img/s ({r['fed_over_synthetic']:.0%}; target >= 90%)"
                  for r in f.get("rows", [])]
        lines += [f"- {e['model']}: FAILED {e['error'].splitlines()[0]}" for e in f.get("errors", [])]
        return lines
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
    for r in results:
        lines += ["", f"**{r.name}**", ""] + (summarise(r) or ["- no figures"])
        if r.status != "passed" and r.detail:
            lines += ["", "```", r.detail, "```"]
    lines += ["", "Command: `make gpu-check` (`python benchmarks/gpu_check.py`)", ""]
    path = out / "gpu.md"
    path.write_text("\n".join(lines))
    return path


def gpu_check(out: Path = RESULTS, budget_s: float = BUDGET_S, parts: Sequence[Part] | None = None) -> int:
    """Run the check; 0 when every part passed, 1 when one failed, 3 without a CUDA device."""
    device, why = cuda_device()
    if device is None:
        print(f"gpu-check: no CUDA device ({why}); nothing was run. Run `make gpu-check` on a machine "
              "with an NVIDIA GPU and a CUDA build of torch.", file=sys.stderr)
        return EXIT_NO_CUDA
    print(f"gpu-check: {device['name']}, budget {budget_s:.0f} s", file=sys.stderr)
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
