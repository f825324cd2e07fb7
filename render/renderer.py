"""One offscreen pyrender renderer per process: colour images and silhouette areas of a mesh.

pyrender facts this module is built around (measured on Mesa's CPU rasteriser):

- Creating an OffscreenRenderer costs 100-200 ms and two of them in one process break each
  other (deleting one tears down the shared EGL display), so ``get_renderer`` keeps exactly one
  per process, created lazily the first time a worker renders (never at import, never in a parent
  that then spawns workers).
- pyrender's physically based mesh shader and its 4x MSAA colour buffer dominate the cost. We
  swap in a small Lambert shader (a light that follows the camera, plus ambient) and render
  without MSAA by default: about 3-5x fewer CPU-ms per view.
- The silhouette comes from the depth buffer of the same colour pass (``depth > 0``), with face
  culling off, so one-sided faces (laptop lids, chair backs) count from both sides. pyrender's
  DEPTH_ONLY and SEG passes always cull back faces, which is why they are not used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

BACKGROUND = (1.0, 1.0, 1.0)  # floats: pyrender reads ints as 0-255
ZNEAR, ZFAR = 0.05, 100.0

_VERTEX_SHADER = """
layout(location = 0) in vec3 position;
#ifdef NORMAL_LOC
layout(location = NORMAL_LOC) in vec3 normal;
#endif
#ifdef TEXCOORD_0_LOC
layout(location = TEXCOORD_0_LOC) in vec2 texcoord_0;
#endif
#ifdef COLOR_0_LOC
layout(location = COLOR_0_LOC) in vec4 color_0;
#endif
layout(location = INST_M_LOC) in mat4 inst_m;
uniform mat4 M;
uniform mat4 V;
uniform mat4 P;
out vec3 frag_position;
#ifdef NORMAL_LOC
out vec3 frag_normal;
#endif
#ifdef TEXCOORD_0_LOC
out vec2 uv_0;
#endif
#ifdef COLOR_0_LOC
out vec4 color_multiplier;
#endif
void main() {
    vec4 world = M * inst_m * vec4(position, 1.0);
    gl_Position = P * V * world;
    frag_position = world.xyz;
#ifdef NORMAL_LOC
    frag_normal = mat3(M * inst_m) * normal;  // model poses are rigid: no inverse-transpose
#endif
#ifdef TEXCOORD_0_LOC
    uv_0 = texcoord_0;
#endif
#ifdef COLOR_0_LOC
    color_multiplier = color_0;
#endif
}
"""

_FRAGMENT_SHADER = """
struct Material {
    vec4 base_color_factor;
#ifdef HAS_BASE_COLOR_TEX
    sampler2D base_color_texture;
#endif
};
uniform Material material;
uniform vec3 cam_pos;
uniform mat4 V;
in vec3 frag_position;
#ifdef NORMAL_LOC
in vec3 frag_normal;
#endif
#ifdef TEXCOORD_0_LOC
in vec2 uv_0;
#endif
#ifdef COLOR_0_LOC
in vec4 color_multiplier;
#endif
out vec4 frag_color;
void main() {
    vec4 base = material.base_color_factor;
#ifdef HAS_BASE_COLOR_TEX
    base *= texture(material.base_color_texture, uv_0);
#endif
#ifdef COLOR_0_LOC
    base.rgb *= color_multiplier.rgb;
#endif
    vec3 n = normalize(cross(dFdx(frag_position), dFdy(frag_position)));  // flat shading
#ifdef NORMAL_LOC
#ifdef COLOR_0_LOC
    if (color_multiplier.a > 0.5) n = normalize(frag_normal);  // alpha flags smooth parts
#else
    n = normalize(frag_normal);
#endif
#endif
    vec3 to_cam = normalize(cam_pos - frag_position);
    if (dot(n, to_cam) < 0.0) n = -n;  // two-sided lighting for one-sided sheets
    // Key light above and to the left of the camera (rows of V are the camera axes in world).
    vec3 cam_right = vec3(V[0][0], V[1][0], V[2][0]);
    vec3 cam_up = vec3(V[0][1], V[1][1], V[2][1]);
    vec3 key = normalize(to_cam + 0.6 * cam_up - 0.4 * cam_right);
    float light = 0.3 + 0.55 * max(dot(n, key), 0.0) + 0.15 * max(dot(n, to_cam), 0.0);
    frag_color = vec4(clamp(base.rgb * light, 0.0, 1.0), 1.0);
}
"""


def configure_platform() -> None:
    """Headless EGL and the numpy-2 shim; must run before pyrender or OpenGL is imported."""
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    if not hasattr(np, "infty"):  # numpy 2 removed it; pyrender's Mesh.bounds still uses it
        np.infty = np.inf


def _lambert_cache_class():
    """A pyrender shader cache that serves our Lambert shader in place of the PBR mesh shader."""
    from pyrender.shader_program import ShaderProgram, ShaderProgramCache

    class SourceProgram(ShaderProgram):
        def _load(self, source: str) -> str:
            defines = "".join(f"#define {k} {v}\n" for k, v in sorted(self.defines.items()))
            return "#version 330 core\n" + defines + source

    class LambertCache(ShaderProgramCache):
        def get_program(self, vertex_shader, fragment_shader, geometry_shader=None, defines=None):
            if (vertex_shader, fragment_shader, geometry_shader) != ("mesh.vert", "mesh.frag", None):
                return super().get_program(vertex_shader, fragment_shader, geometry_shader, defines)
            key = ("lambert", *sorted((defines or {}).items()))
            if key not in self._program_cache:
                self._program_cache[key] = SourceProgram(_VERTEX_SHADER, _FRAGMENT_SHADER,
                                                         defines=dict(defines or {}))
            return self._program_cache[key]

    return LambertCache


def _patch_msaa(samples: int) -> None:
    """Make pyrender allocate its 'multisample' buffers with ``samples`` samples (0 = none)."""
    import pyrender.renderer as pyrender_renderer

    original = getattr(pyrender_renderer, "_fdsl_original_storage", None)
    if original is None:
        original = pyrender_renderer.glRenderbufferStorageMultisample
        pyrender_renderer._fdsl_original_storage = original

    def storage(target, _samples, internal_format, width, height):
        return original(target, samples, internal_format, width, height)

    pyrender_renderer.glRenderbufferStorageMultisample = storage


@dataclass
class MeshPart:
    """One drawable part: vertices float32 [V,3], faces int [F,3], an RGBA base colour in [0,1],
    optional per-vertex normals float32 [V,3] (None = flat shading), uv float32 [V,2] and a
    texture image uint8 [h,w,3|4] (both or neither)."""

    vertices: np.ndarray
    faces: np.ndarray
    color: tuple[float, float, float, float] = (0.7, 0.7, 0.7, 1.0)
    normals: np.ndarray | None = None
    uv: np.ndarray | None = None
    texture: np.ndarray | None = None


def silhouette_area(depth: np.ndarray) -> float:
    """Fraction of pixels the object covers, from a depth image float [H,W] (0 = background)."""
    return float(np.count_nonzero(depth > 0)) / depth.size


class Renderer:
    """A pyrender scene with one camera; ``render`` draws a model from a list of camera poses.

    Do not build one yourself in code that may run twice in a process: use ``get_renderer``.
    """

    def __init__(self, size: int, yfov: float, msaa: int = 0) -> None:
        configure_platform()
        _patch_msaa(msaa)
        import pyrender

        self.size, self.yfov, self.msaa = size, yfov, msaa
        self._pyrender = pyrender
        self.scene = pyrender.Scene(bg_color=[*BACKGROUND, 0.0], ambient_light=[0.0, 0.0, 0.0])
        camera = pyrender.PerspectiveCamera(yfov=yfov, znear=ZNEAR, zfar=ZFAR, aspectRatio=1.0)
        self.camera_node = self.scene.add(camera)
        self.offscreen = pyrender.OffscreenRenderer(size, size)
        self.offscreen._renderer._program_cache = _lambert_cache_class()()
        self._flags = pyrender.RenderFlags.SKIP_CULL_FACES

    def _primitive(self, part: MeshPart):
        """A primitive for one (textured) part."""
        pyrender = self._pyrender
        texture = None
        if part.texture is not None:
            channels = "RGBA" if part.texture.shape[-1] == 4 else "RGB"
            texture = pyrender.Texture(source=part.texture, source_channels=channels)
        material = pyrender.MetallicRoughnessMaterial(
            baseColorFactor=np.asarray(part.color, np.float32), baseColorTexture=texture,
            doubleSided=True, alphaMode="OPAQUE")
        return pyrender.Primitive(
            positions=np.asarray(part.vertices, np.float32),
            normals=None if part.normals is None else np.asarray(part.normals, np.float32),
            texcoord_0=None if part.uv is None else np.asarray(part.uv, np.float32),
            indices=np.asarray(part.faces, np.uint32), material=material, mode=4)

    def _merged_primitive(self, parts: Sequence[MeshPart]):
        """One primitive for all untextured parts: colours per vertex, the alpha channel says
        whether a part is smooth (vertex normals) or flat. One draw call instead of one per part
        matters: pyrender spends ~0.1 ms of Python per draw call."""
        pyrender = self._pyrender
        offsets = np.cumsum([0] + [len(p.vertices) for p in parts])
        smooth = [p.normals is not None for p in parts]
        colors = np.concatenate([np.tile([*p.color[:3], float(s)], (len(p.vertices), 1))
                                 for p, s in zip(parts, smooth, strict=True)]).astype(np.float32)
        normals = None
        if any(smooth):
            normals = np.concatenate([p.normals if p.normals is not None else np.zeros_like(p.vertices)
                                      for p in parts]).astype(np.float32)
        material = pyrender.MetallicRoughnessMaterial(baseColorFactor=np.ones(4, np.float32),
                                                      doubleSided=True, alphaMode="OPAQUE")
        return pyrender.Primitive(
            positions=np.concatenate([p.vertices for p in parts]).astype(np.float32), normals=normals,
            color_0=colors, material=material, mode=4,
            indices=np.concatenate([p.faces + o for p, o in zip(parts, offsets, strict=False)]).astype(np.uint32))

    def _mesh(self, parts: Sequence[MeshPart]):
        plain = [p for p in parts if p.texture is None or p.uv is None]
        primitives = [self._primitive(p) for p in parts if p.texture is not None and p.uv is not None]
        if plain:
            primitives.append(self._merged_primitive(plain))
        return self._pyrender.Mesh(primitives)

    def render(self, parts: Sequence[MeshPart], poses: np.ndarray,
               out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``parts`` from each camera pose (float [n,4,4], camera-to-world, OpenGL axes).

        Returns RGB images uint8 [n, size, size, 3] (written into ``out`` when given, which saves
        a copy of the whole batch) and silhouette areas float32 [n].
        The mesh is removed from the scene afterwards, which frees its GL buffers on the next
        render, so memory stays flat over thousands of models.
        """
        mesh = self._mesh(parts)
        node = self.scene.add(mesh)
        shape = (len(poses), self.size, self.size, 3)
        images = np.empty(shape, np.uint8) if out is None else out
        if images.shape != shape or images.dtype != np.uint8:
            raise ValueError(f"out must be uint8 {shape}, got {images.dtype} {images.shape}")
        areas = np.empty(len(poses), np.float32)
        try:
            for k, pose in enumerate(poses):
                self.scene.set_pose(self.camera_node, pose)
                color, depth = self.offscreen.render(self.scene, flags=self._flags)
                images[k] = color
                areas[k] = silhouette_area(depth)
        finally:
            self.scene.remove_node(node)
        return images, areas


_RENDERER: Renderer | None = None


def get_renderer(size: int, yfov: float, msaa: int = 0) -> Renderer:
    """This process's renderer, created on first use and reused (never two per process); a later
    call with another size or MSAA setting reconfigures the same renderer."""
    global _RENDERER
    if _RENDERER is None:
        _RENDERER = Renderer(size, yfov, msaa)
    if _RENDERER.msaa != msaa:
        _patch_msaa(msaa)
        _RENDERER.offscreen._renderer._delete_main_framebuffer()  # reallocated on next render
        _RENDERER.msaa = msaa
    if _RENDERER.size != size:
        _RENDERER.offscreen.viewport_width = _RENDERER.offscreen.viewport_height = size
        _RENDERER.size = size
    _RENDERER.yfov = yfov
    _RENDERER.camera_node.camera.yfov = yfov
    return _RENDERER
