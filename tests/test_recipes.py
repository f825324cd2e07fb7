"""The FDSL ViT recipes as the CVPR 2022 scripts run them: RandAugment rand-m9-mstd0.5-inc1 (timm's
magnitude rule; PIL's ops), random erasing in pixel mode, DeiT's repeated-augmentation order,
timm's per-iteration cosine schedule, and a resume-exact run of the whole recipe."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")

from PIL import Image, ImageEnhance, ImageOps  # noqa: E402

from fdsl.errors import FdslError  # noqa: E402
from fdsl.train import randaugment as ra  # noqa: E402
from fdsl.train.erasing import RandomErasing, erase_boxes  # noqa: E402
from fdsl.train.recipes import RECIPES, resolve_config  # noqa: E402
from fdsl.train.repeat_sampler import repeated_positions, selected_count  # noqa: E402
from fdsl.train.scheduler import LRSchedule  # noqa: E402

torch.set_num_threads(1)
IMAGENET_FILL = (124, 116, 104)  # round(255 * ImageNet mean): timm's img_mean fill colour


# ---------------------------------------------------------------- the recipes


def test_vit_recipes_carry_the_scripts_settings() -> None:
    for name, epochs, batch in (("fdsl-vit", 300, 256), ("fdsl-vit-21k", 90, 8192)):
        c = resolve_config(name)
        assert (c.epochs, c.batch_size) == (epochs, batch)
        assert (c.optimizer, c.lr, c.weight_decay, c.schedule, c.warmup_epochs, c.warmup_lr,
                c.min_lr) == ("adamw", 1e-3, 0.05, "cosine_iter", 5, 1e-4, 1e-5)
        assert (c.label_smoothing, c.drop_path, c.auto_augment, c.aug_repeats) == (
            0.1, 0.1, "rand-m9-mstd0.5-inc1", 3)
        assert (c.mixup, c.cutmix, c.random_erasing, c.erasing_mode) == (0.8, 1.0, 0.25, "pixel")
        assert (c.interpolation, c.hflip, c.train_crop, c.rrc_scale) == ("bicubic", 0.0,
                                                                          "random_resized", [0.08, 1.0])
        assert c.mean == [0.485, 0.456, 0.406] and c.std == [0.229, 0.224, 0.225]  # deit's cfg
    assert set(RECIPES) >= {"fdsl-vit", "fdsl-vit-21k"}


@pytest.mark.parametrize("bad, message", [
    ({"auto_augment": "v0"}, "only RandAugment"),
    ({"auto_augment": "rand-x5"}, "unknown section 'x5'"),
    ({"auto_augment": "rand-m9.5"}, "m takes an integer"),
    ({"aug_repeats": 1}, "aug_repeats must be 0"),
    ({"interpolation": "lanczos"}, "interpolation must be one of"),
    ({"erasing_mode": "rand"}, "erasing_mode must be one of"),
])
def test_bad_recipe_fields_are_one_line_errors(bad: dict, message: str) -> None:
    with pytest.raises(FdslError, match=message):
        resolve_config("fdsl-vit", sets=bad)


# ---------------------------------------------------------------- RandAugment: policy and levels


def test_policy_string_reads_as_timm_does() -> None:
    p = ra.parse_policy("rand-m9-mstd0.5-inc1")
    assert (p.magnitude, p.num_layers, p.magnitude_std, p.magnitude_max, p.increasing) == (
        9, 2, 0.5, 10.0, True)
    assert p.ops == ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                     "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
                     "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
                     "TranslateXRel", "TranslateYRel")
    q = ra.parse_policy("rand-n3-m7-mstd101-mmax12")
    assert (q.magnitude, q.num_layers, q.magnitude_std, q.magnitude_max, q.increasing) == (
        7, 3, math.inf, 12, False)
    assert q.ops[4:6] == ("Posterize", "Solarize")
    assert ra.parse_policy("rand").magnitude == 10


@pytest.mark.parametrize("name, magnitude, sign, expected", [
    # m9: level 0.9 of the range
    ("Rotate", 9.0, 1.0, 27.0), ("Rotate", 9.0, -1.0, -27.0),
    ("ShearX", 9.0, 1.0, 0.27), ("TranslateYRel", 9.0, -1.0, -0.405),
    ("PosterizeIncreasing", 9.0, 1.0, 1.0),  # 4 - int(3.6): keep 1 bit
    ("PosterizeIncreasing", 10.0, 1.0, 0.0), ("Posterize", 9.0, 1.0, 3.0),
    ("SolarizeIncreasing", 9.0, 1.0, 26.0),  # 256 - int(230.4)
    ("SolarizeIncreasing", 0.0, 1.0, 256.0), ("Solarize", 9.0, 1.0, 230.0),
    ("SolarizeAdd", 9.0, 1.0, 99.0),
    ("ColorIncreasing", 9.0, 1.0, 1.81), ("SharpnessIncreasing", 9.0, -1.0, 0.19),
    ("Contrast", 9.0, -1.0, 1.72),  # non-increasing: 0.9 * 1.8 + 0.1, no sign
    ("BrightnessIncreasing", 12.0, -1.0, 0.1),  # mmax > 10: clipped at 0.1
])
def test_magnitude_rule(name: str, magnitude: float, sign: float, expected: float) -> None:
    arg = ra.level_argument(name, torch.tensor([magnitude], dtype=torch.float64), torch.tensor([sign]))
    assert float(arg[0]) == pytest.approx(expected, abs=1e-12)


def test_magnitudes_are_normal_around_m_and_clipped() -> None:
    torch.manual_seed(0)
    m = ra.DeviceRandAugment("rand-m9-mstd0.5-inc1", [0.5]).sample_magnitudes(200_000, torch.device("cpu"))
    assert float(m.min()) >= 0 and float(m.max()) == 10.0
    # N(9, 0.5) clipped at 10: P(m = 10) = P(Z >= 2) = 0.02275; mean of the clipped normal 8.9957
    assert float((m == 10).double().mean()) == pytest.approx(0.02275, abs=0.002)
    assert float(m.mean()) == pytest.approx(8.9957, abs=0.005)
    fixed = ra.DeviceRandAugment("rand-m9", [0.5]).sample_magnitudes(5, torch.device("cpu"))
    assert fixed.tolist() == [9.0] * 5


# ---------------------------------------------------------------- RandAugment: the ops against PIL


def _images() -> np.ndarray:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 23, 31, 3), dtype=np.uint8)
    images[1] = images[1] // 4 + 60  # a narrow range for autocontrast and equalize
    images[2, ..., 1] = images[2, ..., 0]  # correlated channels
    return images


def _ours(fn, images: np.ndarray, arg: float) -> np.ndarray:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    out = fn(x, torch.full((len(images),), float(arg), dtype=torch.float64))
    return out.permute(0, 2, 3, 1).numpy().astype(int)


def _pil(fn, images: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(fn(Image.fromarray(im))) for im in images]).astype(int)


def _solarize_add(image: Image.Image, add: int) -> Image.Image:  # timm's solarize_add
    return image.point([min(255, i + add) if i < 128 else i for i in range(256)] * 3)


@pytest.mark.parametrize("op, arg, reference", [
    (ra.auto_contrast, 0, ImageOps.autocontrast),
    (ra.equalize, 0, ImageOps.equalize),
    (ra.invert, 0, ImageOps.invert),
    (ra.posterize, 1, lambda im: ImageOps.posterize(im, 1)),
    (ra.posterize, 3, lambda im: ImageOps.posterize(im, 3)),
    (ra.solarize, 26, lambda im: ImageOps.solarize(im, 26)),
    (ra.solarize_add, 99, lambda im: _solarize_add(im, 99)),
    (ra.color, 1.81, lambda im: ImageEnhance.Color(im).enhance(1.81)),
    (ra.color, 0.19, lambda im: ImageEnhance.Color(im).enhance(0.19)),
    (ra.contrast, 1.81, lambda im: ImageEnhance.Contrast(im).enhance(1.81)),
    (ra.contrast, 0.3, lambda im: ImageEnhance.Contrast(im).enhance(0.3)),
    (ra.brightness, 1.81, lambda im: ImageEnhance.Brightness(im).enhance(1.81)),
    (ra.sharpness, 1.81, lambda im: ImageEnhance.Sharpness(im).enhance(1.81)),
    (ra.sharpness, 0.19, lambda im: ImageEnhance.Sharpness(im).enhance(0.19)),
])
def test_pixel_ops_equal_pil(op, arg: float, reference) -> None:
    images = _images()
    assert np.array_equal(_ours(op, images, arg), _pil(reference, images))


def test_pixel_ops_by_hand() -> None:
    row = np.array([[[20, 60, 100, 122]]], np.uint8).repeat(3, 0).transpose(1, 2, 0)[None]  # 1x4 RGB
    # autocontrast stretches 20..122 to 0..255: scale 255 / 102 = 2.5, offset -50
    assert _ours(ra.auto_contrast, row, 0)[0, 0, :, 0].tolist() == [0, 100, 200, 255]
    assert _ours(ra.solarize, row, 26)[0, 0, :, 0].tolist() == [20, 195, 155, 133]  # 255 - v from 26
    assert _ours(ra.posterize, row, 2)[0, 0, :, 0].tolist() == [0, 0, 64, 64]  # keep the top 2 bits
    assert _ours(ra.solarize_add, row, 99)[0, 0, :, 0].tolist() == [119, 159, 199, 221]
    # 0 bits (m = 10 with inc1) leaves a black image, as PIL's posterize did in timm's day
    assert _ours(ra.posterize, row, 0).max() == 0


def test_translate_by_hand_and_geometric_ops_against_pil() -> None:
    columns = np.tile((np.arange(8) * 10).astype(np.uint8), (2, 1))
    image = np.repeat(columns[None, :, :, None], 3, axis=3)  # [1, 2, 8, 3], column j has 10 j
    aug = ra.DeviceRandAugment("rand-m9-inc1", [0.485, 0.456, 0.406], "bilinear")
    x = torch.from_numpy(image).permute(0, 3, 1, 2).float()
    moved = aug.apply_op("TranslateXRel", x, torch.tensor([0.25], dtype=torch.float64))
    # input x = output x + 0.25 * 8: column j shows column j + 2; the last two take the fill colour
    assert moved[0, 0, 0].tolist() == [20, 30, 40, 50, 60, 70, 124, 124]
    assert moved[0, :, 1, 7].tolist() == list(IMAGENET_FILL)
    images = _images()
    for name, arg, reference in (
            ("Rotate", 27.0, lambda im: im.rotate(27.0, resample=Image.BILINEAR, fillcolor=IMAGENET_FILL)),
            ("ShearX", 0.27, lambda im: im.transform(im.size, Image.AFFINE, (1, 0.27, 0, 0, 1, 0),
                                                     resample=Image.BILINEAR, fillcolor=IMAGENET_FILL)),
            ("ShearY", -0.27, lambda im: im.transform(im.size, Image.AFFINE, (1, 0, 0, -0.27, 1, 0),
                                                      resample=Image.BILINEAR, fillcolor=IMAGENET_FILL)),
            ("TranslateYRel", -0.405, lambda im: im.transform(
                im.size, Image.AFFINE, (1, 0, 0, 0, 1, -0.405 * im.size[1]), resample=Image.BILINEAR,
                fillcolor=IMAGENET_FILL))):
        ours = _ours(lambda t, a, n=name: aug.apply_op(n, t, a), images, arg)
        diff = np.abs(ours - _pil(reference, images))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, name  # float rounding at .0 edges


def test_batch_randaugment_is_seeded_and_changes_about_three_quarters() -> None:
    aug = ra.DeviceRandAugment("rand-m9-mstd0.5-inc1", [0.485, 0.456, 0.406], "bicubic")
    x = torch.rand(400, 3, 16, 16)
    torch.manual_seed(5)
    a = aug(x)
    torch.manual_seed(5)
    assert torch.equal(a, aug(x))
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    # Each of 2 layers applies its op with p 0.5: P(no op) = 0.25 (these noise images change
    # under every op, so 0.75 change; 400 images: sd 0.022)
    changed = (a - torch.round(x * 255) / 255).abs().flatten(1).amax(1) > 0
    assert float(changed.float().mean()) == pytest.approx(0.75, abs=0.07)


# ---------------------------------------------------------------- random erasing


def test_random_erasing_pixel_and_const_modes() -> None:
    torch.manual_seed(0)
    erased, boxes = erase_boxes(20_000, 224, 224, 1.0, torch.device("cpu"))
    share = (boxes[:, 2] * boxes[:, 3]).double() / 224 ** 2
    ratio = boxes[:, 2].double() / boxes[:, 3]
    assert bool(erased.all())
    # area share U(0.02, 1/3): mean 0.1767 (a few large draws are redrawn, which lowers it a little)
    assert float(share.mean()) == pytest.approx(0.1767, abs=0.004)
    assert float(share.min()) >= 0.019 and float(share.max()) <= 0.336
    assert float(ratio.min()) >= 0.29 and float(ratio.max()) <= 3.4
    x = torch.full((64, 3, 20, 20), 7.0)
    torch.manual_seed(1)
    noisy = RandomErasing(0.25, "pixel")(x)
    changed = (noisy != 7.0).any(1)
    hit = changed.flatten(1).any(1)
    assert 6 <= int(hit.sum()) <= 26  # P = 0.25 of 64: 16 expected
    for mask in changed[hit]:  # one filled rectangle per erased image
        rows, cols = mask.any(1).nonzero().squeeze(1), mask.any(0).nonzero().squeeze(1)
        assert bool(mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all())
        assert int(mask.sum()) == len(rows) * len(cols)
    assert float(noisy[noisy != 7.0].std()) == pytest.approx(1.0, abs=0.15)  # N(0, 1) per pixel
    torch.manual_seed(1)
    const = RandomErasing(0.25, "const")(x)
    assert torch.equal(const != 7.0, noisy != 7.0) and float(const[const != 7.0].abs().max()) == 0


# ---------------------------------------------------------------- repeated augmentation


def test_selected_count_as_the_official_sampler() -> None:
    # floor(n // 256 * 256 / world_size)
    assert selected_count(1000, 4) == 192 and selected_count(1000, 3) == 256
    assert selected_count(1000, 1) == 768 and selected_count(100, 3) == 34  # small sets: ceil


def test_repeated_order_is_three_copies_across_ranks() -> None:
    n = 600
    one = repeated_positions(n, repeats=3, seed=4, epoch=2)
    assert len(one) == 512
    # 512 = 170 triples + 2 copies of a 171st image: a a a b b b ...
    assert np.array_equal(one[:510].reshape(170, 3), np.repeat(one[:510:3, None], 3, 1))
    assert np.bincount(one, minlength=n).max() == 3 and len(np.unique(one)) == 171
    for world in (2, 4):
        ranks = [repeated_positions(n, repeats=3, seed=4, epoch=2, rank=r, world_size=world)
                 for r in range(world)]
        assert all(len(r) == 512 // world for r in ranks)
        # the ranks' k-th entries together are the one-process order's k-th block
        assert np.array_equal(np.stack(ranks, 1).reshape(-1), one)
    ranks = [repeated_positions(n, repeats=3, seed=4, epoch=2, rank=r, world_size=3) for r in range(3)]
    assert np.array_equal(ranks[0], ranks[1]) and np.array_equal(ranks[1], ranks[2])  # a a a -> 3 GPUs
    assert not np.array_equal(one, repeated_positions(n, repeats=3, seed=4, epoch=3))
    assert not np.array_equal(one, repeated_positions(n, repeats=3, seed=5, epoch=2))
    assert np.array_equal(one, repeated_positions(n, repeats=3, seed=4, epoch=2))


# ---------------------------------------------------------------- cosine_iter


def _schedule(**fields) -> tuple[torch.optim.Optimizer, LRSchedule]:
    config = resolve_config("fdsl-vit", sets=dict(dict(epochs=3, warmup_epochs=1), **fields))
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=config.lr)
    return optimizer, LRSchedule(optimizer, config, steps_per_epoch=10)


def test_cosine_iter_equals_timm_per_update() -> None:
    optimizer, schedule = _schedule()
    seen = []
    for _ in range(31):
        seen.append(schedule.lr)
        optimizer.step()
        schedule.step_iteration()
    # warm-up 10 updates from 1e-4; cosine over all 30 from t = 0 to min_lr 1e-5
    assert seen[0] == pytest.approx(1e-4) and seen[5] == pytest.approx(5.5e-4)
    assert seen[10] == pytest.approx(7.525e-4)  # 1e-5 + 0.5 * 9.9e-4 * (1 + cos(60 deg))
    assert seen[15] == pytest.approx(5.05e-4) and seen[20] == pytest.approx(2.575e-4)
    assert seen[30] == pytest.approx(1e-5)
    # resume: a fresh schedule loaded from the state after 13 updates continues identically
    optimizer, schedule = _schedule()
    for _ in range(13):
        optimizer.step()
        schedule.step_iteration()
    state, opt_state = schedule.state_dict(), optimizer.state_dict()
    optimizer2, schedule2 = _schedule()
    optimizer2.load_state_dict(opt_state)
    schedule2.load_state_dict(state)
    for t in range(13, 30):
        assert schedule2.lr == seen[t]
        optimizer2.step()
        schedule2.step_iteration()


# ---------------------------------------------------------------- the whole recipe, resumed


class _Blobs:
    """2 classes of 32 px grey noise, the second brighter."""

    @staticmethod
    def build(out: Path) -> Path:
        from helpers import SmallSource

        from fdsl.datasets.builder.build import RenderedBatch, build_dataset

        class Blobs(SmallSource):
            name, CLASSES = "blobs", ("dark", "bright")

            def render(self, start: int, stop: int) -> RenderedBatch:
                items = np.arange(start, stop)
                rng = np.random.default_rng(start)
                images = rng.integers(0, 90, (len(items), self.size, self.size)).astype(np.uint8)
                images[items % 2 == 1] += 120
                return RenderedBatch(images, items % 2, {}, items, [])

        build_dataset(Blobs(40, 32), out, shard_size=100, backend="inline", workers=1)
        return out


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _Blobs.build(tmp_path_factory.mktemp("blobs") / "data")


VIT_SMALL = dict(recipe="fdsl-vit", epochs=2, batch_size=16, image_size=32, workers=0,
                 warmup_epochs=1, val_fraction=0.2)


def test_vit_recipe_runs_and_resumes_bit_exact(blobs: Path, tmp_path: Path) -> None:
    from fdsl.train.loop import train_classifier

    full = train_classifier(blobs, tmp_path / "full", **VIT_SMALL)
    part = train_classifier(blobs, tmp_path / "part", stop_after_epochs=1, **VIT_SMALL)
    resumed = train_classifier(blobs, tmp_path / "part", resume=True, **VIT_SMALL)
    assert part["epochs_done"] == 1 and resumed["epochs_done"] == 2
    assert full["state_digest"] == resumed["state_digest"]
    records = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    # 64 training images: repeated augmentation keeps ceil(64 / 1) = 64 entries, 4 batches of 16
    assert [r["train_images"] for r in records] == [64, 64]
    assert records[0]["lr"] == pytest.approx(1e-4)  # the warm-up starts at warmup_lr
    saved = json.loads((tmp_path / "full" / "config.json").read_text())["recipe_fields"]
    assert saved["auto_augment"] == "rand-m9-mstd0.5-inc1" and saved["aug_repeats"] == 3


def test_repeated_loaders_give_each_rank_its_part(blobs: Path, tmp_path: Path) -> None:
    from fdsl.train.data import open_data
    from fdsl.train.repeat_sampler import repeated_loader

    source = open_data(blobs, 32, 1.0)
    train_idx = np.arange(3, 80, 2)  # 39 rows (odd ones): ceil(39 / 2) = 20 per rank
    for kind, src in (("shards", source), ("imagefolder", _as_imagefolder(source, tmp_path))):
        loaders = [repeated_loader(src, train_idx, repeats=3, batch_size=8, workers=0, seed=7, rank=r,
                                   world_size=2) for r in (0, 1)]
        for rank, loader in enumerate(loaders):
            loader.set_epoch(4)
            expected = train_idx[repeated_positions(39, repeats=3, seed=7, epoch=4, rank=rank, world_size=2)]
            labels = torch.cat([y for _, y in loader]).numpy()
            assert len(loader) == 2, kind  # 20 entries, batches of 8, last short one dropped
            assert np.array_equal(labels, src.labels[expected][:16]), kind


def _as_imagefolder(source, tmp_path: Path):
    """The same images as an ImageFolder tree (its own row order: class by class)."""
    from fdsl.train.data import open_data

    root = tmp_path / "folder"
    for i in range(len(source.labels)):
        image, label = source.dataset[i]
        folder = root / source.classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")  # ds[i]: RGB CHW
    return open_data(root, 32, 1.0)


def _ddp_worker(rank: int, world: int, port: int, data: str, out: str) -> None:
    import os

    from fdsl.train.loop import train_classifier

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    summary = train_classifier(data, out, device="cpu", **dict(VIT_SMALL, epochs=1))
    Path(out, f"rank{rank}.json").write_text(json.dumps(summary))
    torch.distributed.destroy_process_group()


def test_vit_recipe_under_ddp_ends_identical_on_both_ranks(blobs: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, str(blobs), str(tmp_path / "ddp")),
                                nprocs=2, join=True)
    summaries = [json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert summaries[0]["state_digest"] == summaries[1]["state_digest"]
    record = json.loads((tmp_path / "ddp" / "metrics.jsonl").read_text())
    assert record["train_images"] == 64  # 2 ranks x 32: the one-process run's 64 entries


def test_fidelity_recipes_table_covers_every_setting_of_the_vit_recipes() -> None:
    from fdsl.train.recipes import VIT_PRETRAIN

    text = (Path(__file__).parents[1] / "docs" / "FIDELITY.md").read_text()
    section = text.split("## Recipes", 1)[1]
    first_cells = " ".join(line.split("|")[1] for line in section.splitlines() if line.startswith("| "))
    missing = [name for name in VIT_PRETRAIN if f"`{name}`" not in first_cells]
    assert not missing, f"docs/FIDELITY.md Recipes has no row for {missing}"
