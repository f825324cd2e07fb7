"""Checkpoints and RNG state: what a run saves after each epoch and how it is read back.

``checkpoint.pt`` loads with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists
and dicts only (RNG states included). ``model.safetensors`` holds the weights alone, under the
torchvision/timm keys. Both are written atomically and fsynced (``fdsl.atomic``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fdsl.errors import FdslError
from fdsl.train.outputs import write_file

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "model.safetensors"
# Fields a resumed run may change: they do not alter what is computed.
RUNTIME_FIELDS = {"workers", "compile", "save_every", "tensorboard", "analysis"}


def seed_everything(seed: int, *parts: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) from (seed, *parts)."""
    value = int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0])
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def rng_states() -> dict[str, Any]:
    """The RNG states of python, numpy and torch (and CUDA when present), as plain lists and
    tensors so that ``torch.load(weights_only=True)`` reads them."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "python": [version, list(words), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    """Restore what ``rng_states`` returned."""
    version, words, gauss = states["python"]
    random.setstate((version, tuple(words), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def state_digest(model: nn.Module) -> str:
    """sha256 over every tensor of the state dict (keys sorted): equal digests = equal weights."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except Exception:  # noqa: BLE001 - a broken install is as good as none
        raise FdslError(f"reading {path} needs the safetensors package: pip install safetensors") from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # SafetensorError, OSError: an unreadable file either way
        raise FdslError(f"cannot read weights file {path}: {_first_line(exc)}") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read fdsl's checkpoint, a bare state_dict (torchvision/timm ``.pt``/``.pth``) or a
    ``.safetensors`` file; returns a dict with at least ``model`` (a state_dict).

    Pickles are read with ``weights_only=True``: a downloaded file cannot run code.
    """
    path = Path(path)
    if not path.is_file():
        raise FdslError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        return {"model": _load_safetensors(path)}
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean an unreadable file
        raise FdslError(f"cannot read checkpoint {path} (read with weights_only=True): "
                        f"{_first_line(exc)}") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        return obj
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"model": obj}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return {"model": obj["state_dict"]}
    raise FdslError(f"checkpoint {path} holds no model weights")


def save_checkpoint(state: Mapping[str, Any], path: Path) -> None:
    """``torch.save`` through a temporary file, fsynced and renamed."""
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    write_file(path, buffer.getvalue())


def save_weights(model: nn.Module, path: Path) -> None:
    """The model's weights alone as safetensors (same keys as torchvision/timm)."""
    try:
        from safetensors.torch import save
    except Exception:  # noqa: BLE001
        log.warning("safetensors is not installed; %s not written (pip install safetensors)", path.name)
        return
    # Copies: safetensors refuses tensors that share storage (tied weights in some timm models).
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    write_file(path, save(tensors))


def check_resume(config: Mapping[str, Any], saved: Mapping[str, Any], out: Path) -> None:
    """Refuse to continue a run with settings that change what is computed."""
    for key, value in saved.items():
        if key not in RUNTIME_FIELDS and config.get(key) != value:
            raise FdslError(f"--resume: {key} is {config.get(key)!r} but the run in {out} used {value!r}; "
                            "resume with the same settings or use another --out")


def check_resume_data(saved: Mapping[str, Any], classes: list[str], train_images: int,
                      data: str | Path, out: Path) -> None:
    """Refuse to continue a run on other data; a moved data folder with the same content is fine."""
    if "classes" in saved and list(saved["classes"]) != list(classes):
        raise FdslError(f"--resume: {data} has other classes than the data the run in {out} was trained on "
                        f"({saved.get('data')})")
    if "train_images" in saved and saved["train_images"] != train_images:
        raise FdslError(f"--resume: {data} gives {train_images} training images, the run in {out} had "
                        f"{saved['train_images']} (from {saved.get('data')})")
    if saved.get("data_resolved") not in (None, str(Path(data).resolve())):
        log.warning("--resume: data is now %s (the run started on %s); same classes and size, going on",
                    data, saved["data_resolved"])
