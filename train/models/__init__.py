"""Model zoo: ``build_model("resnet50", num_classes, image_size)``.

Names: resnet18, resnet34, resnet50 (torchvision state_dict layout), vit_tiny_patch16_224 with the
aliases vit_tiny, deit_tiny and deit_tiny_patch16_224 (timm layout), and ``timm:NAME`` for any timm
model when timm is installed.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from fdsl.errors import FdslError
from fdsl.train.models.resnet import ResNet, resnet18, resnet34, resnet50
from fdsl.train.models.vit import VisionTransformer, resample_pos_embed, vit_tiny_patch16_224

__all__ = ["MODELS", "build_model", "canonical_name", "head_keys", "load_backbone", "ResNet",
           "VisionTransformer"]

MODELS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50,
          "vit_tiny_patch16_224": vit_tiny_patch16_224}
ALIASES = {"vit_tiny": "vit_tiny_patch16_224", "deit_tiny": "vit_tiny_patch16_224",
           "deit_tiny_patch16_224": "vit_tiny_patch16_224"}
TIMM_PREFIX = "timm:"


def canonical_name(name: str) -> str:
    """The registry name for ``name`` (aliases resolved); FdslError for an unknown model."""
    if name.startswith(TIMM_PREFIX):
        return name
    name = ALIASES.get(name, name)
    if name not in MODELS:
        known = ", ".join(sorted([*MODELS, *ALIASES]))
        raise FdslError(f"unknown model {name!r}; choose one of {known} or timm:NAME")
    return name


def _build_timm(name: str, num_classes: int, image_size: int, drop_path_rate: float) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise FdslError(f"model {TIMM_PREFIX}{name} needs timm: pip install timm") from None
    except Exception as exc:  # noqa: BLE001 - a timm that breaks on import (torch/torchvision mismatch)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise FdslError(f"model {TIMM_PREFIX}{name} needs a working timm, but importing it failed "
                        f"({type(exc).__name__}: {first}); reinstall it: pip install -U timm") from None
    kwargs = {"num_classes": num_classes, "drop_path_rate": drop_path_rate}
    if "vit" in name or "deit" in name:
        kwargs["img_size"] = image_size
    try:
        return timm.create_model(name, **kwargs)
    except Exception as exc:  # timm raises RuntimeError/KeyError for unknown names
        raise FdslError(f"timm cannot build {name!r}: {exc}") from None


def build_model(name: str, num_classes: int, image_size: int = 224,
                drop_path_rate: float = 0.0) -> nn.Module:
    """A freshly initialised 3-channel classifier for ``image_size`` px inputs."""
    name = canonical_name(name)
    if name.startswith(TIMM_PREFIX):
        return _build_timm(name[len(TIMM_PREFIX):], num_classes, image_size, drop_path_rate)
    if name.startswith("vit"):
        if image_size % 16:
            raise FdslError(f"{name} needs an image size divisible by 16, got {image_size}")
        return MODELS[name](num_classes=num_classes, img_size=image_size,
                            drop_path_rate=drop_path_rate)
    return MODELS[name](num_classes=num_classes)


def head_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the classification head (``fc.*`` for ResNets, ``head.*`` for ViTs)."""
    return {k for k in model.state_dict() if k.split(".")[0] in ("fc", "head")}


def load_backbone(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load every non-head weight of ``state`` strictly into ``model``; the head stays fresh.

    The position embedding of a ViT is resampled when the image size differs. Raises FdslError
    naming the first missing/unexpected/mis-shaped key when ``state`` is another architecture.
    """
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}
    heads = head_keys(model)
    own = {k: v for k, v in model.state_dict().items() if k not in heads}
    state = {k: v for k, v in state.items() if k.split(".")[0] not in ("fc", "head")}
    if "pos_embed" in state and "pos_embed" in own:
        state["pos_embed"] = resample_pos_embed(state["pos_embed"], own["pos_embed"].shape[1] - 1)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = (f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}" if unexpected
                  else f"{wrong[0]} has shape {tuple(state[wrong[0]].shape)}, model wants "
                       f"{tuple(own[wrong[0]].shape)}")
        raise FdslError(f"checkpoint {source} does not fit this model's architecture ({detail}; "
                        f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} mis-shaped)")
    model.load_state_dict(state, strict=False)
