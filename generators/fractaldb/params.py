"""FractalDB class parameters: candidate sampling, the category search and the parameter files.

See ``fdsl.generators.fractaldb`` for the algorithm; this module holds the search (candidate ``k``
from ``default_rng([seed, 1, k])``, judged by its filling rate on a 512 x 512 point drawing) and
the two parameter formats it reads: our ``classes.npz`` and the official code's per-class CSVs.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.errors import FdslError
from fdsl.generators.classfile import npz_bytes, read_arrays
from fdsl.generators.kernels import ifs2d
from fdsl.generators.search import CandidateJudge, search_candidates

MIN_MAPS, MAX_MAPS = 2, 7
PAD = 6
SEARCH_SIZE = 512
MIN_POINTS = 200
TAG_SEARCH = 1
EXPECTED_ACCEPT = 0.023  # about 2.3% of candidates pass at fill rate 0.2 here (sizes a round)
MAX_CANDIDATES_PER_CLASS = 5_000
NPZ_VERSION = 1
DEFAULT_FILL_RATE = 0.2
DEFAULT_SEARCH_POINTS = 100_000


@dataclass(frozen=True)
class ClassParams:
    """The IFS of every class, packed: maps float64 [M, 6] (a..f of every map, class after class),
    probs float64 [M], offsets int64 [C + 1] (class c owns rows offsets[c]:offsets[c + 1]),
    candidate int64 [C] (search index k, -1 if unknown), fill_rate float64 [C] (NaN if unknown)."""

    maps: np.ndarray
    probs: np.ndarray
    offsets: np.ndarray
    candidate: np.ndarray
    fill_rate: np.ndarray

    @classmethod
    def from_systems(cls, systems: Sequence[tuple[np.ndarray, np.ndarray]], candidate: Sequence[int] | None = None,
                     fill_rate: Sequence[float] | None = None) -> ClassParams:
        """Classes from (maps [N, 6], probs [N]) pairs, one per class."""
        count = len(systems)
        return cls(np.concatenate([np.asarray(m, np.float64).reshape(-1, 6) for m, _ in systems]),
                   np.concatenate([np.asarray(p, np.float64).reshape(-1) for _, p in systems]),
                   np.cumsum([0] + [len(p) for _, p in systems]).astype(np.int64),
                   np.asarray([-1] * count if candidate is None else candidate, np.int64),
                   np.asarray([np.nan] * count if fill_rate is None else fill_rate, np.float64))

    @classmethod
    def concat(cls, parts: Sequence[ClassParams]) -> ClassParams:
        """The classes of ``parts`` one after the other."""
        systems = [p.system(c) for p in parts for c in range(len(p))]
        return cls.from_systems(systems, [int(k) for p in parts for k in p.candidate],
                                [float(f) for p in parts for f in p.fill_rate])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def head(self, classes: int) -> ClassParams:
        stop = int(self.offsets[classes])
        return ClassParams(self.maps[:stop], self.probs[:stop], self.offsets[:classes + 1],
                           self.candidate[:classes], self.fill_rate[:classes])

    @property
    def num_maps(self) -> np.ndarray:
        """int64 [C]: maps per class."""
        return np.diff(self.offsets)

    def system(self, label: int) -> tuple[np.ndarray, np.ndarray]:
        """(maps float64 [N, 6], probs float64 [N]) of class ``label``."""
        lo, hi = int(self.offsets[label]), int(self.offsets[label + 1])
        return self.maps[lo:hi], self.probs[lo:hi]

    def cumulative(self, label: int) -> np.ndarray:
        """float64 [N]: running sums of class ``label``'s probs, added one by one like the official."""
        total, out = 0.0, []
        for p in self.system(label)[1]:
            total += float(p)
            out.append(total)
        return np.array(out)

    def to_npz(self, settings: Mapping[str, Any] | None = None) -> bytes:
        """``classes.npz`` bytes (byte-identical for identical input): the five arrays, num_maps
        int64 [C], format_version, and ``settings`` (e.g. the search's) as 0-d arrays."""
        arrays = {"maps": self.maps, "probs": self.probs, "offsets": self.offsets, "num_maps": self.num_maps,
                  "candidate": self.candidate, "fill_rate": self.fill_rate,
                  "format_version": np.array(NPZ_VERSION, np.int64)}
        for key, value in (settings or {}).items():
            arrays[key] = np.array(np.nan if value is None else value)
        return npz_bytes(dict(sorted(arrays.items())), compress=True)


def sample_candidate(seed: int, k: int) -> ClassParams | None:
    """Candidate ``k`` of the search as one class (None when every map is singular: no probabilities)."""
    rng = np.random.default_rng([seed % 2**64, TAG_SEARCH, k])
    n = int(rng.integers(MIN_MAPS, MAX_MAPS + 1))
    maps = rng.uniform(-1.0, 1.0, (n, 6))
    dets = np.array([abs(a * d - b * c) for a, b, c, d in maps[:, :4]])
    total = 0.0
    for det in dets:
        total += float(det)
    if not total > 0.0:
        return None
    return ClassParams.from_systems([(maps, dets / total)], [k])


def fill_needed(rate: float, size: int = SEARCH_SIZE) -> int:
    """The smallest pixel count c with ``c / size**2 >= rate`` (the official float comparison)."""
    area = float(size * size)
    need = max(0, math.ceil(rate * area))
    while need > 0 and (need - 1) / area >= rate:
        need -= 1
    while need / area < rate:
        need += 1
    return need


