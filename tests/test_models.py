"""Model zoo: exact torchvision/timm state_dict layouts, parameter counts, head swaps, ViT sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from fdsl.errors import FdslError  # noqa: E402
from fdsl.train.models import build_model, canonical_name, load_backbone  # noqa: E402
from fdsl.train.models.vit import resample_pos_embed  # noqa: E402

torch.set_num_threads(1)  # 2 threads crawl when other jobs share the 2 cores
FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "model_state_dict_shapes.json").read_text())
REFERENCE = {name: shapes for family in ("torchvision", "timm") for name, shapes in FIXTURE[family].items()}
PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
          "vit_tiny_patch16_224": 5_717_416, "deit_tiny_patch16_224": 5_717_416}


@pytest.fixture(scope="module")
def models() -> dict:
    torch.manual_seed(0)
    return {name: build_model(name, 1000) for name in REFERENCE}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_state_dict_matches_reference_keys_and_shapes(models: dict, name: str) -> None:
    ours = {k: list(v.shape) for k, v in models[name].state_dict().items()}
    assert list(ours) == list(REFERENCE[name])  # same keys in the same order
    assert ours == REFERENCE[name]
    assert sum(p.numel() for p in models[name].parameters()) == PARAMS[name]


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_strict_load_both_ways(models: dict, name: str) -> None:
    # A state_dict with exactly the reference's keys and shapes (as a torchvision/timm file would
    # hold) loads strictly, and the loaded values are the ones given.
    reference_state = {k: (torch.tensor(7, dtype=torch.long) if k.endswith("num_batches_tracked")
                           else torch.full(shape, 0.5)) for k, shape in REFERENCE[name].items()}
    model = models[name]
    result = model.load_state_dict(reference_state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    dumped = model.state_dict()
    assert set(dumped) == set(REFERENCE[name])
    assert all(torch.equal(dumped[k].float(), reference_state[k].float()) for k in dumped)


def test_aliases_and_unknown_model() -> None:
    assert canonical_name("vit_tiny") == canonical_name("deit_tiny") == "vit_tiny_patch16_224"
    with pytest.raises(FdslError, match="unknown model 'resnet7'"):
        build_model("resnet7", 10)


def test_timm_path_errors_clearly_without_timm() -> None:
    try:
        import timm  # noqa: F401
    except ImportError:
        with pytest.raises(FdslError, match="pip install timm"):
            build_model("timm:resnet18", 10)
    else:
        model = build_model("timm:resnet18", 10, 64)
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 10)


def test_small_images_forward() -> None:
    resnet = build_model("resnet18", 5, 32).eval()
    assert resnet(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
    vit = build_model("vit_tiny", 5, 32).eval()
    assert vit.pos_embed.shape == (1, 1 + 4, 192)
    assert vit(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
    with pytest.raises(FdslError, match="divisible by 16"):
        build_model("vit_tiny", 5, 40)


def test_load_backbone_new_head_and_pos_embed_resample(models: dict) -> None:
    source = models["vit_tiny_patch16_224"].state_dict()
    small = build_model("vit_tiny", 3, 64)
    load_backbone(small, source, "vit.pt")
    assert torch.equal(small.blocks[0].attn.qkv.weight, source["blocks.0.attn.qkv.weight"])
    assert small.head.weight.shape == (3, 192)  # a fresh 3-way head, not the 1000-way one
    assert torch.equal(small.pos_embed[:, 0], source["pos_embed"][:, 0])  # class token position kept
    assert small.pos_embed.shape == (1, 1 + 16, 192)


def test_resample_pos_embed_identity_and_shape() -> None:
    pos = torch.randn(1, 1 + 14 * 14, 8)
    assert resample_pos_embed(pos, 14 * 14) is pos
    assert resample_pos_embed(pos, 4 * 4).shape == (1, 17, 8)


def test_load_backbone_rejects_another_architecture(models: dict) -> None:
    target = build_model("resnet18", 4)
    with pytest.raises(FdslError, match="does not fit this model's architecture"):
        load_backbone(target, models["resnet34"].state_dict(), "r34.pt")
    with pytest.raises(FdslError, match="does not fit"):
        load_backbone(target, models["resnet50"].state_dict(), "r50.pt")


def test_load_backbone_keeps_backbone_weights(models: dict) -> None:
    source = models["resnet18"].state_dict()
    target = build_model("resnet18", 4)
    load_backbone(target, {"module." + k: v for k, v in source.items()}, "ddp.pt")
    assert torch.equal(target.layer3[1].conv2.weight, source["layer3.1.conv2.weight"])
    assert torch.equal(target.bn1.running_var, source["bn1.running_var"])
    assert target.fc.out_features == 4


def test_timm_that_breaks_on_import_gives_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A timm whose import raises something other than ImportError (a torch/torchvision mismatch
    # raises RuntimeError or AttributeError) must still give one clear line.
    (tmp_path / "timm").mkdir()
    (tmp_path / "timm" / "__init__.py").write_text("raise RuntimeError('operator torchvision::nms does not exist')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "timm", raising=False)
    with pytest.raises(FdslError, match="needs a working timm.*RuntimeError: operator torchvision::nms") as exc:
        build_model("timm:resnet18", 10)
    assert "\n" not in str(exc.value)
