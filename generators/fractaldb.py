"""FractalDB (Kataoka et al., ACCV 2020): 2-D IFS fractals drawn with random 3x3 patches.

Category search (the official ``ifs_search.py``): candidate ``k`` draws N uniform in 2..7 maps of
six parameters a..f U(-1, 1) from ``default_rng([seed, 1, k])``; map i is chosen with probability
|a d - b c| / sum. Its chaos game (``search_points`` points from (0, 0), the origin included) is
drawn as single pixels on a 512 x 512 canvas (min/max box, 6 px padding) and the candidate is
accepted when the filling rate (non-zero pixels / 512^2) is >= ``fill_rate``. The classes are the
first ``classes`` accepted candidates in k order, whatever the number of workers.

Rendering (the official ``make_fractaldb.py`` with patch_gray, 362 px, 200k points): 25 parameter
variants in the official weights-file order (variant v scales parameter v // 4 (a..f) by
0.2, 0.6, 1.4 or 1.8 in every map, with the identity as variant 2; probabilities are not
renormalised) x 10 renders (different random patches on the same points) x 4 flips. Image ``i`` of
a class is variant ``i // 40``, render ``(i // 4) % 10``, flip ``i % 4``. Other ``--instances``
values set the renders per variant to ceil(instances / 100), as the official ``--instance`` flag
does (k renders of all 25 variants x 4 flips), so 100 instances are one render of every variant.

Each render drops the first 100 points, shifts and scales the rest by their min/max box into the
frame (6 px padding, truncated like the official ``np.uint16``) and pastes, point by point, a
random non-empty 3x3 binary mask at (x + 1, y + 1) in grey 127 on black (zeros overwrite, as PIL's
``paste``). Flip 0 is the official "as is" image (the canvas turned upside down so y points up),
flip 1 top-bottom, flip 2 left-right, flip 3 both.

Random streams (counter-based, see ``fdsl.generators.kernels.ifs2d``): search candidate k's
parameters from ``default_rng([seed, 1, k])`` and its chaos-game draws from (seed, 2, k); a class's
chaos-game draws from (seed, 3, class), shared by its 25 variants as the official shares one fixed
stream; the patch masks of a render from (seed, 4, class, variant, render), draw = orbit index.
So an image is fixed by (seed, class, variant, render, flip), whatever the workers or shards.

The search stops drawing a candidate as soon as the points left cannot reach the threshold, which
never changes its accept/reject decision (accepted candidates are counted in full).

Differences from the official code, all for reproducibility or robustness: every random number is
seeded (the official draws patches from the unseeded ``random`` module); a diverging (inf/NaN) orbit is cut before its first
non-finite point minus 100 points (the official handles NaN this way but breaks on inf); a zero
range puts the points at the padding; grey images are stored single-channel (the official writes
RGB with three equal channels).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import math
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.datasets.jobs import run_tasks
from fdsl.errors import FdslError
from fdsl.generators.kernels import ifs2d
from fdsl.sources import RenderedBatch

log = logging.getLogger(__name__)

DESCRIPTION = "2-D IFS fractals drawn with random 3x3 patches (Kataoka et al., ACCV 2020)"
OPTION_NAMES = ("fill_rate", "search_points", "color")

NAME = "fractaldb"
VERSION = "2"  # 2: fewer than 1000 instances use 1..9 renders of all 25 variants
MIN_MAPS, MAX_MAPS = 2, 7
PAD = 6
DROP_POINTS = 100
SEARCH_SIZE = 512
FLIPS = 4
RENDERS = 10
FACTORS = (0.2, 0.6, 1.4, 1.8)
GREY = 127
HUE_PERIOD = 128
COLOR_MODES = ("gray", "color")
DEFAULTS = {"image_size": 362, "points": 200_000, "instances": 1000, "fill_rate": 0.2,
            "search_points": 100_000, "color": "gray"}
MIN_IMAGE_SIZE = 16
MIN_POINTS = 200
TAG_SEARCH = 1
SEARCH_CHUNK = 256
EXPECTED_ACCEPT = 0.023  # about 2.3% of candidates pass at fill rate 0.2 here (sizes a round)
MAX_CANDIDATES_PER_CLASS = 5_000
NPZ_NAME = "classes.npz"
NPZ_VERSION = 1


def variant_weights() -> np.ndarray:
    """float64 [25, 6]: the official weights file (weights_0.4.csv) row by row: for parameter
    a..f in turn the factors 0.2, 0.6, (identity once, as row 2), 1.4, 1.8."""
    rows = []
    for param in range(6):
        for factor in (FACTORS[0], FACTORS[1], 1.0, FACTORS[2], FACTORS[3]):
            if factor == 1.0 and param > 0:
                continue
            row = np.ones(6)
            row[param] = factor
            rows.append(row)
    return np.array(rows)


WEIGHTS = variant_weights()
_GREY_PATCHES = ifs2d.patch_table(GREY)
_PATCH_BITS = ifs2d.patch_table(1)
VARIANTS = len(WEIGHTS)


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """FractalDB's own flags (all default None = official value)."""
    group.add_argument("--fill-rate", dest="fill_rate", type=float, default=None,
                       help="category search: accept a candidate when its filling rate (non-zero "
                            "pixels of a 512x512 point drawing) is >= this, in (0, 1] (default 0.2)")
    group.add_argument("--search-points", dest="search_points", type=int, default=None,
                       help="category search: chaos-game points per candidate (default 100000)")
    group.add_argument("--color", dest="color", choices=COLOR_MODES, default=None,
                       help="gray: grey-127 patches, single-channel images (default, the paper's "
                            "patch_gray); color: hue cycling with the point index, RGB images")


