"""``render-shapenet``: render ShapeNetCore models (or the built-in procedural set) into shards."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fdsl.cli import OneLineParser, non_negative_int, positive_int, run_cli, setup_logging
from fdsl.datasets.build import BuildResult, build_dataset
from fdsl.datasets.buildcli import add_build_arguments
from fdsl.datasets.jobs import default_workers
from fdsl.errors import FdslError
from fdsl.render import procedural, shapenet
from fdsl.render.shapenet import ModelRef
from fdsl.render.source import RenderSource
from fdsl.render.viewpoints import VIEWPOINTS

log = logging.getLogger(__name__)

DEFAULT_MODELS_PER_CLASS = 100
DEFAULT_MAX_FACES = 1_000_000
DEFAULT_FOV_DEG = 40.0
MSAA_CHOICES = (0, 2, 4)
IMAGE_SIZES = (16, 4096)  # smallest and largest --image-size; larger framebuffers fail in GL, late


def image_side(text: str) -> int:
    """argparse type: an image side in pixels within IMAGE_SIZES."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    low, high = IMAGE_SIZES
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be between {low} and {high} pixels, got {value}")
    return value


def _class_list(classes: str | Sequence[str] | None) -> list[str]:
    if classes is None:
        return list(shapenet.STUDY_CLASSES)
    names = classes.split(",") if isinstance(classes, str) else list(classes)
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise FdslError("--classes is empty; give class names or synset ids separated by commas")
    return names


def procedural_models(classes: Sequence[str], models_per_class: int) -> tuple[list[str], list[str], list[ModelRef]]:
    """(class names, synsets, model refs) of the built-in procedural set."""
    synset_to_name = {v: k for k, v in shapenet.SYNSETS.items() if k in procedural.CLASSES}
    names = []
    for raw in classes:
        key = raw.strip().lower()
        key = {"cap": "hat"}.get(synset_to_name.get(key, key), synset_to_name.get(key, key))
        if key not in procedural.CLASSES:
            raise FdslError(f"unknown class {raw!r} for the procedural set; choose from "
                            f"{', '.join(procedural.CLASSES)} (or pass --shapenet-root)")
        if key in names:
            raise FdslError(f"class {key!r} is given twice in --classes")
        names.append(key)
    synsets = [shapenet.SYNSETS[n] for n in names]
    refs = [ModelRef(label, synsets[label], f"{name}-{i:04d}", f"procedural:{name}:{i}")
            for label, name in enumerate(names) for i in range(models_per_class)]
    return names, synsets, refs


def shapenet_models(root: Path, classes: Sequence[str], models_per_class: int | None,
                    seed: int) -> tuple[list[str], list[str], list[ModelRef], list[str]]:
    """(class names, synsets, model refs, notes) for a ShapeNetCore tree; classes that the tree
    lacks are dropped with a warning (and a note for the manifest)."""
    if not root.is_dir():
        raise FdslError(f"--shapenet-root {root}: no such folder")
    layout = shapenet.detect_layout(root)
    taxonomy = shapenet.read_taxonomy(root)
    names, synsets, refs, notes = [], [], [], [f"ShapeNetCore {layout} layout"]
    seen: set[str] = set()
    for raw in classes:
        name, synset = shapenet.resolve_class(raw, taxonomy)
        if synset in seen:
            raise FdslError(f"class {raw!r} ({synset}) is given twice in --classes")
        seen.add(synset)
        models = shapenet.list_models(root, synset, layout)
        if not models:
            hint = ""
            if name in shapenet.SUBSTITUTES:
                sub = shapenet.SUBSTITUTES[name]
                hint = f"; nearest substitute: --classes {sub} ({shapenet.SYNSETS[sub]})"
            notes.append(f"{name} ({synset}): not in this ShapeNetCore tree, dropped{hint}")
            continue
        if synset == shapenet.SYNSETS["hat"]:
            notes.append(f"hat: rendered from ShapeNet's cap synset {synset} (56 models in the release)")
        label = len(names)
        names.append(name)
        synsets.append(synset)
        picked = shapenet.select_models(models, models_per_class, seed, synset)
        refs += [ModelRef(label, synset, model_id, str(path)) for model_id, path in picked]
    for note in notes[1:]:
        log.warning(note)
    if not names:
        raise FdslError(f"none of the classes {', '.join(classes)} has models under {root}")
    return names, synsets, refs, notes


def make_source(*, shapenet_root: str | Path | None = None, classes: str | Sequence[str] | None = None,
                models_per_class: int | None = None, views: int = 100, viewpoints: str = "fibonacci",
                image_size: int = 224, max_faces: int = DEFAULT_MAX_FACES, seed: int = 0,
                msaa: int = 0, fov_deg: float = DEFAULT_FOV_DEG) -> RenderSource:
    """The RenderSource for these settings (see ``render_shapenet``)."""
    if views <= 0 or max_faces <= 0:
        raise FdslError("--views and --max-faces must be positive")
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
        per_class = DEFAULT_MODELS_PER_CLASS if models_per_class is None else models_per_class
        names, synsets, refs = procedural_models(wanted, per_class)
        notes, origin = ["built-in procedural mesh set"], "procedural"
    else:
        names, synsets, refs, notes = shapenet_models(Path(shapenet_root), wanted, models_per_class, seed)
        origin = "shapenet"
    return RenderSource(classes=names, synsets=synsets, models=refs, views=views, viewpoints=viewpoints,
                        image_size=image_size, fov_deg=float(fov_deg), msaa=msaa, max_faces=max_faces,
                        seed=seed, origin=origin, notes=notes)


