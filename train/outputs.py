"""How training writes files: every file of a run folder goes through ``write_file``.

``write_file`` writes under a temporary name, fsyncs and renames (``fdsl.atomic``), so a crash or
a full disk never leaves a half-written file; a full disk is one line naming the folder and the
space needed. Callers build the bytes (``fdsl.train.figures`` draws figures into bytes, the
checkpoint is ``torch.save``d into a buffer); ``tests/test_atomic_writes.py`` fails on any product
module that writes a file another way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fdsl import atomic
from fdsl.errors import DiskFullError

__all__ = ["DiskFullError", "write_file", "write_json"]


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` atomically and durably; on ENOSPC/EIO remove the temporary file and raise
    DiskFullError naming the folder and the space needed."""
    path = Path(path)
    try:
        atomic.write_bytes_atomic(path, data)
    except OSError as exc:
        if not atomic.is_disk_full(exc):
            raise
        try:
            free = f"{atomic.free_bytes(path.parent) / 2**20:.1f} MiB free"
        except OSError:
            free = "free space unknown"
        raise DiskFullError(f"disk full while writing {path.name} into {path.parent} ({exc.strerror}; "
                            f"{len(data) / 2**20:.1f} MiB needed, {free}); free space and rerun "
                            "with --resume") from None


def write_json(path: Path, value: Any, indent: int | None = 1) -> None:
    """``value`` as JSON text (one trailing newline) through ``write_file``."""
    write_file(path, (json.dumps(value, indent=indent) + "\n").encode())
