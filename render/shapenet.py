"""Reading a ShapeNetCore tree: v1/v2 layouts, taxonomy.json, class selection and model loading.

Layouts (detected per tree):
- v1: ``<synset>/<model_id>/model.obj`` (+ .mtl, images/)
- v2: ``<synset>/<model_id>/models/model_normalized.obj`` (+ .mtl, textures in ``../images/``)

Loading is strict: a model that is missing, empty, has no faces or non-finite vertices, names a
material or texture file that is missing or unreadable, or has more than ``max_faces`` faces
raises ``BrokenModel`` with a one-line reason, and the renderer records and skips it.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.errors import FdslError
from fdsl.jsonfile import read_json
from fdsl.render.renderer import MeshPart

log = logging.getLogger(__name__)

LAYOUT_FILES = {"v1": Path("model.obj"), "v2": Path("models/model_normalized.obj")}
STUDY_CLASSES = ("bench", "bicycle", "camera", "car", "chair", "hat", "helmet", "laptop", "sofa")
# The nine classes of the viewpoint study. "bicycle" is listed in ShapeNet's taxonomy but absent
# from the released archives; "hat" is ShapeNet's "cap" (56 models).
SYNSETS = {"bench": "02828884", "bicycle": "02834778", "camera": "02942699", "car": "02958343",
           "chair": "03001627", "hat": "02954340", "cap": "02954340", "helmet": "03513137",
           "laptop": "03642806", "sofa": "04256520", "motorbike": "03790512"}
SUBSTITUTES = {"bicycle": "motorbike"}
STUDY_NAMES = {SYNSETS["hat"]: "hat"}  # synsets named as in the study however they are selected
_SYNSET_RE = re.compile(r"^\d{8}$")
_COUNT_RE = re.compile(r"\s*\(\d+\)\s*$")  # the model count in a jstree node's text: "armchair (100)"


class BrokenModel(Exception):
    """A model that cannot be rendered; the message is the reason recorded in failures.jsonl."""


@dataclass(frozen=True)
class ModelRef:
    """One model to render: its class label, synset, id and OBJ path (as a string, to pickle)."""

    label: int
    synset: str
    model_id: str
    path: str


def detect_layout(root: Path) -> str:
    """``v1`` or ``v2``, from the first model folder that holds an OBJ at a known place."""
    for synset_dir in sorted(p for p in root.iterdir() if p.is_dir() and _SYNSET_RE.match(p.name)):
        for model_dir in sorted(p for p in synset_dir.iterdir() if p.is_dir()):
            for layout, rel in LAYOUT_FILES.items():
                if (model_dir / rel).is_file():
                    return layout
    raise FdslError(f"{root}: no ShapeNetCore models found (expected <synset>/<model_id>/model.obj "
                    "or <synset>/<model_id>/models/model_normalized.obj)")


_TAXONOMY_FORMS = ("expected a list of {\"synsetId\", \"name\"} entries or a jstree of nodes "
                   "with metadata.name / text")


def _walk_jstree(path: Path, nodes: Any, out: dict[str, str], where: str = "") -> None:
    for k, node in enumerate(nodes if isinstance(nodes, list) else [nodes]):
        here = f"{where}[{k}]" if isinstance(nodes, list) else where or "top level"
        if not isinstance(node, dict):
            raise FdslError(f"{path}: entry {here} is {type(node).__name__} {str(node)[:40]!r}, "
                            f"not an object; {_TAXONOMY_FORMS}")
        meta = node.get("metadata") or node.get("li_attr") or {}
        if not isinstance(meta, dict):
            raise FdslError(f"{path}: entry {here} has a metadata that is not an object")
        synset = str(meta.get("name") or meta.get("synsetId") or node.get("id") or "")
        label = meta.get("label") or _COUNT_RE.sub("", str(node.get("text") or ""))
        if _SYNSET_RE.match(synset) and label:
            out.setdefault(synset, str(label))
        children = node.get("children", [])
        if not isinstance(children, list | dict):
            raise FdslError(f"{path}: children of entry {here} are not a list")
        _walk_jstree(path, children, out, f"{here}.children")


def read_taxonomy(root: Path) -> dict[str, str]:
    """synset -> comma-separated names, from ``root/taxonomy.json`` (flat list or nested jstree
    form); an empty dict when the file is missing (the built-in table is used instead). A file
    that is not one of those forms (a string, a list of odd entries, an object of junk, a folder)
    raises FdslError in one line."""
    path = root / "taxonomy.json"
    if not path.exists():
        return {}
    if not path.is_file():
        raise FdslError(f"{path}: is not a file; remove it or give a ShapeNet taxonomy.json")
    data = read_json(path, "taxonomy")
    if not isinstance(data, list | dict):
        raise FdslError(f"{path}: holds a {type(data).__name__}; {_TAXONOMY_FORMS}")
    names: dict[str, str] = {}
    if isinstance(data, list) and data and isinstance(data[0], dict) and "synsetId" in data[0]:
        for k, entry in enumerate(data):
            synset = entry.get("synsetId") if isinstance(entry, dict) else None
            if not isinstance(synset, str) or not _SYNSET_RE.match(synset):
                raise FdslError(f"{path}: entry [{k}] has no 8-digit synsetId ({str(entry)[:60]!r}); "
                                f"{_TAXONOMY_FORMS}")
            names.setdefault(synset, str(entry.get("name", "")))
    else:
        _walk_jstree(path, data, names)
    if not names:
        raise FdslError(f"{path}: no synset entries found; {_TAXONOMY_FORMS}")
    return names


def resolve_class(name: str, taxonomy: dict[str, str]) -> tuple[str, str]:
    """(class name, synset) for a class given by name or 8-digit synset id. ShapeNet's cap synset
    is named "hat" (the study's name) whether it is given as hat, cap or 02954340."""
    key = name.strip().lower()
    if _SYNSET_RE.match(key):
        label = taxonomy.get(key, key).split(",")[0].strip() or key
        inverse = {v: k for k, v in SYNSETS.items() if k not in SUBSTITUTES.values()}
        return STUDY_NAMES.get(key, inverse.get(key, label)), key
    if key in SYNSETS:
        return STUDY_NAMES.get(SYNSETS[key], key), SYNSETS[key]
    for synset, names in sorted(taxonomy.items()):
        if key in (n.strip().lower() for n in names.split(",")):
            return STUDY_NAMES.get(synset, key), synset
    raise FdslError(f"unknown class {name!r}: give a ShapeNet synset id or one of "
                    f"{', '.join(sorted(SYNSETS))} (or a name in taxonomy.json)")


def list_models(root: Path, synset: str, layout: str) -> list[tuple[str, Path]]:
    """(model_id, OBJ path) of every model folder of ``synset``, sorted by id. Folders without the
    OBJ are listed too (they become failure records, not silent gaps)."""
    folder = root / synset
    if not folder.is_dir():
        return []
    return [(p.name, p / LAYOUT_FILES[layout]) for p in sorted(folder.iterdir()) if p.is_dir()]


def select_models(models: list[tuple[str, Path]], k: int | None, seed: int, synset: str) -> list[tuple[str, Path]]:
    """A deterministic sample of ``k`` models (all when ``k`` is None or >= the count), kept in id
    order; the sample depends on (seed, synset) and the listing only."""
    if k is None or k >= len(models):
        return list(models)
    rng = np.random.default_rng([seed, zlib.crc32(synset.encode())])
    picked = np.sort(rng.choice(len(models), size=k, replace=False))
    return [models[i] for i in picked]


# --------------------------------------------------------------------------- model selection


def shapenet_models(root: Path, classes: Sequence[str], models_per_class: int | None,
                    seed: int) -> tuple[list[str], list[str], list[ModelRef], list[str]]:
    """(class names, synsets, model refs, notes) for a ShapeNetCore tree; classes that the tree
    lacks are dropped with a warning (and a note for the manifest)."""
    if not root.is_dir():
        raise FdslError(f"--shapenet-root {root}: no such folder")
    layout = detect_layout(root)
    taxonomy = read_taxonomy(root)
    names, synsets, refs, notes = [], [], [], [f"ShapeNetCore {layout} layout"]
    seen: set[str] = set()
    for raw in classes:
        name, synset = resolve_class(raw, taxonomy)
        if synset in seen:
            raise FdslError(f"class {raw!r} ({synset}) is given twice in --classes")
        seen.add(synset)
        models = list_models(root, synset, layout)
        if not models:
            hint = ""
            if name in SUBSTITUTES:
                sub = SUBSTITUTES[name]
                hint = f"; nearest substitute: --classes {sub} ({SYNSETS[sub]})"
            notes.append(f"{name} ({synset}): not in this ShapeNetCore tree, dropped{hint}")
            continue
        if synset == SYNSETS["hat"]:
            notes.append(f"hat: rendered from ShapeNet's cap synset {synset} (56 models in the release)")
        label = len(names)
        names.append(name)
        synsets.append(synset)
        picked = select_models(models, models_per_class, seed, synset)
        refs += [ModelRef(label, synset, model_id, str(path)) for model_id, path in picked]
    for note in notes[1:]:
        log.warning(note)
    if not names:
        raise FdslError(f"none of the classes {', '.join(classes)} has models under {root}")
    return names, synsets, refs, notes


# --------------------------------------------------------------------------- loading


def _referenced(text: str, keyword: str) -> list[str]:
    return [line.split(None, 1)[1].strip() for line in text.splitlines()
            if line.startswith(keyword) and len(line.split(None, 1)) == 2]


def check_materials(obj_path: Path, obj_text: str) -> None:
    """Raise BrokenModel when a material library or a texture it names is missing or unreadable
    (textures are decoded in full: a truncated image fails here, not in the renderer)."""
    from PIL import Image

    for mtl_name in _referenced(obj_text, "mtllib"):
        mtl = obj_path.parent / mtl_name
        if not mtl.is_file():
            raise BrokenModel(f"missing material file {mtl_name}")
        try:
            mtl_text = mtl.read_text(errors="replace")
        except OSError as exc:
            raise BrokenModel(f"unreadable material file {mtl_name}: {exc.strerror}") from None
        for line in mtl_text.splitlines():
            words = line.split()
            if not words or not words[0].startswith("map_"):
                continue
            texture = mtl.parent / words[-1]
            try:
                with Image.open(texture) as image:
                    image.verify()  # checksums (PNG); it decodes nothing, so decode it too
                with Image.open(texture) as image:
                    image.load()  # a truncated JPEG fails only here
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                raise BrokenModel(f"unreadable texture {words[-1]}: {type(exc).__name__}") from None


def _parts_from_geometry(geometry) -> MeshPart:
    vertices = np.asarray(geometry.vertices, np.float64)
    faces = np.asarray(geometry.faces, np.int64)
    color: tuple[float, float, float, float] = (0.7, 0.7, 0.7, 1.0)
    uv = texture = None
    visual = geometry.visual
    material = getattr(visual, "material", None)
    if material is not None:
        pbr = material.to_pbr() if hasattr(material, "to_pbr") else material
        factor = getattr(pbr, "baseColorFactor", None)
        if factor is not None:
            factor = np.asarray(factor, np.float64)
            color = tuple((factor / 255.0 if factor.max() > 1 else factor).tolist())[:4]
            color = (*color[:3], 1.0)
        image = getattr(pbr, "baseColorTexture", None)
        if image is not None and getattr(visual, "uv", None) is not None and len(visual.uv) == len(vertices):
            texture = np.asarray(image.convert("RGBA") if image.mode not in ("RGB", "RGBA") else image)
            uv = np.asarray(visual.uv, np.float32)
            uv = np.where(np.isfinite(uv), uv, 0.0)
    return MeshPart(vertices.astype(np.float32), faces, color, None, uv, texture)


def count_faces(obj_bytes: bytes) -> int:
    """Face lines in an OBJ file (cheap, before parsing a possibly huge mesh)."""
    return sum(obj_bytes.count(b"\nf" + space) + int(obj_bytes.startswith(b"f" + space))
               for space in (b" ", b"\t"))


def _resolver(path: Path):
    """A texture resolver that may follow v2's ``../images/`` paths (trimesh >= 5 refuses paths
    outside the OBJ's folder unless told; older trimesh allows them anyway)."""
    from trimesh.resolvers import FilePathResolver

    try:
        return FilePathResolver(str(path), allow_anywhere=True)
    except TypeError:
        return FilePathResolver(str(path))


def _missing_reason(path: Path) -> str:
    folder = path.parent if path.parent.is_dir() else path.parent.parent
    if folder.is_dir() and not any(folder.iterdir()):
        return "empty model folder"
    return f"missing file {path.name}"


def load_model(path: str | Path, max_faces: int) -> list[MeshPart]:
    """Load an OBJ as drawable parts (one per material), or raise BrokenModel with the reason."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise BrokenModel(_missing_reason(path))
    data = path.read_bytes()
    if not data.strip():
        raise BrokenModel("empty file")
    faces = count_faces(data)
    if faces == 0:
        raise BrokenModel("zero faces")
    if faces > max_faces:
        raise BrokenModel(f"{faces} faces > --max-faces {max_faces}")
    check_materials(path, data.decode("utf-8", errors="replace"))
    try:
        scene = trimesh.load(path, force="scene", process=False, resolver=_resolver(path))
    except Exception as exc:  # noqa: BLE001 - any parser error means a broken file
        raise BrokenModel(f"unreadable OBJ: {type(exc).__name__}: {str(exc)[:120]}") from None
    parts = []
    for geometry in scene.dump():
        if not hasattr(geometry, "faces") or len(geometry.faces) == 0:
            continue
        parts.append(_parts_from_geometry(geometry))
    if not parts:
        raise BrokenModel("zero faces")
    for part in parts:
        if not np.isfinite(part.vertices).all():
            raise BrokenModel("non-finite (NaN or inf) vertices")
    return parts
