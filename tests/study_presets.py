"""Study settings that train in seconds, for the tests only (users get paper / mini / demo / cub).

Each is a preset mapping with the same keys as the study's named presets, passed as
``preset=...`` to the study function.
"""

from __future__ import annotations

from typing import Any

_CPU = {"workers": 0, "amp": False}

PRUNING: dict[str, Any] = dict(
    sizes=(4, 8), splits=2, test_per_class=4, field="area", recipe="finetune",
    train=dict(model="resnet18", optimizer="sgd", lr=0.01, batch_size=16, epochs=1, schedule="constant",
               image_size=16, resize_ratio=1.0, analysis=False, **_CPU))  # predictions.csv comes anyway

TRANSFER: dict[str, Any] = dict(
    pretrain_recipe="fractaldb-resnet",
    pretrain=dict(model="resnet18", epochs=1, batch_size=16, lr=0.01, schedule="constant", image_size=16,
                  resize_ratio=1.0, val_fraction=0.0, **_CPU),
    finetune_recipe="finetune",
    finetune=dict(model="resnet18", epochs=1, batch_size=16, lr=0.01, schedule="constant", image_size=16,
                  resize_ratio=1.0, analysis=False, **_CPU),
    train_per_class=3, test_fraction=0.1)

AUGMENT: dict[str, Any] = {
    "recipe": "fractaldb-resnet", "short_epochs": 1, "val_fraction": 0.25, "test_fraction": 0.25,
    "fields": dict(model="resnet18", image_size=16, resize_ratio=1.0, batch_size=16, epochs=2, lr=0.05,
                   schedule="cosine", analysis=False, **_CPU)}
