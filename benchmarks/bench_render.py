"""Benchmark: CPU-ms per rendered view (colour + silhouette) against a naive pyrender loop.

Cases, all 224x224 unless --image-size says otherwise:
- naive pyrender (baseline): default OffscreenRenderer (4x MSAA, PBR shader), Mesh.from_trimesh,
  a directional light, one renderer, only the camera moving; the silhouette from its depth.
- fdsl renderer: fdsl.render.renderer (Lambert shader, no MSAA, culling off, area from depth).
- end to end: render_shapenet on the procedural set into LZ4 shards (inline, one process), against
  the pure render cost of the same views (Renderer.render only) measured in the same run.

Each renderer case runs in its own subprocess (pyrender allows one renderer per process).
Meshes: tori with 1,040 and 50,000 faces. Run: .venv/bin/python benchmarks/bench_render.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "render.md"
MESHES = {"1k faces": (40, 13), "50k faces": (250, 100)}  # torus (major, minor) sections


def _torus(sections):
    import trimesh

    return trimesh.creation.torus(1.0, 0.35, major_sections=sections[0], minor_sections=sections[1])


def _poses(n):
    from fdsl.render.viewpoints import camera_distance, make_views

    return make_views("fibonacci", n, camera_distance(math.radians(40)), np.random.default_rng(0)).poses


def _gl_renderer_name() -> str:
    from OpenGL.GL import GL_RENDERER, glGetString

    name = glGetString(GL_RENDERER)
    return name.decode() if isinstance(name, bytes) else str(name)


def _timed(fn, views):
    fn(2)  # warm-up: shader compilation, buffer upload
    cpu, wall = time.process_time(), time.perf_counter()
    fn(views)
    return (time.process_time() - cpu) / views * 1e3, (time.perf_counter() - wall) / views * 1e3


def child_naive(mesh_key: str, views: int, size: int) -> dict:
    from fdsl.render.renderer import configure_platform

    configure_platform()
    import pyrender

    scene = pyrender.Scene(bg_color=[1.0, 1.0, 1.0, 0.0], ambient_light=[0.3, 0.3, 0.3])
    scene.add(pyrender.Mesh.from_trimesh(_torus(MESHES[mesh_key])))
    camera = scene.add(pyrender.PerspectiveCamera(yfov=math.radians(40)))
    light = scene.add(pyrender.DirectionalLight(intensity=3.0))
    renderer = pyrender.OffscreenRenderer(size, size)
    poses = _poses(views)

    def run(n):
        for pose in poses[:n]:
            scene.set_pose(camera, pose)
            scene.set_pose(light, pose)
            _, depth = renderer.render(scene)
            float(np.count_nonzero(depth > 0)) / depth.size

    cpu, wall = _timed(run, views)
    return {"cpu_ms": cpu, "wall_ms": wall, "gl": _gl_renderer_name()}


def child_fdsl(mesh_key: str, views: int, size: int) -> dict:
    from fdsl.render.renderer import MeshPart, get_renderer

    mesh = _torus(MESHES[mesh_key])
    parts = [MeshPart(np.asarray(mesh.vertices, np.float32) / 1.35, np.asarray(mesh.faces), normals=np.asarray(mesh.vertex_normals, np.float32))]
    renderer = get_renderer(size, math.radians(40))
    poses = _poses(views)
    cpu, wall = _timed(lambda n: renderer.render(parts, poses[:n]), views)
    return {"cpu_ms": cpu, "wall_ms": wall, "gl": _gl_renderer_name()}


def child_end_to_end(models: int, views: int, size: int, repeats: int) -> dict:
    """Pure render and end-to-end runs, alternated ``repeats`` times (medians: this machine is
    shared and noisy). Also times the Renderer.render calls inside the end-to-end run."""
    import statistics

    from fdsl.render import renderer as renderer_module
    from fdsl.render.build import render_shapenet
    from fdsl.render.source import make_source

    source = make_source(models_per_class=models, views=views, image_size=size)
    renderer = renderer_module.get_renderer(size, math.radians(source.fov_deg))
    prepared = [(source.load_parts(ref), source.model_views(ref).poses) for ref in source.models]
    renderer.render(prepared[0][0], prepared[0][1][:2])  # warm-up
    inside = [0.0]
    original = renderer_module.Renderer.render

    def counted(self, *args, **kwargs):
        start = time.process_time()
        try:
            return original(self, *args, **kwargs)
        finally:
            inside[0] += time.process_time() - start

    pure, e2e, e2e_wall, share = [], [], [], []
    for _ in range(repeats):
        cpu = time.process_time()
        for parts, poses in prepared:
            renderer.render(parts, poses)
        pure.append(time.process_time() - cpu)
        renderer_module.Renderer.render = counted
        inside[0] = 0.0
        with tempfile.TemporaryDirectory() as out:
            cpu, wall = time.process_time(), time.perf_counter()
            result = render_shapenet(out, models_per_class=models, views=views, image_size=size, workers=1)
            e2e.append(time.process_time() - cpu)
            e2e_wall.append(time.perf_counter() - wall)
        renderer_module.Renderer.render = original
        share.append(e2e[-1] / inside[0])
    n = result.images
    return {"images": n, "pure_cpu_ms": statistics.median(pure) / n * 1e3,
            "e2e_cpu_ms": statistics.median(e2e) / n * 1e3, "e2e_wall_ms": statistics.median(e2e_wall) / n * 1e3,
            "in_run_ratio": statistics.median(share), "gl": _gl_renderer_name()}


def _run_child(*args: str, threads: str | None = "0") -> dict:
    env = dict(os.environ)
    env.pop("LP_NUM_THREADS", None)
    if threads is not None:
        env["LP_NUM_THREADS"] = threads
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                          env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child {args} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer views and models (about 1 minute)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here (for gpu_check)")
    parser.add_argument("--no-report", action="store_true", help="leave benchmarks/results/render.md as it is")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        fn = {"naive": child_naive, "fdsl": child_fdsl, "e2e": child_end_to_end}[kind]
        typed = [int(r) if r.isdigit() else r for r in rest]
        print(json.dumps(fn(*typed)))
        return

    views = 30 if args.quick else 100
    size = args.image_size
    rows = ["| mesh | rasteriser threads | naive pyrender CPU-ms/view | fdsl CPU-ms/view | speed-up (CPU) | naive wall-ms | fdsl wall-ms |",
            "|---|---|---|---|---|---|---|"]
    gl = ""
    figures: dict = {"image_size": size, "views": views, "cases": []}
    for threads, label in ((None, "Mesa default"), ("0", "1 (LP_NUM_THREADS=0, as in workers)")):
        for key in MESHES:
            naive = _run_child("naive", key, str(views), str(size), threads=threads)
            ours = _run_child("fdsl", key, str(views), str(size), threads=threads)
            gl = ours["gl"]
            figures["cases"].append({"mesh": key, "threads": label, "naive": naive, "fdsl": ours,
                                     "fdsl_views_per_s": 1e3 / ours["wall_ms"]})
            rows.append(f"| {key} | {label} | {naive['cpu_ms']:.1f} | {ours['cpu_ms']:.1f} | "
                        f"{naive['cpu_ms'] / ours['cpu_ms']:.1f}x | {naive['wall_ms']:.1f} | {ours['wall_ms']:.1f} |")
    models, e2e_views, repeats = (1, 20, 3) if args.quick else (3, 100, 3)
    e2e = _run_child("e2e", str(models), str(e2e_views), str(size), str(repeats))
    ratio = e2e["e2e_cpu_ms"] / e2e["pure_cpu_ms"]
    rows += ["", f"End to end (rasteriser threads: 1; medians of {repeats} alternated runs):", "",
             "| procedural set, 9 classes | images | pure render CPU-ms/view | end-to-end CPU-ms/view | ratio (target <= 1.3) "
             "| end-to-end / its own render calls | end-to-end wall-ms/view |",
             "|---|---|---|---|---|---|---|",
             f"| {models} model(s)/class x {e2e_views} views | {e2e['images']} | {e2e['pure_cpu_ms']:.2f} | "
             f"{e2e['e2e_cpu_ms']:.2f} | {ratio:.2f} | {e2e['in_run_ratio']:.2f} | {e2e['e2e_wall_ms']:.2f} |"]
    on_gpu = "nvidia" in gl.lower()
    device = (f"GPU ({gl}): {1000 / float(e2e['e2e_wall_ms']):.0f} views/s end to end" if on_gpu
              else f"no GPU; ran on Mesa's CPU rasteriser ({gl})")
    table = "\n".join(rows)
    command = "python benchmarks/bench_render.py" + (" --quick" if args.quick else "")
    report = (f"# Rendering benchmark\n\n{table}\n\nTargets: <= 30 CPU-ms per view at 50k faces; end to end "
              f"within 1.3x of the pure render cost.\n\nDevice: {device}. Machine: {platform.platform()}, "
              f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}.\n"
              f"Image size {size}x{size}; CPU time = time.process_time of the rendering process (all its threads).\n\n"
              f"Command: `{command}`\n")
    print(table)
    print(f"\n{device}")
    if not args.no_report:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(report)
    if args.json:
        figures.update(gl_renderer=gl, on_nvidia=on_gpu, end_to_end=e2e,
                       end_to_end_views_per_s=1e3 / float(e2e["e2e_wall_ms"]))
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
