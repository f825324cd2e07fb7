"""Read shard images without h5py: chunk byte offsets are read once, then ``os.pread`` + LZ4/zstd.

Every image is one HDF5 chunk (see ``writer.py``), so an image is a byte range of its shard
file, compressed by at most one filter. h5py takes a global lock on every call, so threads cannot
read through it in parallel; ``os.preadv`` and liblz4 called through ctypes release the GIL, so
they can, and liblz4 decodes straight into the batch. The ``lz4`` package (and ``zstandard`` for
zstd shards) decode the other cases; shards whose layout or filters this module does not know are
read through h5py.

Nothing here imports torch: generator worker processes import the datasets package.
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fdsl.datasets.format.hdf5.shardfile import open_shard
from fdsl.errors import ShardError

LZ4_FILTER = 32004
ZSTD_FILTER = 32015
_LZ4_HEADER = 12  # uint64 BE original size + uint32 BE block size (HDF5 LZ4 filter framing)


@dataclass(frozen=True)
class ShardLayout:
    """Where every image of one shard lies in its file.

    offsets, sizes: int64 [count], the byte range of each image's chunk; skipped: bool [count],
    True where HDF5 stored the chunk unfiltered (an optional filter that did not shrink it).
    codec: ``none``, ``lz4``, ``zstd`` or ``h5py`` (unknown layout: read through h5py).
    """

    path: str
    count: int
    codec: str
    offsets: np.ndarray
    sizes: np.ndarray
    skipped: np.ndarray


def _codec(dset) -> str:
    plist = dset.id.get_create_plist()
    codes = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    if not codes:
        return "none"
    if codes == [LZ4_FILTER]:
        return "lz4"
    if codes == [ZSTD_FILTER] and _zstd() is not None:
        return "zstd"
    return "h5py"


def read_layout(path: Path, count: int, image_shape: tuple[int, ...]) -> ShardLayout:
    """Chunk offsets of the first ``count`` images of an open-able shard (ShardError if broken)."""
    empty = np.zeros(0, np.int64)
    with open_shard(path) as f:
        dset = f["images"]
        if dset.shape[0] < count or f["labels"].shape[0] < count:
            raise ShardError(f"{path}: holds {dset.shape[0]} images, manifest says {count}")
        if count == 0:
            return ShardLayout(str(path), 0, "none", empty, empty, empty.astype(bool))
        if tuple(dset.shape[1:]) != image_shape or dset.dtype != np.uint8:
            raise ShardError(f"{path}: images are {dset.dtype} {dset.shape[1:]}, expected uint8 {image_shape}")
        if dset.chunks != (1, *image_shape):
            return ShardLayout(str(path), count, "h5py", empty, empty, empty.astype(bool))
        codec = _codec(dset)
        offsets = np.full(count, -1, np.int64)
        sizes = np.zeros(count, np.int64)
        skipped = np.zeros(count, bool)

        def visit(info) -> None:
            i = info.chunk_offset[0]
            if i < count:
                offsets[i], sizes[i], skipped[i] = info.byte_offset, info.size, info.filter_mask != 0

        dset.id.chunk_iter(visit)
    if (offsets < 0).any() or (offsets + sizes > os.path.getsize(path)).any():
        # an unwritten chunk reads as zeros through h5py; let it handle such rare files
        return ShardLayout(str(path), count, "h5py", empty, empty, empty.astype(bool))
    return ShardLayout(str(path), count, codec, offsets, sizes, skipped)


_ZSTD = None
_LOCAL = threading.local()


def _zstd():
    """The zstandard module, or None when it is not installed (then h5py reads zstd shards)."""
    global _ZSTD
    if _ZSTD is None:
        try:
            import zstandard
        except ImportError:
            _ZSTD = False
        else:
            _ZSTD = zstandard
    return _ZSTD or None


def decode_lz4(data: bytes, nbytes: int) -> bytes | memoryview:
    """Undo the HDF5 LZ4 filter: 12-byte header, then blocks each led by a BE uint32 size."""
    import lz4.block

    total = int.from_bytes(data[:8], "big")
    block = int.from_bytes(data[8:12], "big")
    if total != nbytes:
        raise ValueError(f"chunk holds {total} bytes, expected {nbytes}")
    view = memoryview(data)
    pos, parts, left = _LZ4_HEADER, [], total
    while left > 0:
        want = min(block, left)
        size = int.from_bytes(data[pos:pos + 4], "big")
        piece = view[pos + 4:pos + 4 + size]
        # the filter stores a block raw when compression would not shrink it
        parts.append(piece if size == want else lz4.block.decompress(piece, uncompressed_size=want))
        pos, left = pos + 4 + size, left - want
    return parts[0] if len(parts) == 1 else b"".join(parts)


class ChunkReader:
    """Reads images of a list of shard layouts by global row (the loaders' ``RowReader``); opens
    files lazily, once per process.

    Pickles without open files (safe with fork and spawn): after unpickling, or in a forked child,
    files are opened again on first use.
    """

    def __init__(self, layouts: list[ShardLayout], image_shape: tuple[int, ...]) -> None:
        self.layouts = layouts
        self.image_shape = image_shape
        self.nbytes = int(np.prod(image_shape))
        counts = [layout.count for layout in layouts]
        # shard of each global row, and the row within its shard
        self.shard_of = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
        self.local = (np.concatenate([np.arange(c, dtype=np.int64) for c in counts]) if counts
                      else np.zeros(0, np.int64))
        self._pid = -1
        self._fds: dict[int, int] = {}
        self._h5: dict[int, object] = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_pid=-1, _fds={}, _h5={})
        return state

    def __del__(self) -> None:
        if self._pid == os.getpid():
            for fd in self._fds.values():
                os.close(fd)

    def _check_process(self) -> None:
        if self._pid != os.getpid():  # a fresh process: never use a parent's handles
            self._pid, self._fds, self._h5 = os.getpid(), {}, {}

    def _fd(self, shard: int) -> int:
        fd = self._fds.get(shard)
        if fd is None:
            path = self.layouts[shard].path
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError as exc:
                raise ShardError(f"{path}: cannot open shard ({exc.strerror})") from None
            winner = self._fds.setdefault(shard, fd)
            if winner != fd:  # another thread opened it first
                os.close(fd)
            fd = winner
        return fd

    def _h5_images(self, shard: int):
        dset = self._h5.get(shard)
        if dset is None:
            import hdf5plugin  # noqa: F401  (registers the filters)

            dset = self._h5.setdefault(shard, open_shard(self.layouts[shard].path)["images"])
        return dset

    def read(self, shard: int, j: int) -> np.ndarray:
        """Image ``j`` of shard ``shard`` as a flat uint8 array (HWC byte order)."""
        self._check_process()
        layout = self.layouts[shard]
        if layout.codec == "h5py":
            return np.ascontiguousarray(self._h5_images(shard)[j]).reshape(-1)
        data = os.pread(self._fd(shard), int(layout.sizes[j]), int(layout.offsets[j]))
        if len(data) != layout.sizes[j]:
            raise ShardError(f"{layout.path}: truncated (image {j} ends past the end of the file)")
        try:
            raw = self._decode(layout.codec, data, bool(layout.skipped[j]))
            flat = np.frombuffer(raw, np.uint8)
            if flat.size != self.nbytes:
                raise ValueError(f"{flat.size} bytes, expected {self.nbytes}")
        except Exception as exc:  # noqa: BLE001  (any decoder error means a corrupted chunk)
            raise ShardError(f"{layout.path}: image {j} is corrupted ({exc})") from None
        return flat

    def _decode(self, codec: str, data: bytes, skipped: bool) -> bytes | memoryview:
        if codec == "none" or skipped:
            return data
        if codec == "lz4":
            return decode_lz4(data, self.nbytes)
        decompressor = getattr(_LOCAL, "zstd", None)
        if decompressor is None:  # one per thread: a decompressor is not thread-safe
            decompressor = _LOCAL.zstd = _zstd().ZstdDecompressor()
        return decompressor.decompress(data, max_output_size=self.nbytes)

    def read_into(self, shard: int, j: int, out: np.ndarray) -> None:
        """Write image ``j`` of ``shard`` into ``out``: uint8 [H, W] or [C, H, W] (CHW order)."""
        flat = self.read(shard, j)
        if len(self.image_shape) == 2:
            out.reshape(-1)[:] = flat
        else:
            out[...] = flat.reshape(self.image_shape).transpose(2, 0, 1)

    def read_rows(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Global ``rows`` into ``out`` (uint8 [B, C, H, W])."""
        self.read_many(self.shard_of[rows].tolist(), self.local[rows].tolist(), out)

    def read_many(self, shard_ids: list[int], local: list[int], out: np.ndarray) -> None:
        """Read images ``local[k]`` of shards ``shard_ids[k]`` into ``out[k]`` (uint8 [B, C, H, W]).

        The common case (single-block LZ4, contiguous ``out``) runs inline and decodes with
        liblz4 straight into ``out`` (grey) or into one per-thread HWC buffer that is transposed
        into ``out`` (colour), with no per-image allocation: this loop is the part of a batch
        that holds the GIL, so every call saved is parallel time won.
        """
        self._check_process()
        grey = len(self.image_shape) == 2
        decode = _liblz4()
        if not out.flags.c_contiguous or decode is None:
            for k in range(len(shard_ids)):
                self.read_into(shard_ids[k], local[k], out[k, 0] if grey else out[k])
            return
        scratch = self._scratch()
        hwc = None if grey else self._buffer("hwc", self.nbytes)[:self.nbytes].reshape(self.image_shape)
        scratch_addr, nbytes = scratch.ctypes.data, self.nbytes
        base = out.ctypes.data
        view, layouts, preadv, unpack = memoryview(scratch), self.layouts, os.preadv, _HEADER.unpack_from
        for k in range(len(shard_ids)):
            shard, j = shard_ids[k], local[k]
            layout = layouts[shard]
            if layout.codec == "lz4" and not layout.skipped[j]:
                size = int(layout.sizes[j])
                if preadv(self._fd(shard), [view[:size]], int(layout.offsets[j])) == size >= 16:
                    total, block, csize = unpack(scratch, 0)
                    dst = base + k * nbytes if hwc is None else hwc.ctypes.data
                    if (total == nbytes and block >= nbytes and csize == size - 16 and csize < nbytes
                            and decode(scratch_addr + 16, dst, csize, nbytes) == nbytes):
                        if hwc is not None:
                            out[k] = hwc.transpose(2, 0, 1)
                        continue
            # anything else, and errors, with their messages
            self.read_into(shard, j, out[k, 0] if grey else out[k])

    def advise(self, rows: np.ndarray, gap: int = 1 << 18) -> int:
        """Ask the kernel to start reading the chunks of global ``rows`` into the page cache, as a
        few large reads (``POSIX_FADV_WILLNEED`` per run of chunks less than ``gap`` bytes apart).

        Reads of a block-shuffled order then hit the page cache instead of waiting on one small
        random read per image. Returns the number of ranges advised (0 where unsupported).
        """
        if not hasattr(os, "posix_fadvise") or not len(rows):
            return 0
        self._check_process()
        ranges = 0
        rows = np.asarray(rows)
        shard_ids, local = self.shard_of[rows], self.local[rows]
        for shard in np.unique(shard_ids).tolist():
            layout = self.layouts[shard]
            if layout.codec == "h5py" or not len(layout.offsets):
                continue
            within = local[shard_ids == shard]
            starts = np.sort(layout.offsets[within])
            ends = np.sort(layout.offsets[within] + layout.sizes[within])
            cut = np.flatnonzero(starts[1:] - ends[:-1] > gap) + 1
            fd = self._fd(shard)
            for a, b in zip(starts[np.r_[0, cut]].tolist(), ends[np.r_[cut - 1, len(ends) - 1]].tolist(),
                            strict=True):
                os.posix_fadvise(fd, a, b - a, os.POSIX_FADV_WILLNEED)
                ranges += 1
        return ranges

    def _scratch(self) -> np.ndarray:
        """This thread's buffer for one compressed chunk."""
        need = max((int(layout.sizes.max()) for layout in self.layouts if len(layout.sizes)), default=0)
        return self._buffer("scratch", max(need, 1 << 16))

    @staticmethod
    def _buffer(name: str, size: int) -> np.ndarray:
        """This thread's reusable uint8 buffer ``name`` of at least ``size`` bytes."""
        buf = getattr(_LOCAL, name, None)
        if buf is None or len(buf) < size:
            buf = np.empty(size, np.uint8)
            setattr(_LOCAL, name, buf)
        return buf


_HEADER = struct.Struct(">QII")  # original size, block size, first block's compressed size
_LIBLZ4: list = []


def _liblz4():
    """``LZ4_decompress_safe(src, dst, src_size, dst_capacity)`` through ctypes (which releases
    the GIL), from the system liblz4 or the copy inside the ``lz4`` package; None if neither."""
    if not _LIBLZ4:
        import ctypes
        import ctypes.util

        import lz4.block._block as bundled

        func = None
        for name in (ctypes.util.find_library("lz4"), bundled.__file__):
            try:
                func = ctypes.CDLL(name).LZ4_decompress_safe if name else None
            except (OSError, AttributeError):
                func = None
            if func is not None:
                func.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
                func.restype = ctypes.c_int
                break
        _LIBLZ4.append(func)
    return _LIBLZ4[0]
