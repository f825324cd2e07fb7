"""FractalDB class parameters: candidate sampling, the category search and the parameter files.

See ``fdsl.generators.fractaldb`` for the algorithm; this module holds the search (candidate ``k``
from ``default_rng([seed, 1, k])``, judged by its filling rate on a 512 x 512 point drawing) and
the two parameter formats it reads: our ``classes.npz`` and the official code's per-class CSVs.
"""

from __future__ import annotations

import hashlib
import math
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.errors import FdslError
from fdsl.generators.kernels import ifs2d
from fdsl.generators.npzfile import npz_bytes
from fdsl.generators.search import CandidateSpan, search_candidates

MIN_MAPS, MAX_MAPS = 2, 7
PAD = 6
SEARCH_SIZE = 512
MIN_POINTS = 200
TAG_SEARCH = 1
SEARCH_CHUNK = 256
EXPECTED_ACCEPT = 0.023  # about 2.3% of candidates pass at fill rate 0.2 here (sizes a round)
MAX_CANDIDATES_PER_CLASS = 5_000
NPZ_NAME = "classes.npz"
NPZ_VERSION = 1
DEFAULT_FILL_RATE = 0.2
DEFAULT_SEARCH_POINTS = 100_000


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

    The points are those the official keeps (``ifs2d.orbit``: the origin and every point, a NaN
    orbit cut 100 points before its first NaN).
    """
    scratch = scratch or _Scratch(search_points)
    cum = params.cumulative()
    key = np.uint64(ifs2d.stream_key(seed, ifs2d.TAG_SEARCH_POINTS, params.candidate))
    box = np.empty(4)
    n = ifs2d.orbit(params.maps, cum, ifs2d.selection_table(cum), key, scratch.xs, scratch.ys, box)
    return ifs2d.fill_count(scratch.xs, scratch.ys, n, box, SEARCH_SIZE, PAD, need, scratch.canvas)


@dataclass(frozen=True)
class _SearchJob:
    """Evaluates one span of candidates; returns the accepted ones (picklable for workers)."""

    seed: int
    fill_rate: float
    search_points: int

    def __call__(self, span: CandidateSpan) -> list[ClassParams]:
        need = fill_needed(self.fill_rate)
        scratch = _Scratch(self.search_points)
        found = []
        start, stop = span
        for k in range(start, stop):
            params = sample_candidate(self.seed, k)
            if params is None:
                continue
            count = candidate_fill(params, self.seed, self.search_points, need, scratch)
            if count >= 0:
                found.append(ClassParams(params.maps, params.probs, k,
                                         count / float(SEARCH_SIZE * SEARCH_SIZE)))
        return found


def search_classes(classes: int, *, seed: int = 0, fill_rate: float = DEFAULT_FILL_RATE,
                   search_points: int = DEFAULT_SEARCH_POINTS, workers: int = 1,
                   backend: str = "local") -> list[ClassParams]:
    """The first ``classes`` accepted candidates in candidate order (identical for any workers);
    FdslError when the threshold is so high that too few candidates pass."""
    need = fill_needed(fill_rate)
    if search_points < need:
        raise FdslError(f"--search-points {search_points} cannot reach fill rate {fill_rate} "
                        f"(that needs {need} distinct pixels of {SEARCH_SIZE}x{SEARCH_SIZE})")
    return search_candidates(
        _SearchJob(seed, fill_rate, search_points), classes, candidate=lambda p: p.candidate,
        expected_rate=EXPECTED_ACCEPT, max_candidates=MAX_CANDIDATES_PER_CLASS * classes + 10_000,
        too_few=lambda found, tried: (f"only {found} of {classes} classes reach fill rate {fill_rate} "
                                      f"in {tried} candidates; lower --fill-rate"),
        workers=workers, backend=backend, chunk=SEARCH_CHUNK, desc="fractaldb search")


def params_to_npz(params: list[ClassParams], settings: Mapping[str, Any]) -> bytes:
    """``classes.npz`` bytes (byte-identical for identical input).

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
    return npz_bytes(dict(sorted(arrays.items())), compress=True)


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
