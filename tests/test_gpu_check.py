"""`make gpu-check` (benchmarks/gpu_check.py, gpu_parts.py), without a GPU: the no-GPU answer, the
time-boxed part runner, the budget, "not available" parts and the report files.

No test sleeps or asserts on a duration: the budget runs on a fake clock, a part that outlives its
time box blocks on a pipe nobody writes, and a grandchild's death is awaited through its pidfd."""

from __future__ import annotations

import importlib.util
import json
import os
import select
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpu_check = _load("gpu_check")
gpu_parts = _load("gpu_parts")

DEVICE = {"name": "NVIDIA H100 80GB HBM3", "count": 1, "capability": "9.0", "memory_gib": 79.1,
          "torch": "2.11.0+cu130", "cuda": "13.0", "driver": "580.159.04"}
BLOCK = "import os; r, w = os.pipe(); os.read(r, 1)"  # never returns: nobody writes to w


def _part(name: str, code: str, limit: float = 60, figures: Path | None = None, check=None):
    return gpu_check.Part(name, [sys.executable, "-c", code], limit, {"GPU_CHECK_TEST": "1"}, figures, check)


def _has_cuda() -> bool:
    torch = pytest.importorskip("torch")
    return torch.cuda.is_available()


def test_without_cuda_the_script_says_so_in_one_line_and_exits_3(tmp_path: Path) -> None:
    if _has_cuda():
        pytest.skip("a CUDA device is present: the no-GPU answer cannot be observed here")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out")], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == gpu_check.EXIT_NO_CUDA == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check: no CUDA device (")
    assert "CPU-only build" in lines[0] or "sees no device" in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no report: nothing was measured


