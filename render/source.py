"""``RenderSource``: the ShardSource that renders models (ShapeNetCore or procedural) view by view.

Items are (model, view) pairs: ``item = model_index * views + view``. A model that cannot be
loaded or rendered is skipped with one failure record ``{"synset", "model_id", "path", "reason"}``
(written by the shard that holds its first view) and its views are absent from the data set; the
reason is BrokenModel's message, or ``"<Type>: <message>"`` for any other error of that model.
Out-of-memory and OpenGL errors are not the model's fault: they fail the shard (retried).
"""

from __future__ import annotations

import logging
import math
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.errors import FdslError
from fdsl.render import procedural, shapenet
from fdsl.render.renderer import MeshPart, get_renderer
from fdsl.render.shapenet import BrokenModel, ModelRef, load_model
from fdsl.render.viewpoints import VIEWPOINTS, Views, camera_distance, make_views
from fdsl.sources import RenderedBatch

log = logging.getLogger(__name__)

VIEW_TAG = 0x71E3
POSE_FIELDS = tuple(f"pose_{k:02d}" for k in range(16))
DEFAULT_MAX_FACES = 1_000_000
DEFAULT_FOV_DEG = 40.0
MSAA_CHOICES = (0, 2, 4)
IMAGE_SIZES = (16, 4096)  # smallest and largest --image-size; larger framebuffers fail in GL, late


def normalise_parts(parts: Sequence[MeshPart]) -> list[MeshPart]:
    """Centre the model's bounding box at the origin and scale it into the unit sphere."""
    vertices = np.concatenate([p.vertices for p in parts]).astype(np.float64)
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    centre = (low + high) / 2
    radius = float(np.sqrt(((vertices - centre) ** 2).sum(axis=1).max()))
    if not math.isfinite(radius) or radius <= 1e-9:
        raise BrokenModel("degenerate model (all vertices at one point)")
    return [MeshPart(((p.vertices - centre) / radius).astype(np.float32), p.faces, p.color, p.normals,
                     p.uv, p.texture) for p in parts]


def _fatal(exc: BaseException) -> bool:
    """Errors that are not the model's fault: out of memory, or OpenGL/EGL failing (a lost
    context fails every later model too), which fail the shard so that it is retried."""
    return isinstance(exc, MemoryError) or type(exc).__module__.split(".")[0] == "OpenGL"


