"""The parts of ``make gpu-check`` that run as child processes of benchmarks/gpu_check.py.

    python benchmarks/gpu_parts.py PART --json FILE [--device cuda]

- ``kernels``: every GPU kernel against its CPU kernel, ``bench_ondevice.kernel_mismatches``;
- ``onthefly``: images/s generated on the device per generator at its native size,
  ``bench_ondevice.ondevice_throughput``;
- ``train-onthefly``: ResNet-50 and ViT-Tiny trained at 224 px on images made on the device
  (``train-classifier --data gen:FOLDER``);
- ``ddp``: a one-process ``torchrun`` training run.

Each writes its figures to ``--json`` after every generator or model, so a part stopped by its time
box keeps what it measured. A part whose functions are not in this checkout (bench_ondevice.py, the
``gen:`` data source) writes ``{"available": false, "why": ...}`` and exits with status 4.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

GENERATORS = ("fractaldb", "exfractaldb", "rcdb", "linedb")
EXIT_OK, EXIT_FAILED, EXIT_NOT_AVAILABLE = 0, 1, 4
ONDEVICE = "bench_ondevice"  # benchmarks/bench_ondevice.py, written with the GPU kernels
SECONDS_PER_GENERATOR = 5.0
# (label as bench_train.py names it, model, recipe): the on-the-fly rows sit beside its synthetic ones
TRAIN_CASES = (("ResNet-50", "resnet50", "fractaldb-resnet"), ("ViT-Tiny/16", "vit_tiny", "fdsl-vit"))


class NotAvailable(Exception):
    """What this part needs is not in this checkout (yet)."""


def save(figures: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(figures, indent=1) + "\n")


def lookup(name: str, module: str = ONDEVICE) -> Callable[..., dict[str, Any]]:
    """``module.name`` from benchmarks/, or NotAvailable saying which of the two is missing."""
    try:
        found = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise  # the module is there but one of its imports is not: a failure, not an absence
        raise NotAvailable(f"benchmarks/{module}.py is not in this checkout") from None
    fn = getattr(found, name, None)
    if not callable(fn):
        raise NotAvailable(f"benchmarks/{module}.py has no {name}()")
    return fn


def each_generator(path: Path, call: Callable[[str], dict[str, Any]],
                   generators: Sequence[str] = GENERATORS) -> int:
    """``call(generator)`` for each generator into ``rows``; one that raises is recorded, not fatal."""
    figures: dict[str, Any] = {"available": True, "rows": []}
    failed = False
    for generator in generators:
        try:
            row = {"generator": generator, **call(generator)}
        except Exception as exc:  # noqa: BLE001 - one generator failing must not hide the others
            row, failed = {"generator": generator, "error": f"{type(exc).__name__}: {exc}"[:2000]}, True
        figures["rows"].append(row)
        save(figures, path)
    return EXIT_FAILED if failed else EXIT_OK


def kernels(path: Path, device: str) -> int:
    fn = lookup("kernel_mismatches")
    return each_generator(path, lambda generator: fn(generator, device))


def onthefly(path: Path, device: str, seconds: float = SECONDS_PER_GENERATOR) -> int:
    fn = lookup("ondevice_throughput")
    return each_generator(path, lambda generator: fn(generator, device, seconds))


def _run(cmd: Sequence[str], what: str) -> None:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail}")


def make_fractaldb(folder: Path, classes: int, instances: int, image_size: int | None = None) -> Path:
    cmd = [sys.executable, "-m", "fdsl.generators.cli", "--db", "fractaldb", "--classes", str(classes),
           "--instances", str(instances), "--out", str(folder)]
    _run(cmd + (["--image-size", str(image_size)] if image_size else []), "gen-fractal")
    return folder


def train(data: str, out: Path, model: str, recipe: str, device: str, epochs: int, batch_size: int,
          image_size: int, launcher: Sequence[str] = ()) -> dict[str, Any]:
    """A train-classifier run (``launcher`` = torchrun's arguments, if any); its summary.json and
    the last epoch's line of metrics.jsonl (the first epoch carries torch.compile's warm-up)."""
    cli = ["-m", "fdsl.train.cli", "--data", data, "--out", str(out), "--model", model, "--recipe", recipe,
           "--epochs", str(epochs), "--batch-size", str(batch_size), "--image-size", str(image_size),
           "--val-fraction", "0", "--no-analysis", "--device", device]
    if device == "cuda":
        cli.append("--compile")  # as bench_train.py --compile measures the synthetic baseline
    cmd = [sys.executable, *(["-m", "torch.distributed.run", *launcher] if launcher else []), *cli]
    _run(cmd, "train-classifier")
    summary = json.loads((out / "summary.json").read_text())
    last = json.loads((out / "metrics.jsonl").read_text().strip().splitlines()[-1])
    return {"summary": summary, "last_epoch": last}


def onthefly_source_missing() -> str | None:
    """Why ``train-classifier --data gen:FOLDER`` cannot run here, or None when it can."""
    if importlib.util.find_spec("fdsl.generators.device") is None:
        return "train-classifier --data gen:FOLDER needs fdsl.generators.device, not in this checkout"
    return None


def train_onthefly(path: Path, device: str, classes: int = 16, instances: int = 320, epochs: int = 3,
                   batch_size: int = 256, image_size: int = 224, cases: Sequence[tuple[str, str, str]] = TRAIN_CASES,
                   ) -> int:
    why = onthefly_source_missing()
    if why:
        raise NotAvailable(why)
    figures: dict[str, Any] = {"available": True, "image_size": image_size, "images_per_epoch": classes * instances,
                               "epochs": epochs, "rows": [], "errors": []}
    with tempfile.TemporaryDirectory(prefix="gpu-check-onthefly-") as tmp:
        folder = make_fractaldb(Path(tmp) / "fractaldb", classes, instances)
        for label, model, recipe in cases:
            try:
                run = train(f"gen:{folder}", Path(tmp) / model, model, recipe, device, epochs, batch_size, image_size)
            except Exception as exc:  # noqa: BLE001 - one model failing must not hide the other's figures
                figures["errors"].append({"model": label, "error": f"{type(exc).__name__}: {exc}"[:2000]})
            else:
                figures["rows"].append({"model": label, "onthefly_img_s": run["last_epoch"]["images_per_second"],
                                        "device": run["summary"]["device"]})
            save(figures, path)
    return EXIT_FAILED if figures["errors"] else EXIT_OK


def ddp(path: Path, device: str, image_size: int = 64) -> int:
    """One-process torchrun run of train-classifier on a small FractalDB: DDP set up, trained, written."""
    with tempfile.TemporaryDirectory(prefix="gpu-check-ddp-") as tmp:
        folder = make_fractaldb(Path(tmp) / "fractaldb", 4, 64, image_size=image_size)
        run = train(str(folder), Path(tmp) / "run", "resnet18", "fractaldb-resnet", device, 1, 64, image_size,
                    launcher=["--standalone", "--nproc_per_node", "1"])
    summary = run["summary"]
    figures = {"available": True, "world_size": summary["world_size"], "ddp": summary.get("ddp"),
               "device": summary["device"],
               "images_per_second": summary["images_per_second"], "seconds": summary["seconds"],
               "epochs_done": summary["epochs_done"]}
    save(figures, path)
    ok = summary["world_size"] == 1 and summary.get("ddp") and summary["device"].startswith(device)
    return EXIT_OK if ok else EXIT_FAILED


PARTS: dict[str, Callable[[Path, str], int]] = {"kernels": kernels, "onthefly": onthefly,
                                                "train-onthefly": train_onthefly, "ddp": ddp}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=sorted(PARTS))
    parser.add_argument("--json", type=Path, required=True, help="figures file")
    parser.add_argument("--device", default="cuda", help="device the part runs on (default cuda)")
    args = parser.parse_args(argv)
    try:
        return PARTS[args.part](args.json, args.device)
    except NotAvailable as exc:
        save({"available": False, "why": str(exc)}, args.json)
        print(f"gpu-check {args.part}: not available: {exc}", file=sys.stderr)
        return EXIT_NOT_AVAILABLE


if __name__ == "__main__":
    sys.exit(main())
