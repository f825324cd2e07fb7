"""How fdsl data sets are checksummed: sha256, in this one module.

- Every file a manifest lists (an HDF5 shard, a PNG task's listing, an extra file such as
  ``classes.npz`` or ``metadata.csv``) has its size and sha256 in the manifest: ``file_record``
  when it is written, ``check_file`` whenever it is trusted (verify, resume, the loaders).
- A PNG tree's images are hashed one by one into their task's listing, and the listing's entry
  also records ``png_sha256``, a ``ListDigest`` over the ``path<TAB>sha256`` lines of its
  images, so a changed, swapped or renamed PNG is caught even when its listing is intact.
- Extra files are hashed from their bytes before they are written (``sha256_bytes``).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Protocol

from fdsl.datasets.format.checks import Problem
from fdsl.errors import ShardError

_HEX = re.compile(r"^[0-9a-f]{64}$")
_BLOCK = 1 << 22


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_BLOCK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def is_sha256(value: object) -> bool:
    """Whether ``value`` is a hex sha256 digest as fdsl writes them (64 lowercase hex digits)."""
    return isinstance(value, str) and bool(_HEX.match(value))


def file_record(path: Path) -> dict[str, int | str]:
    """``{"bytes", "sha256"}`` of a finished file, as its manifest entry records them."""
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def bytes_record(data: bytes) -> dict[str, int | str]:
    """``{"bytes", "sha256"}`` of a file's bytes, before it is written."""
    return {"bytes": len(data), "sha256": sha256_bytes(data)}


class ListedFile(Protocol):
    """What a manifest records of one file (``manifest.ShardRecord``)."""

    file: str
    bytes: int
    sha256: str

    def path(self, folder: Path) -> Path:
        """The file inside ``folder``; ShardError if its name leads outside."""


class ListDigest:
    """sha256 over ``path<TAB>sha256`` lines, in order: one digest for many small files."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def add(self, relpath: str, sha256: str) -> None:
        self._digest.update(f"{relpath}\t{sha256}\n".encode())

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def check_file(folder: Path, record: ListedFile, checksum: bool = True) -> Problem | None:
    """Check one listed file: inside the folder, present, of the recorded size and (with
    ``checksum``) sha256. None when all of that holds."""
    try:
        path = record.path(folder)
    except ShardError as exc:
        return Problem.from_error(Path(folder) / str(record.file), "path", exc)
    if not path.is_file():
        return Problem(str(path), "exists", "file is missing")
    size = path.stat().st_size
    if size != record.bytes:
        kind = "truncated" if size < record.bytes else "too long"
        return Problem(str(path), "size", f"{kind}: {size} bytes, manifest says {record.bytes}")
    if checksum:
        return check_digest(path, record.sha256, "manifest")
    return None


def check_digest(path: Path, want: str, where: str, digest: str | None = None) -> Problem | None:
    """``path``'s sha256 (``digest`` when already computed) against ``want``, which ``where``
    (the manifest, a listing) records."""
    digest = sha256_file(path) if digest is None else digest
    if digest != want:
        return Problem(str(path), "sha256", f"got {digest[:16]}..., {where} says {want[:16]}...")
    return None