def render_shapenet(
    out: str | Path,
    *,
    shapenet_root: str | Path | None = None,
    classes: str | Sequence[str] | None = None,
    models_per_class: int | None = None,
    views: int = 100,
    viewpoints: str = "fibonacci",
    image_size: int = 224,
    max_faces: int = DEFAULT_MAX_FACES,
    seed: int = 0,
    msaa: int = 0,
    fov_deg: float = DEFAULT_FOV_DEG,
    workers: int | None = None,
    backend: str = "local",
    shard_size: int | None = None,
    compression: str = "lz4",
    fmt: str = "hdf5",
    overwrite: bool = False,
) -> BuildResult:
    """Render every selected model from ``views`` viewpoints into shards at ``out``.

    Without ``shapenet_root`` the built-in procedural set is rendered. ``classes`` (names or
    synsets, a list or a comma-separated string) defaults to the viewpoint study's nine;
    ``models_per_class`` (None: every model of a ShapeNet class, 100 procedural ones) is sampled
    deterministically by ``seed``. Each image carries label, synset, model_id, view, azimuth,
    elevation, distance, silhouette ``area`` and the camera pose (pose_00..pose_15, row-major
    camera-to-world). Broken models are skipped and listed in ``out/failures.jsonl``. Re-running
    the same call resumes.
    """
    source = make_source(shapenet_root=shapenet_root, classes=classes, models_per_class=models_per_class,
                         views=views, viewpoints=viewpoints, image_size=image_size, max_faces=max_faces,
                         seed=seed, msaa=msaa, fov_deg=fov_deg)
    workers = workers or default_workers()
    # One single-threaded Mesa rasteriser per worker beats workers that fight over cores.
    source.rasterizer_threads = 0 if workers > 1 else None
    if shard_size is None:
        shard_size = views * max(1, 2_000 // views)  # whole models; ~300 MB of 224 px RGB per worker
    return build_dataset(source, out, shard_size=shard_size, workers=workers, backend=backend,
                         compression=compression, storage=fmt, overwrite=overwrite)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="render-shapenet",
        description="Render ShapeNetCore models (or the built-in procedural set of the nine study "
                    "classes) from many viewpoints into resumable, checksummed HDF5 shards, with "
                    "each view's silhouette area and camera pose.")
    add = parser.add_argument
    add("--out", required=True, type=Path, help="output folder (created; re-run to resume)")
    add("--shapenet-root", type=Path, default=None,
        help="ShapeNetCore v1 or v2 folder (<synset>/<model_id>/...); default: the built-in procedural set")
    add("--classes", default=None,
        help="comma-separated class names or synset ids (default: bench,bicycle,camera,car,chair,hat,"
             "helmet,laptop,sofa; hat renders ShapeNet's cap)")
    add("--models-per-class", type=positive_int, default=None,
        help=f"models per class, sampled by --seed (default: all ShapeNet models; {DEFAULT_MODELS_PER_CLASS} procedural)")
    add("--views", type=positive_int, default=100, help="viewpoints per model (default 100)")
    add("--viewpoints", choices=VIEWPOINTS, default="fibonacci",
        help="fibonacci: even sphere coverage, randomly rotated per model (default); "
             "grid: fixed azimuth x elevation rings")
    add("--image-size", type=image_side, default=224,
        help=f"image side in pixels, {IMAGE_SIZES[0]} to {IMAGE_SIZES[1]} (default 224)")
    add("--max-faces", type=positive_int, default=DEFAULT_MAX_FACES,
        help=f"skip (and record) models with more faces (default {DEFAULT_MAX_FACES})")
    add("--msaa", type=int, choices=MSAA_CHOICES, default=0,
        help="multisample anti-aliasing samples (default 0: about 3x faster on a CPU rasteriser)")
    add("--fov", dest="fov_deg", type=float, default=DEFAULT_FOV_DEG,
        help=f"vertical field of view in degrees; the camera distance keeps the unit sphere in view (default {DEFAULT_FOV_DEG:g})")
    add("--seed", type=non_negative_int, default=0, help="seed that fixes the model sample, viewpoints and every pixel (default 0)")
    add_build_arguments(parser, shard_size=None, workers_help="worker processes, one renderer each",
                        shard_size_help="default: whole models, about 2000 images",
                        png_help="PNG files as <class>/<model_id>/<view>.png")
    return parser


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    options = vars(args)
    options.pop("verbose")
    out = options.pop("out")
    result = render_shapenet(out, **options)
    print(result.summary(), file=sys.stderr)
    failed = result.failures
    models = result.images // options["views"] + failed  # whole models: every view or none
    print(f"models: {models - failed} rendered, {failed} failed"
          + (f" (reasons in {Path(out) / 'failures.jsonl'})" if failed else ""), file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("render-shapenet", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