def test_without_a_device_no_part_starts(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "started"
    code = gpu_check.gpu_check(tmp_path / "out", parts=[_part("p", f"open({str(marker)!r}, 'w')")],
                               find_device=lambda: (None, "torch 2.13.0+cpu is a CPU-only build"))
    assert code == 3 and not marker.exists() and not (tmp_path / "out").exists()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gpu-check: no CUDA device (torch 2.13.0+cpu is a CPU-only build)")


def test_each_part_gets_its_time_box_or_what_is_left_of_the_budget() -> None:
    now, given = [1000.0], []

    def clock() -> float:  # moves only when a part "runs"
        return now[0]

    def run(part, limit):  # each part takes its whole time box
        given.append((part.name, limit))
        now[0] += limit
        return gpu_check.PartResult(part.name, "passed", limit, 0)

    parts = [_part(n, "", limit) for n, limit in (("a", 50), ("b", 30), ("c", 50), ("d", 50))]
    results = gpu_check.run_parts(parts, budget_s=115, min_part_s=20, clock=clock, run=run)
    assert given == [("a", 50), ("b", 30), ("c", 35)]
    assert [r.status for r in results] == ["passed", "passed", "passed", "skipped"]
    assert results[3].detail == "only 0 s of the budget left" and results[3].returncode is None
    now[0], given[:] = 0.0, []
    results = gpu_check.run_parts(parts[:2], budget_s=65, min_part_s=20, clock=clock, run=run)
    assert given == [("a", 50)] and results[1].detail == "only 15 s of the budget left"


def test_a_part_that_never_ends_is_stopped_by_its_time_box() -> None:
    result = gpu_check.run_part(_part("stuck", f"print('started', flush=True); {BLOCK}"), limit=0.5)
    assert result.status == "timed out" and result.returncode == -9
    assert result.detail.splitlines()[0] == "stopped after its time box of 0 s"


def test_a_timed_out_part_dies_with_its_children_and_keeps_its_figures(tmp_path: Path) -> None:
    """The time box ends (TimeoutExpired) once the part says it is ready: by then it has written
    figures and started a grandchild that blocks for ever; killing the part's process group must
    end the grandchild too."""
    pid_file, figures = tmp_path / "grandchild.pid", tmp_path / "partial.json"
    grandchild = f"import os; print(os.getpid(), flush=True); {BLOCK}"
    child = (f"import json, subprocess, sys; g = subprocess.Popen([sys.executable, '-c', {grandchild!r}], "
             f"stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True); open({str(pid_file)!r}, 'w').write(g.stdout.readline()); "
             f"json.dump({{'rows': [1]}}, open({str(figures)!r}, 'w')); print('ready', flush=True); {BLOCK}")

    def wait(proc, limit):
        assert proc.stdout.readline() == "ready\n"
        raise subprocess.TimeoutExpired(proc.args, limit)

    result = gpu_check.run_part(_part("slow", child, figures=figures), limit=30, wait=wait)
    assert result.status == "timed out" and result.returncode == -9
    assert result.detail == "stopped after its time box of 30 s"
    assert result.figures == {"rows": [1]}  # what it measured before the time box is kept
    try:
        pidfd = os.pidfd_open(int(pid_file.read_text()))
    except ProcessLookupError:
        return  # already gone
    try:
        ready, _, _ = select.select([pidfd], [], [], 120)  # readable once it has died; 120 s only guards a hang
        assert ready, "the grandchild outlived its part's time box"
    finally:
        os.close(pidfd)


def test_statuses_passed_failed_not_available_and_checked_figures(tmp_path: Path) -> None:
    def figures_part(name, figures, rc, check=None):
        path = tmp_path / f"{name}.json"
        code = f"import json, sys; json.dump({figures!r}, open({str(path)!r}, 'w')); print('out of {name}'); sys.exit({rc})"
        return _part(name, code, figures=path, check=check)

    parts = [
        figures_part("ok", {"v": 7}, 0),
        figures_part("broken", {}, 5),
        figures_part("absent", {"available": False, "why": "benchmarks/bench_ondevice.py has no kernel_mismatches()"}, 4),
        figures_part("kernels", {"rows": [{"generator": "fractaldb", "mismatched_pixels": 0},
                                          {"generator": "rcdb", "mismatched_pixels": 3}]}, 0, gpu_check._no_mismatch),
        figures_part("render", {"on_nvidia": False, "gl_renderer": "llvmpipe"}, 0, gpu_check._nvidia_egl),
        _part("late", "print('still runs')"),
    ]
    results = {r.name: r for r in gpu_check.run_parts(parts, budget_s=600, min_part_s=1)}
    assert {n: r.status for n, r in results.items()} == {
        "ok": "passed", "broken": "failed", "absent": "not available", "kernels": "failed", "render": "failed",
        "late": "passed"}
    assert results["ok"].figures == {"v": 7} and results["broken"].returncode == 5
    assert results["broken"].detail == "out of broken"
    assert results["absent"].detail == "benchmarks/bench_ondevice.py has no kernel_mismatches()"
    assert results["kernels"].detail.splitlines()[0] == "rcdb: 3 mismatched pixels"
    assert results["render"].detail.splitlines()[0] == "EGL rendered with llvmpipe, not NVIDIA's driver"


def test_the_check_on_a_fake_device_writes_both_reports_and_fails_on_a_missing_part(tmp_path: Path, capsys) -> None:
    out = tmp_path / "results"
    absent = tmp_path / "absent.json"
    parts = [_part("gpu tests", "print('1 passed')"),
             _part("kernels vs CPU", f"import json, sys; json.dump({{'available': False, 'why': 'no bench_ondevice'}}, "
                                     f"open({str(absent)!r}, 'w')); sys.exit(4)", figures=absent)]
    assert gpu_check.gpu_check(out, budget_s=600, parts=parts, find_device=lambda: (DEVICE, "")) == 1
    text = (out / "gpu.md").read_text()
    assert "Device: NVIDIA H100 80GB HBM3 (x1, compute 9.0, 79.1 GiB), driver 580.159.04" in text
    assert "| gpu tests | passed |" in text and "| kernels vs CPU | not available |" in text
    assert "- not available: no bench_ondevice" in text
    saved = json.loads((out / "gpu.json").read_text())
    assert saved["device"] == DEVICE and [p["status"] for p in saved["parts"]] == ["passed", "not available"]
    assert "# GPU check" in capsys.readouterr().out
    assert gpu_check.gpu_check(out, budget_s=600, parts=parts[:1], find_device=lambda: (DEVICE, "")) == 0


def test_report_shows_each_parts_figures_against_its_target(tmp_path: Path) -> None:
    train = {"paths": {"bf16_autocast": True, "channels_last": True, "compile": True, "pinned_memory": True},
             "image_size": 224, "rows": [{"model": "ResNet-50", "synthetic_img_s": 3000.0, "fed_img_s": 2850.0,
                                          "fed_over_synthetic": 0.95},
                                         {"model": "ViT-Tiny/16", "synthetic_img_s": 10000.0, "fed_img_s": 9000.0,
                                          "fed_over_synthetic": 0.9}], "errors": []}
    onthefly = {"rows": [{"generator": "fractaldb", "images_per_s": 61000.0, "image_size": 362},
                         {"generator": "rcdb", "images_per_s": 15000.0, "image_size": 512},
                         {"generator": "linedb", "images_per_s": 80000.0},
                         {"generator": "exfractaldb", "error": "CudaAPIError: boom\nmore"}]}
    kernels = {"rows": [{"generator": "fractaldb", "mismatched_pixels": 0, "pixels": 1310720, "images": 10}]}
    train_otf = {"image_size": 224, "rows": [{"model": "ViT-Tiny/16", "onthefly_img_s": 9500.0}],
                 "errors": [{"model": "ResNet-50", "error": "RuntimeError: out of memory"}]}
    ddp = {"world_size": 1, "device": "cuda:0", "images_per_second": 2000.0, "seconds": 12.0, "epochs_done": 1}
    R = gpu_check.PartResult
    results = [R("kernels vs CPU", "passed", 20.0, 0, "", kernels),
               R("on-the-fly generation", "failed", 30.0, 1, "exfractaldb failed", onthefly),
               R("train: synthetic and shards", "passed", 140.0, 0, "", train),
               R("train: on the fly", "failed", 80.0, 1, "ResNet-50 failed", train_otf),
               R("DDP (torchrun)", "passed", 30.0, 0, "", ddp),
               R("render (EGL)", "timed out", 60.0, -9, "stopped after its time box of 60 s")]
    text = gpu_check.write_report(results, DEVICE, tmp_path, 360.0).read_text()
    for line in ["- fractaldb: 0 mismatched pixels of 1,310,720 (10 images)",
                 "- fractaldb @362 px: 61,000 images/s (target >= 50,000: met)",
                 "- rcdb @512 px: 15,000 images/s (target >= 20,000: NOT met)",
                 "- linedb: 80,000 images/s\n",
                 "- exfractaldb: FAILED CudaAPIError: boom",
                 "- ResNet-50 @224 px: synthetic 3,000 img/s, shard-fed 2,850 img/s (95%; target >= 90%)",
                 "- ViT-Tiny/16 @224 px on generated FractalDB: 9,500 img/s = 95% of synthetic 10,000 img/s "
                 "(target >= 90%)",
                 "- ResNet-50: FAILED RuntimeError: out of memory",
                 "- torchrun, 1 process: world size 1 on cuda:0, 1 epoch, 2,000 img/s, 12 s",
                 "| render (EGL) | timed out | 60 |", "```\nstopped after its time box of 60 s\n```"]:
        assert line in text, line
    assert text.count("```") == 6  # the three parts that did not pass show their output


def test_default_parts_fit_the_budget_order_and_run_the_gpu_tests_files() -> None:
    parts = gpu_check.default_parts(Path("/tmp/out"), python="PY")
    assert [p.name for p in parts] == ["gpu tests", "kernels vs CPU", "on-the-fly generation",
                                       "train: synthetic and shards", "train: on the fly", "DDP (torchrun)",
                                       "render (EGL)"]
    assert parts[1].command == ["PY", "benchmarks/gpu_parts.py", "kernels", "--json", "/tmp/out/gpu-kernels.json"]
    files = gpu_check.gpu_test_files()
    assert "tests/test_train.py" in files and "tests/test_gpu_check.py" not in files
    assert parts[0].command[-len(files):] == files
    assert sum(p.limit_s for p in parts) >= gpu_check.BUDGET_S  # the last part gets what is left


# ------------------------------------------------------------------ gpu_parts.py


def _fake_ondevice(monkeypatch, **functions) -> None:
    module = types.ModuleType("bench_ondevice")
    for name, fn in functions.items():
        setattr(module, name, fn)
    monkeypatch.setitem(sys.modules, "bench_ondevice", module)


def test_a_part_whose_module_is_missing_is_not_available(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "bench_ondevice", None)  # import fails as for a missing file
    path = tmp_path / "k.json"
    assert gpu_parts.main(["kernels", "--json", str(path), "--device", "cpu"]) == 4
    assert json.loads(path.read_text()) == {"available": False,
                                            "why": "benchmarks/bench_ondevice.py is not in this checkout"}
    assert capsys.readouterr().err == ("gpu-check kernels: not available: "
                                       "benchmarks/bench_ondevice.py is not in this checkout\n")
    _fake_ondevice(monkeypatch, kernel_mismatches=lambda generator, device: {})
    assert gpu_parts.main(["onthefly", "--json", str(path), "--device", "cpu"]) == 4
    assert json.loads(path.read_text())["why"] == "benchmarks/bench_ondevice.py has no ondevice_throughput()"


def test_a_module_that_fails_its_own_imports_is_a_failure_not_an_absence(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "bench_ondevice.py").write_text("import no_such_dependency_of_bench_ondevice\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "bench_ondevice", raising=False)
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_of_bench_ondevice"):
        gpu_parts.kernels(tmp_path / "k.json", "cpu")


def test_kernels_and_onthefly_call_each_generator_and_keep_going_after_one_fails(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def kernel_mismatches(generator, device):
        calls.append((generator, device))
        if generator == "rcdb":
            raise RuntimeError("launch failed")
        return {"mismatched_pixels": 0, "images": 4}

    def ondevice_throughput(generator, device, seconds):
        calls.append((generator, device, seconds))
        return {"images_per_s": 1000.0}

    _fake_ondevice(monkeypatch, kernel_mismatches=kernel_mismatches, ondevice_throughput=ondevice_throughput)
    path = tmp_path / "k.json"
    assert gpu_parts.kernels(path, "cpu") == 1
    assert calls == [(g, "cpu") for g in ("fractaldb", "exfractaldb", "rcdb", "linedb")]
    assert json.loads(path.read_text()) == {"available": True, "rows": [
        {"generator": "fractaldb", "mismatched_pixels": 0, "images": 4},
        {"generator": "exfractaldb", "mismatched_pixels": 0, "images": 4},
        {"generator": "rcdb", "error": "RuntimeError: launch failed"},
        {"generator": "linedb", "mismatched_pixels": 0, "images": 4}]}
    calls.clear()
    assert gpu_parts.onthefly(path, "cuda", seconds=2.5) == 0
    assert calls == [(g, "cuda", 2.5) for g in ("fractaldb", "exfractaldb", "rcdb", "linedb")]


def test_training_on_the_fly_without_the_gen_source_is_not_available(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(gpu_parts, "onthefly_source_missing", lambda: "no gen: source here")
    path = tmp_path / "t.json"
    assert gpu_parts.main(["train-onthefly", "--json", str(path)]) == 4
    assert json.loads(path.read_text()) == {"available": False, "why": "no gen: source here"}


@pytest.mark.slow
def test_ddp_part_runs_torchrun_on_cpu(tmp_path: Path) -> None:
    """The DDP part's commands (gen-fractal, torchrun -m fdsl.train.cli) on CPU, so a break shows
    before a GPU is lent."""
    pytest.importorskip("torch")
    path = tmp_path / "ddp.json"
    assert gpu_parts.ddp(path, "cpu", image_size=32) == 0
    figures = json.loads(path.read_text())
    assert figures["world_size"] == 1 and figures["device"] == "cpu" and figures["epochs_done"] == 1
    assert figures["ddp"] is True  # torchrun's one process still trains under DDP (gloo here)


@pytest.mark.slow
def test_train_benchmark_compiled_step_runs_on_cpu(tmp_path: Path) -> None:
    """The CPU half of the check's training part: bench_train's measure() through torch.compile
    (the flag gpu-check passes), on tiny shards, so a break shows up before a GPU is lent."""
    pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_train
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    import torch

    from fdsl.datasets.builder.build import build_dataset

    data = tmp_path / "shards"
    build_dataset(bench_train.Blobs(64, 40, classes=4), data, shard_size=64, backend="inline", workers=1)
    torch.set_num_threads(1)
    synthetic, fed = bench_train.measure(dict(model="resnet18", batch_size=8, image_size=32, compile=True),
                                         "fractaldb-resnet", data, torch.device("cpu"), steps=2, warmup=1,
                                         workers=1)
    assert synthetic > 0 and fed > 0
