"""Device augmentation: self-paced selection by threshold and by ratio, kornia mixup/cutmix targets
that match their pixels, named candidates and what each does to a batch."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")

from fdsl.errors import FdslError  # noqa: E402
from fdsl.train.augment import (  # noqa: E402
    CLEAN_FIELDS,
    KINDS,
    BatchMix,
    DeviceAugment,
    build_candidate,
    select_for_augmentation,
)
from fdsl.train.recipes import TrainConfig  # noqa: E402

torch.set_num_threads(1)


# ---------------------------------------------------------------- self-paced selection


def test_threshold_flags_samples_at_or_above_it() -> None:
    losses = torch.tensor([0.1, 2.0, 0.5, 3.0, 0.0, 0.49, 0.51, 1.0])
    flags = select_for_augmentation(losses, threshold=0.5, ratio=0.0)
    assert flags.dtype == torch.bool
    assert flags.tolist() == [False, True, True, True, False, False, True, True]
    assert select_for_augmentation(losses, threshold=0.0, ratio=0.0).all()
    assert not select_for_augmentation(losses, threshold=5.0, ratio=0.0).any()


def test_ratio_flags_the_highest_losses_with_deterministic_ties() -> None:
    losses = torch.tensor([0.1, 2.0, 0.5, 3.0, 0.0, 0.49, 0.51, 1.0])
    assert select_for_augmentation(losses, threshold=0.0, ratio=0.5).tolist() == [
        False, True, False, True, False, False, True, True]
    assert select_for_augmentation(losses, threshold=0.0, ratio=1.0).all()
    one = select_for_augmentation(losses, threshold=0.0, ratio=0.01)  # at least one sample
    assert one.tolist() == [False, False, False, True, False, False, False, False]
    ties = torch.tensor([1.0, 2.0, 1.0, 1.0, 2.0, 1.0])
    # 3 of 6: both 2.0s, then the earliest 1.0
    assert select_for_augmentation(ties, threshold=0.0, ratio=0.5).tolist() == [
        True, True, False, False, True, False]
    for _ in range(3):  # same answer every call
        assert select_for_augmentation(ties, threshold=0.0, ratio=0.5).tolist() == [
            True, True, False, False, True, False]
    # round(R * B): 0.3 of 10 is 3 samples, 0.25 of 10 rounds half up to 3
    losses = torch.arange(10, dtype=torch.float32)
    assert select_for_augmentation(losses, threshold=0.0, ratio=0.3).nonzero().flatten().tolist() == [7, 8, 9]
    assert int(select_for_augmentation(losses, threshold=0.0, ratio=0.25).sum()) == 3


def test_selection_rejects_both_rules_and_a_bad_ratio() -> None:
    losses = torch.ones(4)
    with pytest.raises(ValueError, match="not both"):
        select_for_augmentation(losses, threshold=0.5, ratio=0.5)
    with pytest.raises(ValueError, match="ratio"):
        select_for_augmentation(losses, threshold=0.0, ratio=1.5)


# ---------------------------------------------------------------- batch mixing through kornia


@pytest.mark.parametrize("mixup,cutmix", [(0.4, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_mixed_targets_match_the_mixed_pixels(mixup: float, cutmix: float) -> None:
    torch.manual_seed(3)
    b = 6
    labels = torch.arange(b)
    x = labels.float().view(b, 1, 1, 1).expand(b, 3, 8, 8).contiguous()  # pixel value = class
    mix = BatchMix(mixup, cutmix, 1.0)
    changed = 0
    for _ in range(10):
        mixed, soft = mix(x, labels, b)
        assert torch.allclose(soft.sum(1), torch.ones(b))
        expected = soft @ torch.arange(b, dtype=torch.float32)  # share of each class times its value
        assert torch.allclose(mixed.mean((1, 2, 3)), expected, atol=1e-5)
        changed += int((soft.max(1).values < 1).sum())
    assert changed > 0


def test_mixup_weights_follow_beta_alpha() -> None:
    torch.manual_seed(0)
    labels = torch.arange(2).repeat(500)
    x = labels.float().view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    spread = {}
    for alpha in (0.1, 10.0):
        _, soft = BatchMix(alpha, 0.0, 1.0)(x, labels, 2)
        partner_other = soft.min(1).values  # 0 where a sample mixed with its own class
        spread[alpha] = float(partner_other[partner_other > 0].mean())
    # Beta(0.1, 0.1) puts most weight near 0 or 1, Beta(10, 10) near 0.5
    assert spread[0.1] < 0.15 and spread[10.0] > 0.35


def test_mix_probability_zero_leaves_the_batch() -> None:
    x, labels = torch.rand(4, 3, 8, 8), torch.arange(4)
    mixed, soft = BatchMix(0.8, 1.0, 0.0)(x, labels, 4)
    assert torch.equal(mixed, x) and torch.equal(soft, torch.eye(4))


# ---------------------------------------------------------------- named candidates


def test_build_candidate_parses_names_strengths_and_pairs() -> None:
    assert build_candidate("erasing:0.5").fields == {"random_erasing": 0.5}
    assert build_candidate("flip").fields == {"hflip": 0.5}
    assert build_candidate("crop:0.3").fields == {"train_crop": "random_resized", "rrc_scale": [0.3, 1.0]}
    pair = build_candidate("flip+erasing:0.4")
    assert pair.name == "flip+erasing:0.4" and pair.fields == {"hflip": 0.5, "random_erasing": 0.4}
    assert build_candidate("rotation:30").fields == {"rotation": 30.0}
    assert build_candidate("none").fields == {}
    for bad, message in (("blur", "unknown augmentation 'blur'"), ("flip:x", "not a number"),
                         ("erasing:2", "must be above 0"), ("mixup:0", "must be above 0")):
        with pytest.raises(FdslError, match=message):
            build_candidate(bad)


def _augmenter(fields: dict) -> DeviceAugment:
    config = TrainConfig(image_size=16, resize_ratio=1.0, mean=[0.5], std=[0.5],
                         **{**CLEAN_FIELDS, **fields})
    return DeviceAugment(config, 4, 16, torch.device("cpu"))


def test_clean_fields_are_the_plain_view_and_every_kind_changes_it() -> None:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8)
    labels = torch.arange(8) % 4
    clean = _augmenter({})
    x = clean.prepare(images)
    out, target = clean.augment(x, labels)
    assert torch.equal(out, clean.plain(x)) and torch.equal(target, torch.eye(4)[labels])
    for kind in KINDS:
        aug = _augmenter(build_candidate(f"{kind}:{1.0 if kind in ('flip', 'erasing') else KINDS[kind].default}").fields)
        torch.manual_seed(1)
        out, target = aug.augment(x, labels)
        assert out.shape == (8, 3, 16, 16), kind
        assert not torch.equal(out, clean.plain(x)), kind
        torch.manual_seed(1)
        again, _ = aug.augment(x, labels)
        assert torch.equal(out, again), kind  # the seed fixes the result
    flipped, _ = _augmenter({"hflip": 1.0}).augment(x, labels)
    assert torch.equal(flipped, clean.plain(x).flip(-1))


def test_random_crop_stays_inside_the_image() -> None:
    aug = DeviceAugment(TrainConfig(image_size=8, resize_ratio=1.5, train_crop="random", mean=[0.0],
                                    std=[1.0]), 2, 12, torch.device("cpu"))
    x = aug.prepare(torch.randint(0, 256, (4, 3, 12, 12), dtype=torch.uint8))
    torch.manual_seed(0)
    out, _ = aug.augment(x, torch.zeros(4, dtype=torch.int64))
    for b in range(4):
        windows = [(t, s) for t in range(5) for s in range(5) if torch.equal(out[b], x[b, :, t:t + 8, s:s + 8])]
        assert len(windows) == 1