def check_reachable(fill_rate: float, search_points: int) -> None:
    """FdslError (one line) when ``search_points`` points cannot fill ``fill_rate`` of the drawing."""
    need = fill_needed(fill_rate)
    if search_points < need:
        raise FdslError(f"--search-points {search_points} cannot reach fill rate {fill_rate} "
                        f"(that needs {need} distinct pixels of {SEARCH_SIZE}x{SEARCH_SIZE})")


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
    """Pixels filled by the one class of ``params`` (a candidate: its chaos-game stream is that of
    candidate ``params.candidate[0]``) in the search drawing, or -1 when below ``need``.

    The points are those the official keeps (``ifs2d.orbit``: the origin and every point, a NaN
    orbit cut 100 points before its first NaN).
    """
    scratch = scratch or _Scratch(search_points)
    cum = params.cumulative(0)
    key = np.uint64(ifs2d.stream_key(seed, ifs2d.TAG_SEARCH_POINTS, int(params.candidate[0])))
    box = np.empty(4)
    n = ifs2d.orbit(params.system(0)[0], cum, ifs2d.selection_table(cum), key, scratch.xs, scratch.ys, box)
    return ifs2d.fill_count(scratch.xs, scratch.ys, n, box, SEARCH_SIZE, PAD, need, scratch.canvas)


@dataclass(frozen=True)
class _SearchJob(CandidateJudge):
    """Judges candidates by their filling rate (picklable for workers)."""

    seed: int
    fill_rate: float
    search_points: int

    def scratch(self) -> tuple[_Scratch, int]:
        return _Scratch(self.search_points), fill_needed(self.fill_rate)

    def judge(self, k: int, scratch: tuple[_Scratch, int]) -> ClassParams | None:
        params = sample_candidate(self.seed, k)
        if params is None:
            return None
        count = candidate_fill(params, self.seed, self.search_points, scratch[1], scratch[0])
        if count < 0:
            return None
        return ClassParams.from_systems([params.system(0)], [k], [count / float(SEARCH_SIZE * SEARCH_SIZE)])


def search_classes(classes: int, *, seed: int = 0, fill_rate: float = DEFAULT_FILL_RATE,
                   search_points: int = DEFAULT_SEARCH_POINTS, workers: int = 1,
                   backend: str = "local") -> ClassParams:
    """The first ``classes`` accepted candidates in candidate order (identical for any workers);
    FdslError when the threshold is so high that too few candidates pass."""
    check_reachable(fill_rate, search_points)
    return search_candidates(
        _SearchJob(seed, fill_rate, search_points), classes,
        expected_rate=EXPECTED_ACCEPT, max_candidates=MAX_CANDIDATES_PER_CLASS * classes + 10_000,
        too_few=lambda found, tried: (f"only {found} of {classes} classes reach fill rate {fill_rate} "
                                      f"in {tried} candidates; lower --fill-rate"),
        workers=workers, backend=backend, desc="fractaldb search")


def _official_csvs(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.csv"), key=lambda p: (p.stem, str(p)))


def load_official_csvs(folder: str | Path) -> ClassParams:
    """Classes from a folder of the official search's CSVs (one ``<class>.csv`` per class, rows
    a,b,c,d,e,f,p; sub-folders such as ``csv0/`` are searched too), in file-name order."""
    folder = Path(folder)
    files = _official_csvs(folder)
    if not files:
        raise FdslError(f"{folder} holds no .csv files of FractalDB class parameters")
    systems = []
    for file in files:
        try:
            rows = np.loadtxt(file, delimiter=",", ndmin=2, dtype=np.float64)
        except ValueError as exc:
            raise FdslError(f"cannot read FractalDB class parameters from {file}: {exc}") from None
        if rows.shape[1] != 7 or not len(rows):
            raise FdslError(f"{file}: expected rows of a,b,c,d,e,f,p")
        systems.append((rows[:, :6].copy(), rows[:, 6].copy()))
    return _checked(ClassParams.from_systems(systems), [str(f) for f in files])


def _checked(params: ClassParams, where: Sequence[str]) -> ClassParams:
    """``params`` if every class is usable: 1..64 maps, finite, probabilities >= 0 with a
    positive sum (``where[c]`` names class c in the error)."""
    for label in range(len(params)):
        maps, probs = params.system(label)
        if not (np.all(np.isfinite(maps)) and np.all(np.isfinite(probs)) and np.all(probs >= 0)
                and probs.sum() > 0 and 1 <= len(maps) <= 64):
            raise FdslError(f"{where[label]}: bad maps or probabilities (need finite a..f, p >= 0, sum p > 0)")
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


def load_class_params(path: str | Path) -> ClassParams:
    """The classes of a ``classes.npz`` written by this generator, or of a folder of the official
    CSVs (``load_official_csvs``); FdslError (one line) for anything else."""
    path = Path(path)
    if path.is_dir():
        return load_official_csvs(path)
    arrays = read_arrays(path, ("maps", "probs", "offsets"), "a FractalDB classes.npz",
                         optional=("candidate", "fill_rate"))
    maps, probs, offsets = arrays["maps"], arrays["probs"], arrays["offsets"]
    classes = len(offsets) - 1
    if (maps.ndim != 2 or maps.shape[1:] != (6,) or probs.shape != (len(maps),) or offsets.ndim != 1
            or offsets.dtype.kind not in "iu" or classes < 1 or offsets[0] != 0 or offsets[-1] != len(maps)
            or np.any(np.diff(offsets) < 1)):
        raise FdslError(f"--params-from {path}: not a FractalDB classes.npz (maps must be [M, 6], split "
                        "by increasing offsets)")
    params = ClassParams(maps.astype(np.float64), probs.astype(np.float64), offsets.astype(np.int64),
                         arrays.get("candidate", np.full(classes, -1)).astype(np.int64),
                         arrays.get("fill_rate", np.full(classes, np.nan)).astype(np.float64))
    return _checked(params, [f"{path}: class {c}" for c in range(classes)])