# --------------------------------------------------------------------------- class parameters


@dataclass(frozen=True)
class ClassParams:
    """The IFS of one class: maps float64 [N, 6] (a..f), probs float64 [N] (sum 1), the search
    candidate index (-1 if unknown) and its filling rate (NaN if unknown)."""

    maps: np.ndarray
    probs: np.ndarray
    candidate: int = -1
    fill_rate: float = float("nan")

    def cumulative(self) -> np.ndarray:
        """float64 [N]: running sums of probs, added one by one like the official code."""
        total, out = 0.0, []
        for p in self.probs:
            total += float(p)
            out.append(total)
        return np.array(out)


def sample_candidate(seed: int, k: int) -> ClassParams | None:
    """Candidate ``k`` of the search (None when every map is singular: no probabilities)."""
    rng = np.random.default_rng([seed % 2**64, TAG_SEARCH, k])
    n = int(rng.integers(MIN_MAPS, MAX_MAPS + 1))
    maps = rng.uniform(-1.0, 1.0, (n, 6))
    dets = np.array([abs(a * d - b * c) for a, b, c, d in maps[:, :4]])
    total = 0.0
    for det in dets:
        total += float(det)
    if not total > 0.0:
        return None
    return ClassParams(maps, dets / total, k)


def fill_needed(rate: float, size: int = SEARCH_SIZE) -> int:
    """The smallest pixel count c with ``c / size**2 >= rate`` (the official float comparison)."""
    area = float(size * size)
    need = max(0, math.ceil(rate * area))
    while need > 0 and (need - 1) / area >= rate:
        need -= 1
    while need / area < rate:
        need += 1
    return need


@dataclass
class _Scratch:
    """Buffers reused across candidates of one search chunk."""

    points: int
    xs: np.ndarray = field(init=False)
    ys: np.ndarray = field(init=False)
    canvas: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.xs, self.ys = np.empty(self.points), np.empty(self.points)
        self.canvas = np.zeros(SEARCH_SIZE * SEARCH_SIZE, np.uint8)


