"""The one on-the-fly data set (OnTheFlyDataset) and training on generated data (--data gen:FOLDER):
the set's own settings and images, fresh instances per epoch, torchvision-style transforms, rank
splits, and train-classifier / run-study on it without a GPU (the CPU kernels in loader workers)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from device_sets import make_set, stored_images
from PIL import Image

from fdsl.errors import FdslError
from fdsl.generators import OnTheFlyDataset, OnTheFlyFractalDataset
from fdsl.generators.onthefly import epoch_seed


@pytest.fixture(scope="module")
def fractal(tmp_path_factory):
    """A FractalDB set of 2 classes x 12 images at 32 px (shards) and its --params-only twin."""
    root = tmp_path_factory.mktemp("onthefly")
    return make_set("fractaldb", root), make_set("fractaldb", root, params_only=True)


def test_takes_the_sets_settings_and_gives_its_images(fractal):
    full, params_only = fractal
    stored = stored_images(full)
    ds = OnTheFlyDataset(params_only / "classes.npz")  # the folder, or its classes.npz (the old use)
    assert len(ds) == 24 and ds.image_shape == (1, 32, 32) and ds.classes == ["00000", "00001"]
    assert ds.labels.tolist() == ds.targets == [0] * 12 + [1] * 12
    assert ds.class_to_idx == {"00000": 0, "00001": 1} and ds.root == params_only and ds.seed == 3
    for i in (0, 5, 23, -1):
        image, label = ds[i]
        assert image.dtype == torch.uint8 and image.shape == (1, 32, 32) and label == ds.labels[i]
        np.testing.assert_array_equal(image[0].numpy(), stored[i])
    copy = pickle.loads(pickle.dumps(ds))
    assert torch.equal(copy[7][0], ds[7][0])
    with pytest.raises(IndexError):
        ds[24]
    assert OnTheFlyFractalDataset is OnTheFlyDataset  # the former name, one class


def test_transforms_get_a_pil_image_in_the_mode_asked(fractal):
    full, _ = fractal
    seen = []

    def transform(img: Image.Image) -> torch.Tensor:
        seen.append(img.mode)
        return torch.from_numpy(np.asarray(img, np.float32) / 255.0)

    rgb = OnTheFlyDataset(full, transform=transform, target_transform=lambda y: y + 100)
    image, label = rgb[13]
    assert seen == ["RGB"] and image.shape == (32, 32, 3) and label == 101
    grey = stored_images(full)[13]
    np.testing.assert_array_equal((image.numpy() * 255).round().astype(np.uint8), np.stack([grey] * 3, axis=-1))
    one, _ = OnTheFlyDataset(full, transform=transform, mode="L")[13]
    assert seen[-1] == "L" and one.shape == (32, 32)
    with pytest.raises(FdslError, match="mode must be"):
        OnTheFlyDataset(full, mode="CMYK")


def test_fresh_instances_draw_each_epoch_with_its_own_seed(fractal, tmp_path):
    full, _ = fractal
    ds = OnTheFlyDataset(full, fresh_instances=True)
    first = torch.stack([ds[i][0] for i in range(24)])
    np.testing.assert_array_equal(first[:, 0].numpy(), stored_images(full))  # epoch 0: the set
    ds.set_epoch(1)
    second = torch.stack([ds[i][0] for i in range(24)])
    from fdsl.generators.generate import generate

    other = tmp_path / "epoch1"  # the same classes drawn with epoch 1's seed
    generate("fractaldb", other, classes=2, instances=12, image_size=32, points=1200, seed=epoch_seed(3, 1),
             params_from=full / "classes.npz", workers=1, backend="inline")
    np.testing.assert_array_equal(second[:, 0].numpy(), stored_images(other))
    assert sum(not torch.equal(a, b) for a, b in zip(first, second, strict=True)) >= 12
    fixed = OnTheFlyDataset(full)
    fixed.set_epoch(1)
    assert torch.equal(fixed[5][0], first[5])


def test_dataloader_workers_fetch_whole_batches(fractal):
    full, _ = fractal
    ds = OnTheFlyDataset(full)
    loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=2)
    images = torch.cat([batch[0] for batch in loader])
    np.testing.assert_array_equal(images[:, 0].numpy(), stored_images(full))


def test_training_loaders_split_the_rows_over_ranks_and_keep_the_images(fractal):
    from fdsl.train.data import open_data

    full, params_only = fractal
    stored = stored_images(full)
    source = open_data(f"gen:{params_only}", 32, None)
    assert source.kind == "generated" and source.native_side == 32 and source.path == params_only
    rows = np.arange(24)
    seen = []
    for rank in (0, 1):
        loader = source.loader(rows, batch_size=4, shuffle=True, workers=1, seed=7, rank=rank, world_size=2,
                               device=torch.device("cpu"))
        loader.set_epoch(1)
        for images, labels in loader:
            for image, label in zip(images, labels, strict=True):
                match = [i for i in rows if np.array_equal(stored[i], image[0].numpy())]
                assert match and source.labels[match[0]] == label
                seen.append(match[0])
    assert sorted(seen) == list(range(24))  # each rank made only its own rows, together all of them
    fresh = source.loader(rows, batch_size=24, shuffle=False, workers=0, seed=7, fresh_instances=True)
    fresh.set_epoch(1)
    assert not np.array_equal(next(iter(fresh))[0][:, 0].numpy(), stored)


def test_train_classifier_on_generated_data_without_a_gpu(fractal, tmp_path):
    from fdsl.train.loop import train_classifier

    _, params_only = fractal
    torch.set_num_threads(1)
    common = dict(model="resnet18", epochs=2, batch_size=8, image_size=32, workers=1, val_fraction=0.25,
                  progress=False)
    summary = train_classifier(f"gen:{params_only}", tmp_path / "fixed", **common)
    assert summary["train_images"] == 18 and summary["val_images"] == 6
    config = (tmp_path / "fixed" / "config.yaml").read_text()
    assert f"data_resolved: gen:{params_only}" in config
    fresh = train_classifier(f"gen:{params_only}", tmp_path / "fresh", fresh_instances=True, **common)
    assert fresh["state_digest"] != summary["state_digest"]  # epoch 2 trained on other images
    again = train_classifier(f"gen:{params_only}", tmp_path / "fresh2", fresh_instances=True, **common)
    assert again["state_digest"] == fresh["state_digest"]  # and the same ones on every rerun


def test_fresh_instances_on_shards_are_refused_and_leave_nothing(fractal, tmp_path, capsys):
    from fdsl.train import cli as train_cli

    full, _ = fractal
    code = train_cli.main(["--data", str(full), "--out", str(tmp_path / "run"), "--fresh-instances",
                           "--epochs", "1", "--threads", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "--fresh-instances needs generated data" in err[-1]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_transfer_study_pretrains_on_generated_data(tmp_path):
    import study_presets

    from fdsl.studies.transfer import run_transfer_study

    folder = make_set("linedb", tmp_path, params_only=True)
    out = tmp_path / "study"
    run_transfer_study(out, pretrain={"lines": f"gen:{folder}"}, downstream={"digits": ""}, seeds=(0,),
                       pretrain_seeds=(0,), preset=study_presets.TRANSFER, threads=1)
    config = json.loads((out / "runs" / "pretrain-lines-seed0" / "config.json").read_text())
    assert config["data_resolved"] == f"gen:{folder}"
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["arm"] for r in rows} == {"scratch", "lines"}


def test_old_location_is_gone_and_datasets_does_not_import_generators():
    code = ("import sys, fdsl.datasets, fdsl.datasets.read.loader\n"
            "assert not hasattr(fdsl.datasets, 'OnTheFlyFractalDataset')\n"
            "assert not any(m.startswith('fdsl.generators') for m in sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
