"""On a CUDA device (``pytest -m gpu``; skipped without one): the kernels draw gen-fractal's bytes
there too, into torch CUDA tensors on torch's current stream, and training reads them on the device.
The same checks run in numba's CUDA simulator everywhere (tests/test_cuda_sim.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cuda_cases import cpu_images, every_case, linedb_case, mismatched_pixels


def _no_device() -> str | None:
    from numba import config

    from fdsl.generators.device import cuda_problem

    return "the CUDA simulator is not a device" if config.ENABLE_CUDASIM else cuda_problem()


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_no_device() is not None, reason="needs a CUDA device")]


def test_kernels_draw_the_cpu_images_on_the_device(tmp_path):
    from fdsl.generators.cuda.plans import make_plan

    for source, items in every_case(tmp_path):
        made = make_plan(source).render(items, source.seed)
        assert made.is_cuda and made.dtype == torch.uint8
        assert mismatched_pixels(made.cpu().numpy(), cpu_images(source, items)) == 0, source.name


def test_images_queue_on_torchs_current_stream(tmp_path):
    from fdsl.generators.cuda.plans import make_plan

    source, items = linedb_case(False)
    plan = make_plan(source)
    expected = cpu_images(source, items)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        made = plan.render(items, source.seed)  # launched on the side stream: torch's current one
        side.synchronize()
    assert mismatched_pixels(made.cpu().numpy(), expected) == 0


def test_training_on_generated_data_runs_on_the_device(tmp_path):
    from device_sets import make_set

    from fdsl.train.loop import train_classifier

    folder = make_set("rcdb", tmp_path, params_only=True)
    summary = train_classifier(f"gen:{folder}", tmp_path / "run", model="resnet18", epochs=1, batch_size=4,
                               image_size=32, val_fraction=0.25, device="cuda", fresh_instances=True,
                               progress=False)
    assert summary["device"].startswith("cuda") and np.isfinite(summary["top1"])