def candidate_fill(params: ClassParams, seed: int, search_points: int, need: int,
                   scratch: _Scratch | None = None) -> int:
    """Pixels filled by candidate ``params`` in the search drawing, or -1 when below ``need``.

    The orbit is cut like the official NaN handling: a non-finite point at index i removes it and
    the 100 points before it.
    """
    scratch = scratch or _Scratch(search_points)
    cum = params.cumulative()
    key = np.uint64(ifs2d.stream_key(seed, ifs2d.TAG_SEARCH_POINTS, params.candidate))
    box = np.empty(4)
    n = ifs2d.chaos_game(params.maps, cum, ifs2d.selection_table(cum), key, scratch.xs, scratch.ys, 0, box)
    if n < search_points:
        n = max(0, n - DROP_POINTS)
        ifs2d.box_of(scratch.xs, scratch.ys, 0, n, box)
    return ifs2d.fill_count(scratch.xs, scratch.ys, n, box, SEARCH_SIZE, PAD, need, scratch.canvas)


@dataclass(frozen=True)
class _SearchChunk:
    index: int
    start: int
    stop: int

    def __str__(self) -> str:
        return f"search chunk {self.index} (candidates {self.start}..{self.stop - 1})"


@dataclass(frozen=True)
class _SearchJob:
    """Evaluates one chunk of candidates; returns the accepted ones (picklable for workers)."""

    seed: int
    fill_rate: float
    search_points: int

    def __call__(self, chunk: _SearchChunk) -> list[ClassParams]:
        need = fill_needed(self.fill_rate)
        scratch = _Scratch(self.search_points)
        found = []
        for k in range(chunk.start, chunk.stop):
            params = sample_candidate(self.seed, k)
            if params is None:
                continue
            count = candidate_fill(params, self.seed, self.search_points, need, scratch)
            if count >= 0:
                found.append(ClassParams(params.maps, params.probs, k,
                                         count / float(SEARCH_SIZE * SEARCH_SIZE)))
        return found


def search_classes(classes: int, *, seed: int = 0, fill_rate: float = DEFAULTS["fill_rate"],
                   search_points: int = DEFAULTS["search_points"], workers: int = 1,
                   backend: str = "local") -> list[ClassParams]:
    """The first ``classes`` accepted candidates in candidate order (identical for any workers).

    Runs rounds of candidate chunks through ``run_tasks``; FdslError when the threshold is so
    high that too few candidates pass.
    """
    need = fill_needed(fill_rate)
    if search_points < need:
        raise FdslError(f"--search-points {search_points} cannot reach fill rate {fill_rate} "
                        f"(that needs {need} distinct pixels of {SEARCH_SIZE}x{SEARCH_SIZE})")
    job = _SearchJob(seed, fill_rate, search_points)
    accepted: list[ClassParams] = []
    next_k, chunk_index = 0, 0
    limit = MAX_CANDIDATES_PER_CLASS * classes + 10_000
    while len(accepted) < classes:
        if next_k >= limit:
            raise FdslError(f"only {len(accepted)} of {classes} classes reach fill rate {fill_rate} "
                            f"in {next_k} candidates; lower --fill-rate")
        # Size the round from the acceptance seen so far (thresholds change it a lot); a first
        # probe round stays small so a permissive threshold wastes little work.
        rate = EXPECTED_ACCEPT if next_k == 0 else max(len(accepted), 1) / next_k
        count = max(1, math.ceil((classes - len(accepted)) / rate * 1.2 / SEARCH_CHUNK))
        if next_k == 0:
            count = min(count, max(8, 4 * workers))
        chunks = [_SearchChunk(chunk_index + i, next_k + i * SEARCH_CHUNK, next_k + (i + 1) * SEARCH_CHUNK)
                  for i in range(count)]
        found: list[ClassParams] = []

        def on_result(chunk: _SearchChunk, result: list[ClassParams], found=found) -> int:
            found.extend(result)
            return chunk.stop - chunk.start

        # Spawning workers costs seconds: worth it only for a few chunks per worker.
        round_workers = workers if count >= 2 * workers else 1
        run_tasks(job, chunks, on_result, backend=backend, workers=round_workers,
                  total_items=count * SEARCH_CHUNK, unit="cand", desc="fractaldb search")
        accepted.extend(sorted(found, key=lambda p: p.candidate))
        next_k += count * SEARCH_CHUNK
        chunk_index += count
    log.info("fractaldb search: %d classes from %d candidates (fill rate >= %g)",
             classes, accepted[classes - 1].candidate + 1, fill_rate)
    return accepted[:classes]


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def params_to_npz(params: list[ClassParams], settings: Mapping[str, Any]) -> bytes:
    """``classes.npz`` bytes (byte-identical for identical input: fixed zip timestamps).

    Arrays: maps float64 [M, 6] (a..f of every class, class after class), probs float64 [M],
    offsets int64 [C + 1] (class c owns rows offsets[c]:offsets[c+1]), num_maps int64 [C],
    candidate int64 [C], fill_rate float64 [C]; settings as 0-d arrays (seed, fill_threshold,
    search_points, search_size, pad, format_version).
    """
    offsets = np.cumsum([0] + [len(p.maps) for p in params]).astype(np.int64)
    arrays = {
        "maps": np.concatenate([p.maps for p in params]).astype(np.float64),
        "probs": np.concatenate([p.probs for p in params]).astype(np.float64),
        "offsets": offsets,
        "num_maps": np.diff(offsets),
        "candidate": np.array([p.candidate for p in params], np.int64),
        "fill_rate": np.array([p.fill_rate for p in params], np.float64),
        "format_version": np.array(NPZ_VERSION, np.int64),
    }
    for key, value in settings.items():
        arrays[key] = np.array(np.nan if value is None else value)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, _npy_bytes(arrays[key]))
    return buf.getvalue()


