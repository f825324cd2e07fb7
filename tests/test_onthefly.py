"""OnTheFlyFractalDataset: FractalDB rendered in DataLoader workers, equal to what gen-fractal stores."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fdsl.errors import FdslError
from fdsl.generators import OnTheFlyFractalDataset, fractaldb


def _classes_npz(path: Path) -> Path:
    """Two hand-made contractive FractalDB classes (Sierpinski-like, and a 3-map spiral)."""
    sierpinski = [[0.5, 0, 0, 0.5, 0, 0], [0.5, 0, 0, 0.5, 0.5, 0], [0.5, 0, 0, 0.5, 0.25, 0.5]]
    spiral = [[0.8, -0.3, 0.3, 0.8, 0.1, 0], [0.3, 0, 0, 0.3, 0.6, 0.2], [-0.2, 0.1, 0.3, 0.4, 0, 0.7]]
    maps = np.array(sierpinski + spiral, np.float64)
    dets = np.abs(maps[:, 0] * maps[:, 3] - maps[:, 1] * maps[:, 2])
    probs = np.concatenate([dets[:3] / dets[:3].sum(), dets[3:] / dets[3:].sum()])
    np.savez(path, maps=maps, probs=probs, offsets=np.array([0, 3, 6], np.int64))
    return path


def test_on_the_fly_is_deterministic_per_epoch_and_index(tmp_path):
    params = _classes_npz(tmp_path / "classes.npz")
    settings = dict(instances=8, image_size=32, points=3000, seed=4)
    ds = OnTheFlyFractalDataset(params, **settings)
    assert len(ds) == 16 and ds.classes == ["00000", "00001"]
    first = [ds[i] for i in range(len(ds))]
    assert all(img.shape == (1, 32, 32) and img.dtype == torch.uint8 for img, _ in first)
    assert [label for _, label in first] == ds.labels.tolist() == [0] * 8 + [1] * 8
    # epoch 0 is what gen-fractal stores with the same seed
    stored = fractaldb.make_source(classes=2, instances=8, seed=4, image_size=32, points=3000,
                                   params_from=params, workers=1, backend="inline").render(0, 16)
    np.testing.assert_array_equal(torch.stack([img for img, _ in first]).numpy()[:, 0], stored.images)
    # any order, a fresh copy, a pickled copy: the same image for (epoch, index)
    other = pickle.loads(pickle.dumps(OnTheFlyFractalDataset(params, **settings)))
    for i in (13, 2, 7):
        assert torch.equal(other[i][0], first[i][0])
    ds.set_epoch(1)
    second = [ds[i][0] for i in range(len(ds))]
    assert sum(not torch.equal(a, b[0]) for a, b in zip(second, first, strict=True)) >= 8
    other.set_epoch(1)
    assert torch.equal(other[5][0], second[5])
    ds.set_epoch(0)
    assert torch.equal(ds[9][0], first[9][0])
    with pytest.raises(IndexError):
        ds[16]


def test_labels_come_from_the_source(tmp_path):
    params = _classes_npz(tmp_path / "classes.npz")
    ds = OnTheFlyFractalDataset(params, instances=3, image_size=16, points=500, classes=1)
    assert ds.labels.tolist() == [0, 0, 0] and ds.classes == ["00000"]
    ds = OnTheFlyFractalDataset(params, instances=5, image_size=16, points=500)
    assert ds.labels.tolist() == [0] * 5 + [1] * 5
    assert [ds[i][1] for i in (0, 4, 5, 9)] == [0, 0, 1, 1]


def test_bad_settings_fail_in_the_caller(tmp_path):
    with pytest.raises(FdslError, match="no such class parameters file"):
        OnTheFlyFractalDataset(tmp_path / "missing.npz")
    params = _classes_npz(tmp_path / "classes.npz")
    with pytest.raises(FdslError, match="seed must be >= 0"):
        OnTheFlyFractalDataset(params, seed=-1)


def test_old_location_is_gone_and_datasets_does_not_import_generators():
    code = ("import sys, fdsl.datasets, fdsl.datasets.read.loader\n"
            "assert not hasattr(fdsl.datasets, 'OnTheFlyFractalDataset')\n"
            "assert not any(m.startswith('fdsl.generators') for m in sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
