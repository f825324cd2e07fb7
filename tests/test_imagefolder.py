"""ShardDataset and ShardLoader as drop-ins where code expects torchvision's ImageFolder: RGB by
default (grey sets too), ``samples`` / ``imgs`` / ``root``, and transforms that ShardLoader applies
instead of dropping. The stock pipelines are built by hand from PIL and torch ops with
torchvision's semantics (torchvision and timm cannot import here); the real ones run where they
can."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from fdsl.datasets import ShardDataset, ShardLoader  # noqa: E402
from fdsl.datasets.builder.build import build_dataset  # noqa: E402
from fdsl.errors import FdslError  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from toy_source import ToySource  # noqa: E402

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class RGBToy(ToySource):
    name = "toy-rgb"

    def image(self, item: int) -> np.ndarray:
        return np.random.default_rng([self.seed, item]).integers(0, 256, (self.size, self.size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def grey(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("grey") / "ds"
    build_dataset(ToySource(classes=3, per_class=6, size=40), out, shard_size=7, backend="inline")
    return out


# ----------------------------------------------------------- torchvision's ops, by hand


class Compose:
    def __init__(self, ops) -> None:
        self.ops = ops

    def __call__(self, x):
        for op in self.ops:
            x = op(x)
        return x


class RandomResizedCrop:
    """torchvision.transforms.RandomResizedCrop(size): scale (0.08, 1), ratio (3/4, 4/3), bilinear."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, img: Image.Image) -> Image.Image:
        width, height = img.size
        for _ in range(10):
            target = width * height * torch.empty(1).uniform_(0.08, 1.0).item()
            aspect = math.exp(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3)).item())
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (1,)))
                left = int(torch.randint(0, width - w + 1, (1,)))
                return img.resize((self.size, self.size), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))
        return img.resize((self.size, self.size), Image.Resampling.BILINEAR)


def resize_short(size: int):
    """torchvision.transforms.Resize(size, BICUBIC): the short side to ``size``."""
    def op(img: Image.Image) -> Image.Image:
        w, h = img.size
        scale = size / min(w, h)
        return img.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC)
    return op


def center_crop(size: int):
    def op(img: Image.Image) -> Image.Image:
        w, h = img.size
        left, top = round((w - size) / 2), round((h - size) / 2)
        return img.crop((left, top, left + size, top + size))
    return op


def to_tensor(img: Image.Image) -> torch.Tensor:
    """torchvision.transforms.ToTensor: HWC uint8 (or HW for mode L) -> float CHW in [0, 1]."""
    array = np.asarray(img)
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(array.transpose(2, 0, 1).copy()).float().div(255)


class Normalize:
    """torchvision.transforms.Normalize: in place, ``tensor.sub_(mean).div_(std)``."""

    def __init__(self, mean, std) -> None:
        self.mean, self.std = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.sub_(self.mean).div_(self.std)


