"""The CUDA kernels, run in numba's CUDA simulator, draw the CPU kernels' images byte for byte.

Marked ``cudasim``: a normal session runs them in one child pytest with NUMBA_ENABLE_CUDASIM=1
(tests/cudasim.py). The simulator runs each kernel's thread mapping, per-thread scratch and
output layout as Python and the per-image bodies as the same compiled code the CPU kernels use;
that the CUDA build of those bodies rounds as the CPU does is checked on their PTX
(tests/test_cuda_kernels.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from cuda_cases import (
    cpu_images,
    exfractaldb_case,
    fractaldb_case,
    linedb_case,
    mismatched_pixels,
    rcdb_case,
)

pytestmark = pytest.mark.cudasim


def _plan(source):
    from fdsl.generators.cuda.plans import make_plan

    return make_plan(source)


@pytest.mark.parametrize("color", ["gray", "color"])
def test_fractaldb_kernel_draws_the_cpu_images(tmp_path, color):
    source, items = fractaldb_case(tmp_path, color)
    gpu = _plan(source).render(items, source.seed)
    assert str(gpu.device) == "cpu"  # the simulator hands back a CPU tensor
    cpu = cpu_images(source, items)
    assert gpu.numpy().shape == cpu.shape == ((36, 32, 32, 3) if color == "color" else (36, 32, 32))
    assert mismatched_pixels(gpu.numpy(), cpu) == 0
    # every flip and every class drew something; the NaN orbit kept only its first points
    assert all(img.any() for img in cpu)
    diverging = source.render(200, 201).metadata["points_drawn"][0]
    assert 0 < diverging < 1500 - 100


def test_fractaldb_kernel_takes_any_seed(tmp_path):
    source, items = fractaldb_case(tmp_path)
    other = np.asarray(_plan(source).render(items[:6], 77))
    from fdsl.generators import fractaldb

    reseeded = fractaldb.prepare_source(classes=3, instances=100, seed=77, image_size=32, points=1500,
                                        params_from=tmp_path / "classes.npz", workers=1, backend="inline")()
    cpu = cpu_images(reseeded, items[:6])
    assert mismatched_pixels(other, cpu) == 0
    assert mismatched_pixels(other, np.asarray(_plan(source).render(items[:6], 5))) > 0


def test_exfractaldb_kernel_draws_the_cpu_images_with_spare_rows():
    source, items = exfractaldb_case()
    plan = _plan(source)
    labels, j = np.divmod(items, source.per_class)
    variants = plan.variants(labels, j // source.views, np.uint64(source.seed))
    # class 1's slots diverge; the spares are the rows that scale a by 0.8, 0.7, 0.6
    assert dict(zip(items.tolist(), variants.tolist(), strict=True))[12] == 25
    assert sorted(set(variants[labels == 1].tolist())) == [25, 49, 73]
    assert sorted(set(variants[labels == 0].tolist())) == [0, 1, 2]
    assert source.substitutes(1) == {0: 25, 1: 49, 2: 73}  # the CPU source's choice
    gpu = plan.render(items, source.seed).numpy()
    cpu = cpu_images(source, items)
    assert mismatched_pixels(gpu, cpu) == 0
    assert all((img == 255).any() for img in cpu)
    assert all((img == 255).sum() > 10 for img in cpu[labels == 0])


@pytest.mark.parametrize(("case", "arg"), [(rcdb_case, 0.0), (rcdb_case, 0.3), (linedb_case, False),
                                           (linedb_case, True)], ids=["rcdb", "rcdb-broken", "linedb", "linedb-shuffled"])
def test_rcdb_and_linedb_kernels_draw_the_cpu_images(case, arg):
    source, items = case(arg)
    gpu = _plan(source).render(items, source.seed).numpy()
    cpu = cpu_images(source, items)
    assert mismatched_pixels(gpu, cpu) == 0
    assert all((img < 255).any() for img in cpu)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    from device_sets import SETS, make_set

    root = tmp_path_factory.mktemp("sets")
    return {db: make_set(db, root, params_only=db != "linedb") for db in SETS}


@pytest.mark.parametrize("db", ["fractaldb", "exfractaldb", "rcdb", "linedb"])
def test_generate_on_cuda_equals_gen_fractal_shards(sets, tmp_path, db):
    """generate(folder, indices, "cuda") in the simulator gives gen-fractal's shards, from a full
    folder (linedb) or a --params-only one (the others; the full set is made to compare)."""
    from device_sets import make_set, stored_images

    from fdsl.generators.device import generate

    stored = stored_images(sets[db] if db == "linedb" else make_set(db, tmp_path))
    order = np.random.default_rng(3).permutation(len(stored))[:10]
    made = generate(sets[db], order, "cuda")
    assert made.device.type == "cpu" and made.dtype.is_floating_point is False
    assert mismatched_pixels(made.numpy(), stored[order]) == 0


def test_training_batches_made_on_cuda_equal_the_cpu_workers(sets):
    """train-classifier's loader over gen:FOLDER on a CUDA device makes whole batches with the
    kernels (here in the simulator), the same batches CPU workers make, in every epoch."""
    import torch

    from fdsl.train.data import open_data

    source = open_data(f"gen:{sets['rcdb']}", 40, None)
    rows = np.arange(8)
    common = dict(batch_size=3, shuffle=True, seed=2, fresh_instances=True)
    on_device = source.loader(rows, workers=0, device=torch.device("cuda"), **common)
    in_workers = source.loader(rows, workers=1, device=torch.device("cpu"), **common)
    assert on_device.dataset.device.type == "cuda" and in_workers.dataset.device.type == "cpu"
    for epoch in (0, 1):
        on_device.set_epoch(epoch)
        in_workers.set_epoch(epoch)
        made, read = list(on_device), list(in_workers)
        assert len(made) == len(read) == 3
        for (a, la), (b, lb) in zip(made, read, strict=True):
            assert a.shape == b.shape and a.shape[1] == 1 and torch.equal(la, lb)
            assert mismatched_pixels(a.numpy(), b.numpy()) == 0