def _official_csvs(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.csv"), key=lambda p: (p.stem, str(p)))


def load_official_csvs(folder: str | Path) -> list[ClassParams]:
    """Classes from a folder of the official search's CSVs (one ``<class>.csv`` per class, rows
    a,b,c,d,e,f,p; sub-folders such as ``csv0/`` are searched too), in file-name order."""
    folder = Path(folder)
    files = _official_csvs(folder)
    if not files:
        raise FdslError(f"{folder} holds no .csv files of FractalDB class parameters")
    out = []
    for file in files:
        try:
            rows = np.loadtxt(file, delimiter=",", ndmin=2, dtype=np.float64)
        except ValueError as exc:
            raise FdslError(f"cannot read FractalDB class parameters from {file}: {exc}") from None
        if rows.shape[1] != 7 or not len(rows):
            raise FdslError(f"{file}: expected rows of a,b,c,d,e,f,p")
        out.append(_checked(ClassParams(rows[:, :6].copy(), rows[:, 6].copy()), str(file)))
    return out


def _checked(params: ClassParams, where: str) -> ClassParams:
    """``params`` if usable: finite maps, probabilities >= 0 with a positive sum."""
    if not (np.all(np.isfinite(params.maps)) and np.all(np.isfinite(params.probs))
            and np.all(params.probs >= 0) and params.probs.sum() > 0 and 1 <= len(params.maps) <= 64):
        raise FdslError(f"{where}: bad maps or probabilities (need finite a..f, p >= 0, sum p > 0)")
    return params


def params_digest(path: str | Path) -> str:
    """sha256 of a classes.npz, or of a CSV folder's files (names and bytes, in order)."""
    path = Path(path)
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    digest = hashlib.sha256()
    for file in _official_csvs(path):
        digest.update(f"{file.relative_to(path).as_posix()}\n".encode() + file.read_bytes())
    return digest.hexdigest()


def load_class_params(path: str | Path) -> list[ClassParams]:
    """Read the per-class IFS parameters from a ``classes.npz`` written by this generator, or
    from a folder of the official CSVs (``load_official_csvs``)."""
    path = Path(path)
    if path.is_dir():
        return load_official_csvs(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            maps, probs, offsets = data["maps"], data["probs"], data["offsets"]
            candidate = data["candidate"] if "candidate" in data else np.full(len(offsets) - 1, -1)
            fill = data["fill_rate"] if "fill_rate" in data else np.full(len(offsets) - 1, np.nan)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise FdslError(f"cannot read FractalDB class parameters from {path}: {exc}") from None
    if maps.ndim != 2 or maps.shape[1] != 6 or probs.shape != (len(maps),) or offsets[-1] != len(maps):
        raise FdslError(f"{path}: not a FractalDB classes.npz (maps must be [M, 6] with offsets)")
    out = []
    for c in range(len(offsets) - 1):
        lo, hi = int(offsets[c]), int(offsets[c + 1])
        params = ClassParams(maps[lo:hi].copy(), probs[lo:hi].copy(), int(candidate[c]), float(fill[c]))
        out.append(_checked(params, f"{path}: class {c}"))
    return out


# --------------------------------------------------------------------------- rendering


def hue_palette(period: int = HUE_PERIOD) -> np.ndarray:
    """uint8 [period, 3]: the official ``convert_color`` (S = V = 0.75) for index 0..period-1,
    channel order as the official writes it into its RGB image."""
    out = np.zeros((period, 3), np.uint8)
    for index in range(period):
        s, value = 0.75, 0.75
        hue = 2.0 * math.pi * (float(index % period) / float(period))
        if hue >= 2.0 * math.pi:
            hue -= 2.0 * math.pi
        h = math.floor((3.0 / math.pi) * hue)
        p = value * (1.0 - s)
        q = value * (1.0 - s * ((3.0 / math.pi) * hue - h))
        t = value * (1.0 - s * ((1.0 - (3.0 / math.pi) * hue) + h))
        i8, p8, q8, t8 = (np.uint8(v * 255.0) for v in (value, p, q, t))
        out[index] = [(p8, t8, i8), (p8, i8, q8), (t8, i8, p8), (i8, q8, p8), (i8, p8, t8), (q8, p8, i8)][h]
    return out


_PALETTE = hue_palette()


def item_layout(instance: int, renders: int = RENDERS) -> tuple[int, int, int]:
    """(variant, render, flip) of image ``instance`` of a class (the official loop order)."""
    return instance // (FLIPS * renders), (instance // FLIPS) % renders, instance % FLIPS


def flip_image(canvas: np.ndarray, flip: int) -> np.ndarray:
    """The saved image for ``flip`` from the raw canvas (row = scaled y): 0 the official
    upside-down turn (y up), 1 that flipped top-bottom, 2 flipped left-right, 3 both."""
    views = (canvas[::-1], canvas, canvas[::-1, ::-1], canvas[:, ::-1])
    return views[flip]


@dataclass
class _VariantPoints:
    key: tuple[int, int]
    px: np.ndarray
    py: np.ndarray
    first: int  # index of the first kept point in the orbit (draw counter of its patch)


class FractalDBSource:
    """The ShardSource of FractalDB (picklable; the per-variant point cache is not pickled)."""

    name = NAME
    version = VERSION

    def __init__(self, params: list[ClassParams], *, instances: int, seed: int, image_size: int,
                 points: int, color: str, search: Mapping[str, Any], params_sha256: str | None) -> None:
        self.params = params
        self.instances, self.seed, self.image_size, self.points = instances, seed, image_size, points
        self.color, self.search, self.params_sha256 = color, dict(search), params_sha256
        self.renders = max(1, math.ceil(instances / (VARIANTS * FLIPS)))
        self._points: _VariantPoints | None = None
        self._scratch: tuple[np.ndarray, ...] | None = None
        self._canvas_key: tuple[int, int, int] | None = None
        self._canvas: np.ndarray | None = None
        self._drawn = 0  # points drawn on the cached canvas

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_points=None, _scratch=None, _canvas_key=None, _canvas=None)
        return state

    def config(self) -> dict[str, Any]:
        return {"classes": len(self.params), "instances": self.instances, "seed": self.seed,
                "image_size": self.image_size, "points": self.points, "color": self.color,
                "pad": PAD, "drop_points": DROP_POINTS, "factors": list(FACTORS),
                "renders_per_variant": self.renders, "search": self.search,
                "params_sha256": self.params_sha256}

    def class_names(self) -> list[str]:
        return [f"{c:05d}" for c in range(len(self.params))]

    def num_items(self) -> int:
        return len(self.params) * self.instances

    def image_shape(self) -> tuple[int, ...]:
        size = self.image_size
        return (size, size, 3) if self.color == "color" else (size, size)

    def variant_points(self, label: int, variant: int) -> _VariantPoints:
        """Pixel coordinates of the kept points of (class, variant); the last one is cached."""
        if self._points is not None and self._points.key == (label, variant):
            return self._points
        if self._scratch is None:
            # Reused: fresh multi-MB arrays cost more in page faults than the chaos game itself.
            self._scratch = (np.empty(self.points), np.empty(self.points),
                             np.empty(self.points, np.int32), np.empty(self.points, np.int32))
        xs, ys, px, py = self._scratch
        params = self.params[label]
        cum = params.cumulative()
        key = np.uint64(ifs2d.stream_key(self.seed, ifs2d.TAG_POINTS, label))
        maps = np.ascontiguousarray(params.maps * WEIGHTS[variant])
        box = np.empty(4)
        n = ifs2d.chaos_game(maps, cum, ifs2d.selection_table(cum), key, xs, ys, DROP_POINTS, box)
        stop = n if n == self.points else max(0, n - DROP_POINTS)
        start = min(DROP_POINTS, stop)
        if stop != n:
            ifs2d.box_of(xs, ys, start, stop, box)
        ifs2d.to_pixels(xs, start, stop, box[0], box[1], self.image_size, PAD, px)
        ifs2d.to_pixels(ys, start, stop, box[2], box[3], self.image_size, PAD, py)
        # Views into the scratch buffers: valid until the next variant replaces this cache entry.
        self._points = _VariantPoints((label, variant), px[: stop - start], py[: stop - start], start)
        return self._points

    def canvas(self, label: int, variant: int, render: int) -> np.ndarray:
        """The raw (unflipped) canvas of one render; uint8 [H, W] or [H, W, 3]. Cached (last)."""
        if self._canvas_key == (label, variant, render) and self._canvas is not None:
            return self._canvas
        pts = self.variant_points(label, variant)
        self._drawn = len(pts.px)
        canvas = np.zeros(self.image_shape(), np.uint8)
        key = np.uint64(ifs2d.stream_key(self.seed, ifs2d.TAG_PATCH, label, variant, render))
        if self.color == "color":
            ifs2d.paste_patches_color(canvas, pts.px, pts.py, key, pts.first, _PALETTE, _PATCH_BITS)
        else:
            ifs2d.paste_patches_gray(canvas, pts.px, pts.py, key, pts.first, _GREY_PATCHES)
        self._canvas_key, self._canvas = (label, variant, render), canvas
        return canvas

    def render(self, start: int, stop: int) -> RenderedBatch:
        count = stop - start
        images = np.empty((count, *self.image_shape()), np.uint8)
        meta = {"variant": np.empty(count, np.int16), "render": np.empty(count, np.int16),
                "flip": np.empty(count, np.int8), "n_maps": np.empty(count, np.int8),
                "points_drawn": np.empty(count, np.int32)}
        labels = np.empty(count, np.int64)
        for k, item in enumerate(range(start, stop)):
            label, instance = divmod(item, self.instances)
            variant, render, flip = item_layout(instance, self.renders)
            images[k] = flip_image(self.canvas(label, variant, render), flip)
            labels[k] = label
            meta["variant"][k], meta["render"][k], meta["flip"][k] = variant, render, flip
            meta["n_maps"][k] = len(self.params[label].maps)
            meta["points_drawn"][k] = self._drawn
        return RenderedBatch(images, labels, meta, np.arange(start, stop, dtype=np.int64))

    def png_path(self, label: int, metadata: Mapping[str, Any], item: int) -> str:
        name = f"{label:05d}"
        return (f"{name}/{name}_{int(metadata['variant']):02d}_count_{int(metadata['render'])}"
                f"_flip{int(metadata['flip'])}.png")

    def extra_files(self) -> dict[str, bytes]:
        return {NPZ_NAME: params_to_npz(self.params, {f"search_{k}": v for k, v in self.search.items()}
                                        | {"seed": self.seed})}


# --------------------------------------------------------------------------- entry point


def _check(classes: int, seed: int, instances: int, image_size: int, points: int, fill_rate: float,
           search_points: int, color: str) -> None:
    if classes <= 0:
        raise FdslError(f"--classes must be positive, got {classes}")
    if seed < 0:
        raise FdslError(f"--seed must be >= 0 for fractaldb, got {seed}")
    max_instances = VARIANTS * FLIPS * 1000
    if not 1 <= instances <= max_instances:
        raise FdslError(f"--instances must be in 1..{max_instances} for fractaldb, got {instances}")
    if image_size < MIN_IMAGE_SIZE:
        raise FdslError(f"--image-size must be >= {MIN_IMAGE_SIZE} for fractaldb, got {image_size}")
    if points < MIN_POINTS:
        raise FdslError(f"--points must be >= {MIN_POINTS} for fractaldb (the first "
                        f"{DROP_POINTS} are dropped), got {points}")
    if not 0.0 < fill_rate <= 1.0:
        raise FdslError(f"--fill-rate must be in (0, 1], got {fill_rate}")
    if search_points < MIN_POINTS:
        raise FdslError(f"--search-points must be >= {MIN_POINTS}, got {search_points}")
    if color not in COLOR_MODES:
        raise FdslError(f"--color must be one of {', '.join(COLOR_MODES)}, got {color!r}")


def make_source(*, classes: int, instances: int | None = None, seed: int = 0,
                image_size: int | None = None, points: int | None = None,
                params_from: str | Path | None = None, workers: int = 1, backend: str = "local",
                fill_rate: float | None = None, search_points: int | None = None,
                color: str | None = None) -> FractalDBSource:
    """The FractalDB source: searches ``classes`` classes (or reads them from ``params_from``, a
    ``classes.npz`` of an earlier run or a folder of the official CSVs: no search, the config
    records the parameters' sha256).

    ``None`` takes the official default (1000 instances, 362 px, 200k points, fill rate 0.2,
    100k search points, gray). FdslError (one line) for bad values.
    """
    settings = {"instances": instances, "image_size": image_size, "points": points,
                "fill_rate": fill_rate, "search_points": search_points, "color": color}
    s = {k: DEFAULTS[k] if v is None else v for k, v in settings.items()}
    _check(classes, seed, s["instances"], s["image_size"], s["points"], s["fill_rate"], s["search_points"], s["color"])
    if params_from is not None:
        if fill_rate is not None or search_points is not None:
            raise FdslError("--fill-rate and --search-points do not apply with --params-from "
                            "(the classes are read, not searched)")
        path = Path(params_from)
        params = load_class_params(path)
        if classes > len(params):
            raise FdslError(f"--classes {classes} but {path} holds only {len(params)} classes")
        params = params[:classes]
        digest = params_digest(path)
        search: dict[str, Any] = {"from_file": path.name}
    else:
        params = search_classes(classes, seed=seed, fill_rate=s["fill_rate"],
                                search_points=s["search_points"], workers=workers, backend=backend)
        digest = None
        search = {"fill_rate": s["fill_rate"], "search_points": s["search_points"],
                  "size": SEARCH_SIZE, "pad": PAD}
    return FractalDBSource(params, instances=s["instances"], seed=seed, image_size=s["image_size"],
                           points=s["points"], color=s["color"], search=search, params_sha256=digest)