def train_pipeline(size: int = 56) -> Compose:
    """T.Compose([RandomResizedCrop(56), ToTensor(), Normalize(imagenet_mean, imagenet_std)])"""
    return Compose([RandomResizedCrop(size), to_tensor, Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def timm_eval_pipeline(size: int = 64) -> Compose:
    """timm.data.create_transform(64) (eval): Resize(floor(64 / 0.875)), CenterCrop, ToTensor, Normalize."""
    return Compose([resize_short(math.floor(size / 0.875)), center_crop(size), to_tensor,
                    Normalize(IMAGENET_MEAN, IMAGENET_STD)])


# ----------------------------------------------------------- mode


def test_stock_pipelines_run_on_a_grey_set(grey: Path) -> None:
    torch.manual_seed(0)
    ds = ShardDataset(grey, transform=train_pipeline())
    image, label = ds[4]
    assert image.shape == (3, 56, 56) and image.dtype == torch.float32 and label == ds.targets[4]
    images, labels = next(iter(torch.utils.data.DataLoader(ds, batch_size=5, shuffle=True)))
    assert images.shape == (5, 3, 56, 56) and labels.dtype == torch.int64
    ds = ShardDataset(grey, transform=timm_eval_pipeline())
    image, _ = ds[0]
    assert image.shape == (3, 64, 64)
    # grey in RGB: three equal channels, normalised each with its own mean and std
    pixels = image * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]
    torch.testing.assert_close(pixels[0], pixels[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(pixels[0], pixels[2], atol=1e-5, rtol=0)


def test_mode_l_keeps_one_channel_and_fails_the_rgb_normalize_as_torchvision_does(grey: Path) -> None:
    ds = ShardDataset(grey, transform=train_pipeline(), mode="L")
    with pytest.raises(RuntimeError, match=r"output with shape \[1, 56, 56\] doesn't match the broadcast shape \[3, 56, 56\]"):
        ds[0]
    plain = ShardDataset(grey, mode="L")
    assert plain[0][0].shape == (1, 40, 40) and plain.image_shape == (1, 40, 40)


def test_mode_gives_the_pixels_pil_convert_gives(grey: Path, tmp_path: Path) -> None:
    stored = ShardDataset(grey, mode=None)
    rgb = ShardDataset(grey)
    assert rgb.image_shape == (3, 40, 40) and stored.image_shape == (1, 40, 40)
    for i in (0, 5, 17):
        np.testing.assert_array_equal(rgb[i][0].numpy(), np.repeat(stored[i][0].numpy(), 3, axis=0))
    seen = []
    ShardDataset(grey, transform=seen.append)[3]
    assert seen[0].mode == "RGB" and seen[0].size == (40, 40)
    colour = tmp_path / "rgb"
    build_dataset(RGBToy(classes=2, per_class=3, size=9), colour, shard_size=4, backend="inline")
    as_stored = ShardDataset(colour, mode=None)[2][0].numpy()
    luma = np.asarray(Image.fromarray(as_stored.transpose(1, 2, 0)).convert("L"))
    np.testing.assert_array_equal(ShardDataset(colour, mode="L")[2][0].numpy()[0], luma)
    np.testing.assert_array_equal(ShardDataset(colour)[2][0].numpy(), as_stored)
    with pytest.raises(FdslError, match="unknown mode 'CMYK'"):
        ShardDataset(colour, mode="CMYK")


# ----------------------------------------------------------- samples, imgs, root


def test_samples_imgs_and_root(grey: Path, tmp_path: Path) -> None:
    ds = ShardDataset(grey)
    assert ds.root == str(grey)
    assert ds.samples == ds.imgs
    assert [label for _, label in ds.samples] == ds.targets
    # shards of 7: row 9 is row 2 of the second shard
    assert ds.samples[9] == (f"{grey}/shard-00001.h5:2", ds.targets[9])
    assert ds.subset([9, 0]).samples == [ds.samples[9], ds.samples[0]]
    png = tmp_path / "png"
    build_dataset(ToySource(classes=3, per_class=6, size=40), png, shard_size=7, backend="inline", storage="png")
    tree = ShardDataset(png, mode=None)
    assert tree.samples[9] == (f"{png}/00001/00001_0003.png", 1)
    for path, label in tree.samples[::4]:
        k = tree.samples.index((path, label))
        np.testing.assert_array_equal(np.asarray(Image.open(path)), tree[k][0].numpy()[0])


# ----------------------------------------------------------- ShardLoader applies the transforms


@pytest.mark.parametrize("workers,num", [("thread", 0), ("thread", 2), ("process", 2)])
def test_shard_loader_applies_the_data_sets_transforms(grey: Path, workers: str, num: int) -> None:
    ds = ShardDataset(grey, transform=timm_eval_pipeline(), target_transform=lambda y: y + 100)
    loader = ShardLoader(ds, batch_size=4, shuffle=False, num_workers=num, workers=workers)
    batches = list(loader)
    images = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    assert labels.tolist() == [t + 100 for t in ds.targets]
    torch.testing.assert_close(images, torch.stack([ds[i][0] for i in range(len(ds))]), atol=0, rtol=0)


def test_shard_loader_target_transform_alone_and_raw_batches_stay_stored(grey: Path) -> None:
    labels_only = ShardLoader(ShardDataset(grey, target_transform=lambda y: y + 100), batch_size=6, shuffle=False,
                              num_workers=0)
    images, labels = next(iter(labels_only))
    assert labels.tolist() == [t + 100 for t in ShardDataset(grey).targets[:6]]
    assert images.shape == (6, 3, 40, 40)  # ds[i] with no transform: the data set's mode
    raw, _ = next(iter(ShardLoader(ShardDataset(grey), batch_size=6, shuffle=False, num_workers=0)))
    assert raw.shape == (6, 1, 40, 40) and raw.dtype == torch.uint8  # the fast path: as stored
    np.testing.assert_array_equal(images.numpy(), np.repeat(raw.numpy(), 3, axis=1))


def test_real_torchvision_and_timm_pipelines(grey: Path) -> None:
    transforms = pytest.importorskip("torchvision.transforms")
    timm_data = pytest.importorskip("timm.data")
    pipeline = transforms.Compose([transforms.RandomResizedCrop(56), transforms.ToTensor(),
                                   transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    assert ShardDataset(grey, transform=pipeline)[0][0].shape == (3, 56, 56)
    assert ShardDataset(grey, transform=timm_data.create_transform(64))[0][0].shape == (3, 64, 64)
    assert ShardDataset(grey, transform=timm_data.create_transform(64, is_training=True))[0][0].shape == (3, 64, 64)