@dataclass
class RenderSource:
    """Render ``models`` from ``views`` viewpoints each (see the module docstring).

    ``models`` lists ModelRef (ShapeNet; ``path`` is the OBJ file) or procedural refs whose
    ``path`` is ``procedural:<class>:<index>``. ``rasterizer_threads`` (Mesa's LP_NUM_THREADS in
    each worker) changes speed only, never bytes, so it is not part of the config.
    """

    classes: list[str]
    synsets: list[str]
    models: list[ModelRef]
    views: int = 100
    viewpoints: str = "fibonacci"
    image_size: int = 224
    fov_deg: float = 40.0
    msaa: int = 0
    max_faces: int = 1_000_000
    seed: int = 0
    origin: str = "procedural"
    notes: list[str] = field(default_factory=list)
    rasterizer_threads: int | None = None

    name = "render-shapenet"
    version = "2"  # 2: metadata "view" is int32 (was int16)

    @property
    def id_width(self) -> int:
        return max([32, *(len(m.model_id.encode()) for m in self.models)])

    def config(self) -> dict[str, Any]:
        per_class: dict[str, list[str]] = {c: [] for c in self.classes}
        for ref in self.models:
            per_class[self.classes[ref.label]].append(ref.model_id)
        return {"origin": self.origin, "classes": self.classes, "synsets": self.synsets,
                "models": per_class, "views": self.views, "viewpoints": self.viewpoints,
                "image_size": self.image_size, "fov_deg": self.fov_deg, "msaa": self.msaa,
                "max_faces": self.max_faces, "seed": self.seed, "notes": self.notes,
                "axes": "+Y up, -Z front (ShapeNet v2); azimuth 0 = front view"}

    def class_names(self) -> list[str]:
        return list(self.classes)

    def num_items(self) -> int:
        return len(self.models) * self.views

    def image_shape(self) -> tuple[int, ...]:
        return (self.image_size, self.image_size, 3)

    def model_views(self, ref: ModelRef) -> Views:
        """The viewpoints of one model; they depend on (seed, synset, model id) only."""
        rng = np.random.default_rng([self.seed, VIEW_TAG, zlib.crc32(ref.synset.encode()),
                                     zlib.crc32(ref.model_id.encode())])
        distance = camera_distance(math.radians(self.fov_deg))
        return make_views(self.viewpoints, self.views, distance, rng)

    def load_parts(self, ref: ModelRef) -> list[MeshPart]:
        """The model's parts normalised to the unit sphere, or BrokenModel."""
        if ref.path.startswith("procedural:"):
            _, class_name, index = ref.path.split(":")
            parts = procedural.build_model(class_name, int(index), self.seed)
        else:
            parts = load_model(ref.path, self.max_faces)
        return normalise_parts(parts)

    def _renderer(self):
        if self.rasterizer_threads is not None:
            os.environ.setdefault("LP_NUM_THREADS", str(self.rasterizer_threads))
        return get_renderer(self.image_size, math.radians(self.fov_deg), self.msaa)

    def render(self, start: int, stop: int) -> RenderedBatch:
        renderer = self._renderer()
        chunks, failures = [], []
        size = self.image_size
        images = np.empty((stop - start, size, size, 3), np.uint8)  # filled in place, no concatenation
        filled = 0
        for model in range(start // self.views, (stop - 1) // self.views + 1):
            ref = self.models[model]
            first, last = max(start, model * self.views), min(stop, (model + 1) * self.views)
            views = self.model_views(ref)
            sel = slice(first - model * self.views, last - model * self.views)
            count = sel.stop - sel.start
            try:
                parts = self.load_parts(ref)
                _, areas = renderer.render(parts, views.poses[sel], out=images[filled:filled + count])
            except Exception as exc:  # noqa: BLE001 - one bad model must not fail the job
                if _fatal(exc):
                    raise
                reason = str(exc) if isinstance(exc, BrokenModel) else f"{type(exc).__name__}: {exc}"
                if first == model * self.views:  # one record per model, from its first view's shard
                    failures.append({"synset": ref.synset, "model_id": ref.model_id, "path": ref.path,
                                     "reason": reason})
                log.warning("skipping %s/%s: %s", ref.synset, ref.model_id, reason)
                if not isinstance(exc, BrokenModel):
                    log.debug("traceback of %s/%s", ref.synset, ref.model_id, exc_info=True)
                continue
            filled += count
            del parts
            chunks.append(self._metadata(model, ref, views, sel, areas))
        return self._batch(images[:filled], chunks, failures)

    def _metadata(self, model: int, ref: ModelRef, views: Views, sel: slice,
                  areas: np.ndarray) -> dict[str, np.ndarray]:
        n = len(areas)
        view = np.arange(sel.start, sel.stop)
        meta = {"labels": np.full(n, ref.label, np.int64),
                "items": model * self.views + view,
                "model": np.full(n, model, np.int32),
                "synset": np.full(n, ref.synset.encode(), f"S{max(8, len(ref.synset))}"),
                "model_id": np.full(n, ref.model_id.encode(), f"S{self.id_width}"),
                "view": view.astype(np.int32), "azimuth": views.azimuth[sel].astype(np.float32),
                "elevation": views.elevation[sel].astype(np.float32),
                "distance": views.distance[sel].astype(np.float32), "area": areas.astype(np.float32)}
        poses = views.poses[sel].reshape(n, 16).astype(np.float32)
        for k, name in enumerate(POSE_FIELDS):
            meta[name] = poses[:, k]
        return meta

    def _batch(self, images: np.ndarray, chunks: list[dict[str, np.ndarray]],
               failures: list[dict[str, Any]]) -> RenderedBatch:
        if not chunks:
            empty = {name: np.zeros(0, dtype) for name, dtype in self._field_dtypes().items()}
            return RenderedBatch(images, np.zeros(0, np.int64), empty, np.zeros(0, np.int64), failures)
        joined = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
        labels, items = joined.pop("labels"), joined.pop("items")
        return RenderedBatch(images, labels, joined, items.astype(np.int64), failures)

    def _field_dtypes(self) -> dict[str, Any]:
        dtypes: dict[str, Any] = {"model": np.int32, "synset": "S8", "model_id": f"S{self.id_width}",
                                  "view": np.int32, "azimuth": np.float32, "elevation": np.float32,
                                  "distance": np.float32, "area": np.float32}
        dtypes.update({name: np.float32 for name in POSE_FIELDS})
        return dtypes

    def png_path(self, label: int, metadata: Mapping[str, Any], item: int) -> str:
        model_id = metadata["model_id"]
        model_id = model_id.decode() if isinstance(model_id, bytes) else str(model_id)
        # A zero-padded label before the name, so an ImageFolder reader's sorted class folders
        # give the same labels as fdsl whatever order --classes named them in.
        width = max(3, len(str(len(self.classes) - 1)))
        return f"{label:0{width}d}.{self.classes[label]}/{model_id}/{int(metadata['view']):03d}.png"

    def extra_files(self) -> dict[str, bytes]:
        lines = ["model\tlabel\tclass\tsynset\tmodel_id"]
        lines += [f"{i}\t{m.label}\t{self.classes[m.label]}\t{m.synset}\t{m.model_id}" for i, m in enumerate(self.models)]
        return {"models.tsv": ("\n".join(lines) + "\n").encode()}


# --------------------------------------------------------------------------- from options


MAX_VIEWS = 1_000_000


def _class_list(classes: str | Sequence[str] | None) -> list[str]:
    if classes is None:
        return list(shapenet.STUDY_CLASSES)
    names = classes.split(",") if isinstance(classes, str) else list(classes)
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise FdslError("--classes is empty; give class names or synset ids separated by commas")
    return names


def make_source(*, shapenet_root: str | Path | None = None, classes: str | Sequence[str] | None = None,
                models_per_class: int | None = None, views: int = 100, viewpoints: str = "fibonacci",
                image_size: int = 224, max_faces: int = DEFAULT_MAX_FACES, seed: int = 0,
                msaa: int = 0, fov_deg: float = DEFAULT_FOV_DEG) -> RenderSource:
    """The RenderSource for these settings (see ``render_shapenet``)."""
    if views <= 0 or max_faces <= 0:
        raise FdslError("--views and --max-faces must be positive")
    if views > MAX_VIEWS:  # each model's viewpoints are computed at once: 8 bytes x views each
        raise FdslError(f"--views {views} exceeds the limit of {MAX_VIEWS:,} per model")
    low, high = IMAGE_SIZES
    if not low <= image_size <= high:
        raise FdslError(f"--image-size must be between {low} and {high} pixels, got {image_size}")
    if seed < 0:
        raise FdslError(f"--seed must be >= 0, got {seed}")
    if viewpoints not in VIEWPOINTS:
        raise FdslError(f"unknown --viewpoints {viewpoints!r}; choose one of {', '.join(VIEWPOINTS)}")
    if msaa not in MSAA_CHOICES:
        raise FdslError(f"--msaa must be one of {', '.join(map(str, MSAA_CHOICES))}, got {msaa}")
    if not 1.0 <= fov_deg <= 120.0:
        raise FdslError(f"--fov must be between 1 and 120 degrees, got {fov_deg}")
    wanted = _class_list(classes)
    if shapenet_root is None:
        per_class = procedural.DEFAULT_MODELS_PER_CLASS if models_per_class is None else models_per_class
        names, synsets, refs = procedural.procedural_models(wanted, per_class)
        notes, origin = ["built-in procedural mesh set"], "procedural"
    else:
        names, synsets, refs, notes = shapenet.shapenet_models(Path(shapenet_root), wanted, models_per_class, seed)
        origin = "shapenet"
    return RenderSource(classes=names, synsets=synsets, models=refs, views=views, viewpoints=viewpoints,
                        image_size=image_size, fov_deg=float(fov_deg), msaa=msaa, max_faces=max_faces,
                        seed=seed, origin=origin, notes=notes)
