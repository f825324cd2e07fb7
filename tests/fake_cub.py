"""Write a tiny fake CUB_200_2011 tree: 3 classes x 6 JPEGs of varied sizes (one grey, one
truncated), a train/test split, 15 part locations per image with varying visibility, boxes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
PER_CLASS = 6
NUM_PARTS = 15
VISIBLE = [3, 15, 0, 7, 9, 12]  # visible parts of image k of a class, rotated by the class
SIZES = [(40, 30), (30, 52), (64, 48), (33, 33), (50, 36), (28, 45)]  # (width, height)
CORRUPT = (1, 0)  # (class, k): a truncated JPEG, in the train split
GREY = (2, 3)  # (class, k): a single-channel JPEG


@dataclass(frozen=True)
class FakeImage:
    image_id: int
    label: int  # 0-based
    path: str  # relative to images/
    is_train: int
    visible: int
    width: int
    height: int
    bbox: tuple[float, float, float, float]
    corrupt: bool
    grey: bool


def _pixels(label: int, k: int, width: int, height: int) -> np.ndarray:
    """A smooth class-coloured gradient (JPEG-friendly) that differs per image."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]][label], np.float64)
    shade = (xx / width * 40 + yy / height * 20 + k * 7)[..., None]
    return np.clip(base + shade, 0, 255).astype(np.uint8)


def make_fake_cub(parent: Path) -> tuple[Path, list[FakeImage]]:
    """Write ``parent/CUB_200_2011`` and return (its path, the images in image-id order)."""
    root = parent / "CUB_200_2011"
    (root / "parts").mkdir(parents=True)
    images: list[FakeImage] = []
    for label, name in enumerate(CLASSES):
        folder = root / "images" / name
        folder.mkdir(parents=True)
        for k in range(PER_CLASS):
            image_id = label * PER_CLASS + k + 1
            width, height = SIZES[(k + label) % len(SIZES)]
            file_name = f"{name.split('.', 1)[1]}_{image_id:04d}_{100 + k}.jpg"
            pixels = _pixels(label, k, width, height)
            img = Image.fromarray(pixels[..., 0]) if (label, k) == GREY else Image.fromarray(pixels)
            img.save(folder / file_name, format="JPEG", quality=90)
            corrupt = (label, k) == CORRUPT
            if corrupt:  # keep the headers, cut the scan data short: opens, fails when decoded
                data = (folder / file_name).read_bytes()
                (folder / file_name).write_bytes(data[: data.index(b"\xff\xda") + 32])
            images.append(FakeImage(image_id, label, f"{name}/{file_name}", int(k % 3 != 2),
                                    VISIBLE[(k + label) % PER_CLASS], width, height,
                                    (1.0 + k, 2.5, width - 3.0, height - 4.25), corrupt, (label, k) == GREY))
    (root / "classes.txt").write_text("".join(f"{c + 1} {n}\n" for c, n in enumerate(CLASSES)))
    (root / "images.txt").write_text("".join(f"{i.image_id} {i.path}\n" for i in images))
    (root / "image_class_labels.txt").write_text("".join(f"{i.image_id} {i.label + 1}\n" for i in images))
    (root / "train_test_split.txt").write_text("".join(f"{i.image_id} {i.is_train}\n" for i in images))
    (root / "bounding_boxes.txt").write_text("".join(f"{i.image_id} " + " ".join(f"{v:.1f}" if v == int(v) else str(v)
                                                                                  for v in i.bbox) + "\n"
                                                     for i in images))
    lines = []
    for i in images:
        for part in range(NUM_PARTS):
            seen = part < i.visible
            x, y = (float(3 + part), float(2 + part)) if seen else (0.0, 0.0)
            lines.append(f"{i.image_id} {part + 1} {x:.1f} {y:.1f} {int(seen)}\n")
    (root / "parts" / "part_locs.txt").write_text("".join(lines))
    return root, images
