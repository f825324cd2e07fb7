"""`make gpu-check` (benchmarks/gpu_check.py): its no-GPU answer and its time-boxed part runner."""

from __future__ import annotations

import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import HANG_GUARD

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpu_check = _load()


def _has_cuda() -> bool:
    torch = pytest.importorskip("torch")
    return torch.cuda.is_available()


def test_without_cuda_it_says_so_and_exits_non_zero_before_any_work(tmp_path: Path) -> None:
    if _has_cuda():
        pytest.skip("a CUDA device is present: the no-GPU answer cannot be observed here")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == gpu_check.EXIT_NO_CUDA == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check: no CUDA device (")
    assert "CPU-only build" in lines[0] or "sees no device" in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no report: nothing was measured, no part was started


def test_make_target_runs_the_script() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "\ngpu-check: setup\n" in makefile
    rule = makefile.split("\ngpu-check: setup\n", 1)[1].split("\n\n", 1)[0]
    assert "benchmarks/gpu_check.py" in rule and "PYOPENGL_PLATFORM=egl" in rule


def _part(name: str, code: str, limit: float, figures: Path | None = None):
    return gpu_check.Part(name, [sys.executable, "-c", code], limit, {"GPU_CHECK_TEST": "1"}, figures)


def test_parts_are_time_boxed_and_a_failure_does_not_stop_the_others(tmp_path: Path, monkeypatch) -> None:
    figures = tmp_path / "fig.json"
    ready = tmp_path / "grandchild"
    os.mkfifo(ready)
    # The slow part never ends by itself and starts a grandchild that never ends either: the time
    # box must kill the whole process group, not only the direct child.
    slow = ("import os, signal, subprocess, sys; "
            "child = subprocess.Popen([sys.executable, '-c', 'import signal; signal.pause()']); "
            f"os.write(os.open({str(ready)!r}, os.O_WRONLY), (str(child.pid) + '\\n').encode()); signal.pause()")
    grandchild: list[int] = []

    class Popen(subprocess.Popen):
        """The slow part's time box starts once its grandchild runs, however slow the machine."""

        def communicate(self, *args, **kwargs):
            if "signal.pause()" in " ".join(self.args) and not grandchild:
                grandchild.append(_read_pid(ready, self.pid))
            return super().communicate(*args, **kwargs)

    monkeypatch.setattr(gpu_check.subprocess, "Popen", Popen)
    parts = [
        _part("ok", f"import json, os; json.dump({{'v': 7, 'env': os.environ['GPU_CHECK_TEST']}}, open({str(figures)!r}, 'w'))",
              30, figures),
        _part("broken", "import sys; print('something broke'); sys.exit(5)", 30),
        _part("slow", slow, 1.5),
        _part("late", "print('never')", 30),
    ]
    results = gpu_check.run_parts(parts, budget_s=HANG_GUARD, min_part_s=0.5)
    by_name = {r.name: r for r in results}
    assert [r.name for r in results] == ["ok", "broken", "slow", "late"]
    assert by_name["ok"].status == "passed" and by_name["ok"].figures == {"v": 7, "env": "1"}
    assert by_name["broken"].status == "failed" and by_name["broken"].returncode == 5
    assert "something broke" in by_name["broken"].detail
    assert by_name["slow"].status == "timed out" and by_name["slow"].seconds >= 1.5
    assert "time box of 2 s" in by_name["slow"].detail
    assert by_name["late"].status == "passed"  # the part after a timed-out one still runs
    try:
        pidfd = os.pidfd_open(grandchild[0])
    except ProcessLookupError:
        return  # gone and reaped already
    try:
        survived = not select.select([pidfd], [], [], HANG_GUARD)[0]
        if survived:
            os.kill(grandchild[0], signal.SIGKILL)
    finally:
        os.close(pidfd)
    assert not survived, "the grandchild outlived the time box"


def _read_pid(fifo: Path, writer: int) -> int:
    """The pid that process ``writer`` writes into ``fifo`` (it must not die first)."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    pidfd = os.pidfd_open(writer)
    try:
        text = b""
        while not text.endswith(b"\n"):
            ready = select.select([fd, pidfd], [], [], HANG_GUARD)[0]
            assert fd in ready, "the slow part ended or hung before starting its grandchild"
            chunk = os.read(fd, 64)
            text += chunk if chunk else b"\n"
        return int(text)
    finally:
        os.close(fd)
        os.close(pidfd)


def test_a_part_whose_figures_fail_its_check_is_failed(tmp_path: Path) -> None:
    figures = tmp_path / "render.json"
    code = f"import json; json.dump({{'on_nvidia': False, 'gl_renderer': 'llvmpipe'}}, open({str(figures)!r}, 'w'))"
    part = gpu_check.Part("render", [sys.executable, "-c", code], 30, {}, figures, gpu_check._nvidia_egl)
    result = gpu_check.run_parts([part], budget_s=40, min_part_s=0.5)[0]
    assert result.status == "failed" and result.returncode == 0
    assert "llvmpipe, not NVIDIA's driver" in result.detail


def test_a_part_is_skipped_when_the_budget_is_spent() -> None:
    results = gpu_check.run_parts([_part("late", "print('never')", 30)], budget_s=0.2, min_part_s=0.5)
    assert results[0].status == "skipped" and "budget left" in results[0].detail
    assert results[0].returncode is None


def test_report_names_the_device_and_each_part(tmp_path: Path) -> None:
    device = {"name": "NVIDIA H100 80GB HBM3", "count": 1, "capability": "9.0", "memory_gib": 79.1,
              "torch": "2.13.0+cu126", "cuda": "12.6", "driver": "560.35"}
    train = {"paths": {"bf16_autocast": True, "channels_last": True, "compile": True, "pinned_memory": True},
             "image_size": 224, "rows": [{"model": "ResNet-50", "synthetic_img_s": 3000.0, "fed_img_s": 2850.0,
                                          "fed_over_synthetic": 0.95}],
             "errors": [{"model": "ViT-Tiny/16", "error": "RuntimeError: boom\nmore"}]}
    results = [gpu_check.PartResult("gpu tests", "passed", 40.0, 0, "1 passed"),
               gpu_check.PartResult("render (EGL)", "timed out", 110.0, -9, "stopped after its time box of 110 s"),
               gpu_check.PartResult("train throughput", "failed", 200.0, 1, "ViT failed", train)]
    md = gpu_check.write_report(results, device, tmp_path, 350.0)
    text = md.read_text()
    assert "Device: NVIDIA H100 80GB HBM3" in text and "driver 560.35" in text
    assert "| render (EGL) | timed out | 110 |" in text
    assert "ResNet-50 @224 px: synthetic 3,000 img/s, shard-fed 2,850 img/s (95%" in text
    assert "ViT-Tiny/16: FAILED RuntimeError: boom" in text
    assert "bf16_autocast, channels_last, compile, pinned_memory" in text
    saved = json.loads((tmp_path / "gpu.json").read_text())
    assert saved["device"] == device and [p["status"] for p in saved["parts"]] == ["passed", "timed out", "failed"]


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

    from fdsl.datasets.build import build_dataset

    data = tmp_path / "shards"
    build_dataset(bench_train.Blobs(64, 40, classes=4), data, shard_size=64, backend="inline", workers=1)
    torch.set_num_threads(1)
    synthetic, fed = bench_train.measure(dict(model="resnet18", batch_size=8, image_size=32, compile=True),
                                         "fractaldb-resnet", data, torch.device("cpu"), steps=2, warmup=1,
                                         workers=1)
    assert synthetic > 0 and fed > 0
