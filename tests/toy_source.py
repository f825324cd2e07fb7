"""A tiny deterministic ShardSource for testing the builder without a real generator."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from fdsl.sources import RenderedBatch


class ToySource:
    """Images whose pixels are a hash of (seed, item); item 7 of every 10 fails when asked."""

    name = "toy"
    version = "1"

    def __init__(self, classes: int = 3, per_class: int = 10, size: int = 16, seed: int = 0,
                 fail_every: int = 0, gate: str | None = None) -> None:
        self.classes, self.per_class, self.size, self.seed, self.fail_every = classes, per_class, size, seed, fail_every
        # A helpers.Gate folder: rendering item 0 waits there until the test opens the gate, so a
        # test knows a run is mid-work without sleeping (not part of the config: same bytes).
        self.gate = gate

    def config(self) -> dict[str, Any]:
        return {"classes": self.classes, "per_class": self.per_class, "size": self.size,
                "seed": self.seed, "fail_every": self.fail_every}

    def class_names(self) -> list[str]:
        return [f"c{i}" for i in range(self.classes)]

    def num_items(self) -> int:
        return self.classes * self.per_class

    def image(self, item: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, item])
        return rng.integers(0, 256, (self.size, self.size), dtype=np.uint8)

    def render(self, start: int, stop: int) -> RenderedBatch:
        if self.gate and start == 0:
            self._wait_at_gate()
        items = [i for i in range(start, stop) if not (self.fail_every and i % self.fail_every == self.fail_every - 1)]
        failures = [{"item": i, "reason": "toy failure"} for i in range(start, stop) if i not in items]
        images = np.stack([self.image(i) for i in items]) if items else np.zeros((0, self.size, self.size), np.uint8)
        labels = np.array([i // self.per_class for i in items], dtype=np.int64)
        return RenderedBatch(images, labels, {"inst": np.array([i % self.per_class for i in items], np.int32)},
                             np.array(items, np.int64), failures)

    def _wait_at_gate(self) -> None:
        reached = os.path.join(self.gate, "reached")
        if os.path.exists(reached):
            with open(reached, "w") as fh:
                fh.write("x")
        with open(os.path.join(self.gate, "go")) as fh:  # blocks until the test opens the gate
            fh.read()

    def png_path(self, label: int, metadata: dict, item: int) -> str:
        return f"{label:05d}/{label:05d}_{int(metadata['inst']):04d}.png"

    def extra_files(self) -> dict[str, bytes]:
        return {"toy.txt": b"toy params\n"}
