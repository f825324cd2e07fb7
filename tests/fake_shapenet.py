"""Build tiny fake ShapeNetCore v1 / v2 trees (OBJ + MTL + PNG) with good and broken models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

CHAIR, LAPTOP = "03001627", "03642806"
GOOD = {CHAIR: ["chair_a", "chair_b", "chair_tex"], LAPTOP: ["laptop_a", "laptop_b"]}
BROKEN = {  # model id -> the reason keyword the failure record must contain
    "empty_folder": "empty model folder",
    "empty_file": "empty file",
    "zero_faces": "zero faces",
    "nan_vertices": "non-finite",
    "bad_texture": "unreadable texture",
    "bad_jpeg": "unreadable texture",  # a truncated JPEG: opens, fails only when decoded
}
TEXTURES = {"chair_tex": "texture0.png", "bad_texture": "missing_texture.png", "bad_jpeg": "truncated.jpg"}


def _obj_text(mesh: trimesh.Trimesh, material: str | None, uv: np.ndarray | None = None) -> str:
    lines = ["# fake ShapeNet model"]
    if material:
        lines += ["mtllib model.mtl" if material != "normalized" else "mtllib model_normalized.mtl"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in mesh.vertices]
    if uv is not None:
        lines += [f"vt {u:.6f} {v:.6f}" for u, v in uv]
    if material:
        lines.append("usemtl mat0")
    for a, b, c in mesh.faces + 1:
        lines.append(f"f {a}/{a} {b}/{b} {c}/{c}" if uv is not None else f"f {a} {b} {c}")
    return "\n".join(lines) + "\n"


def _model_mesh(model_id: str) -> trimesh.Trimesh:
    """A chair-ish or laptop-ish shape, different per id, with +Y up."""
    k = sum(model_id.encode()) % 5
    seat = trimesh.creation.box(extents=[1.0, 0.1 + 0.02 * k, 1.0])
    back = trimesh.creation.box(extents=[1.0, 1.0, 0.1], transform=trimesh.transformations.translation_matrix([0, 0.5, 0.45]))
    return trimesh.util.concatenate([seat, back])


def _write_model(folder: Path, obj_name: str, model_id: str, image_dir: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    mtl_name = Path(obj_name).with_suffix(".mtl").name
    mesh = _model_mesh(model_id)
    uv = None
    mtl = ["newmtl mat0", f"Kd {0.2 + 0.1 * (len(model_id) % 5):.2f} 0.4 0.6"]
    if model_id in TEXTURES:
        uv = (mesh.vertices[:, [0, 2]] + 0.5) % 1.0
        texture = TEXTURES[model_id]
        rel = Path(*[".."] * len(folder.relative_to(image_dir.parent).parts)) / image_dir.name / texture
        mtl.append(f"map_Kd {rel.as_posix()}")
        if model_id != "bad_texture":
            image_dir.mkdir(parents=True, exist_ok=True)
            checker = (np.indices((16, 16)).sum(axis=0) % 2 * 200 + 30).astype(np.uint8)
            Image.fromarray(np.stack([checker, checker // 2, 255 - checker], -1)).save(image_dir / texture)
            if model_id == "bad_jpeg":  # keep the headers, cut the scan data short
                data = (image_dir / texture).read_bytes()
                (image_dir / texture).write_bytes(data[: data.index(b"\xff\xda") + 32])
    text = _obj_text(mesh, "normalized" if obj_name.endswith("model_normalized.obj") else "model", uv)
    (folder / obj_name).write_text(text)
    (folder / mtl_name).write_text("\n".join(mtl) + "\n")


def _write_broken(model_dir: Path, rel_obj: Path, model_id: str) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    if model_id == "empty_folder":
        return
    obj = model_dir / rel_obj
    obj.parent.mkdir(parents=True, exist_ok=True)
    if model_id == "empty_file":
        obj.write_bytes(b"")
    elif model_id == "zero_faces":
        obj.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    elif model_id == "nan_vertices":
        obj.write_text("v 0 0 0\nv nan 0 0\nv 0 1 0\nv 1 1 0\nf 1 2 3\nf 2 4 3\n")
    elif model_id in TEXTURES:
        _write_model(obj.parent, obj.name, model_id, model_dir / "images")


def make_tree(root: Path, version: str = "v2", taxonomy: str | None = "flat") -> Path:
    """Write a fake ShapeNetCore tree under ``root`` and return it.

    version: ``v1`` (``<synset>/<id>/model.obj``) or ``v2`` (``<synset>/<id>/models/
    model_normalized.obj``, textures in ``<id>/images``). taxonomy: ``flat``, ``jstree`` or None.
    The chair synset also holds the broken models named in BROKEN.
    """
    rel_obj = Path("model.obj") if version == "v1" else Path("models/model_normalized.obj")
    for synset, ids in GOOD.items():
        for model_id in ids:
            model_dir = root / synset / model_id
            _write_model((model_dir / rel_obj).parent, rel_obj.name, model_id, model_dir / "images")
    for model_id in BROKEN:
        _write_broken(root / CHAIR / model_id, rel_obj, model_id)
    entries = [{"synsetId": CHAIR, "name": "chair", "children": [], "numInstances": 8},
               {"synsetId": LAPTOP, "name": "laptop,laptop computer", "children": [], "numInstances": 2}]
    if taxonomy == "flat":
        (root / "taxonomy.json").write_text(json.dumps(entries))
    elif taxonomy == "jstree":
        tree = [{"id": e["synsetId"], "text": e["name"].split(",")[0] + f" ({e['numInstances']})",
                 "li_attr": {}, "metadata": {"name": e["synsetId"], "label": e["name"]}, "children": []}
                for e in entries]
        (root / "taxonomy.json").write_text(json.dumps(tree))
    return root
