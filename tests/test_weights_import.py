"""--finetune-from with a user's torchvision or timm ResNet-50 file: .pth and .safetensors, raw or
wrapped, with DDP prefixes, timm's layout and old torchvision files; a fresh head; one-line
refusals for anything else."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")

from helpers import assert_refused_in_one_line  # noqa: E402
from PIL import Image  # noqa: E402

from fdsl.errors import FdslError  # noqa: E402
from fdsl.train import cli  # noqa: E402
from fdsl.train.models import build_model  # noqa: E402
from fdsl.train.weights_import import load_starting_weights, read_state_dict  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def imagenet_resnet50() -> dict[str, torch.Tensor]:
    """A randomly initialised 1000-class ResNet-50 in torchvision's layout, as a user's file holds."""
    torch.manual_seed(123)
    model = build_model("resnet50", 1000)
    with torch.no_grad():  # non-default BN statistics, so that buffers are checked too
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.num_batches_tracked.fill_(7)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _check_loaded(model: torch.nn.Module, source: dict[str, torch.Tensor], fresh: dict) -> None:
    state = model.state_dict()
    for key, value in state.items():
        if key.startswith("fc."):
            assert value.shape[0] == 5 and torch.equal(value, fresh[key]), key  # the model's own head
        else:
            assert torch.equal(value, source[key]), key


def _fresh() -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(0)
    model = build_model("resnet50", 5)
    return model, {k: v.clone() for k, v in model.state_dict().items()}


def test_torchvision_pth_and_safetensors(imagenet_resnet50: dict, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.save(imagenet_resnet50, tmp_path / "resnet50.pth")
    save_file(imagenet_resnet50, tmp_path / "resnet50.safetensors")
    for name in ("resnet50.pth", "resnet50.safetensors"):
        model, fresh = _fresh()
        load_starting_weights(model, tmp_path / name)
        _check_loaded(model, imagenet_resnet50, fresh)


def test_wrapped_prefixed_and_timm_layouts(imagenet_resnet50: dict, tmp_path: Path) -> None:
    timm_checkpoint = {  # timm's train.py CheckpointSaver under DDP: args is a Namespace
        "epoch": 89, "arch": "resnet50", "version": 2, "args": argparse.Namespace(lr=0.1, model="resnet50"),
        "state_dict": {f"module.{k}": v for k, v in imagenet_resnet50.items()}}
    torch.save(timm_checkpoint, tmp_path / "model_best.pth.tar")
    torch.save({"model": imagenet_resnet50, "epoch": 3}, tmp_path / "deit_style.pth")
    # timm's newer classifier naming, and an old torchvision file without BN counters
    renamed = {("head." + k if k.startswith("fc.") else k): v for k, v in imagenet_resnet50.items()
               if not k.endswith("num_batches_tracked")}
    torch.save(renamed, tmp_path / "timm_head.pth")
    for name in ("model_best.pth.tar", "deit_style.pth"):
        model, fresh = _fresh()
        load_starting_weights(model, tmp_path / name)
        _check_loaded(model, imagenet_resnet50, fresh)
    model, fresh = _fresh()
    load_starting_weights(model, tmp_path / "timm_head.pth")
    counters = {k: fresh[k] for k in fresh if k.endswith("num_batches_tracked")}
    _check_loaded(model, dict(imagenet_resnet50, **counters), fresh)  # counters: the model's own
    assert set(read_state_dict(tmp_path / "model_best.pth.tar")) == {f"module.{k}" for k in imagenet_resnet50}


def test_refusals_are_one_line(imagenet_resnet50: dict, tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.save(build_model("resnet18", 1000).state_dict(), tmp_path / "resnet18.pth")
    torch.save({"epoch": 3, "note": "no weights"}, tmp_path / "empty.pth")
    torch.save({"state_dict": imagenet_resnet50, "data": Path("x")}, tmp_path / "pickled.pth")
    (tmp_path / "garbage.safetensors").write_bytes(b"not a safetensors file")
    model, _ = _fresh()
    cases = [("resnet18.pth", "does not fit this model's architecture"),
             ("empty.pth", "holds no model weights"),
             ("pickled.pth", "read with weights_only=True"),
             ("garbage.safetensors", "cannot read weights file"),
             ("missing.pth", "does not exist")]
    for name, message in cases:
        with pytest.raises(FdslError, match=message) as info:
            load_starting_weights(model, tmp_path / name)
        assert "\n" not in str(info.value)


def test_train_classifier_fine_tunes_from_a_torchvision_file(imagenet_resnet50: dict, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    from safetensors.torch import save_file

    save_file(imagenet_resnet50, tmp_path / "resnet50.safetensors")
    root = tmp_path / "folder"
    rng = np.random.default_rng(0)
    for c in range(3):
        (root / f"c{c}").mkdir(parents=True)
        for k in range(4):
            Image.fromarray(rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)).save(root / f"c{c}" / f"{k}.png")
    argv = ["--data", str(root), "--out", str(tmp_path / "run"), "--recipe", "finetune", "--epochs", "1",
            "--image-size", "32", "--batch-size", "8", "--workers", "0", "--val-fraction", "0",
            "--no-analysis", "--finetune-from", str(tmp_path / "resnet50.safetensors")]
    assert cli.main(argv) == 0
    capsys.readouterr()
    torch.save(build_model("resnet18", 10).state_dict(), tmp_path / "resnet18.pth")
    bad = [*argv[:3], str(tmp_path / "run2"), *argv[4:-1], str(tmp_path / "resnet18.pth")]
    assert_refused_in_one_line(capsys, cli.main, bad, "does not fit this model's architecture")
