"""``classes.npz``, the class parameters a generator stores beside its data set.

``npz_bytes`` writes it reproducibly (the same arrays give the same bytes on every run and
machine); ``read_arrays`` reads named arrays back with one-line errors; ``read_params_from`` reads
``--params-from`` for every generator: the first ``classes`` classes of a stored ``ClassParams``
(``fdsl.generators.spec``) and the file's sha256.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from fdsl.errors import FdslError

NAME = "classes.npz"
# np.savez stamps the current time into each member; a fixed stamp makes the file reproducible.
_EPOCH = (1980, 1, 1, 0, 0, 0)

P = TypeVar("P")


def npz_bytes(arrays: Mapping[str, np.ndarray], *, compress: bool = False) -> bytes:
    """An ``np.load``-able .npz of ``arrays`` (members in the mapping's order, deflated when
    ``compress``) whose bytes depend only on the arrays."""
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.compress_type = method
            archive.writestr(info, member.getvalue())
    return buf.getvalue()


def read_arrays(path: str | Path, names: Sequence[str], what: str,
                optional: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The arrays ``names`` (and those of ``optional`` present) of the .npz at ``path``;
    FdslError naming ``what`` (e.g. "an RCDB classes.npz") when it cannot be read or lacks one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [name for name in names if name not in data]
            if missing:
                raise KeyError(f"no {', '.join(missing)} array")
            return {name: np.asarray(data[name]) for name in (*names, *optional) if name in data}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        reason = exc.args[0] if isinstance(exc, KeyError) else exc
        raise FdslError(f"--params-from {path}: not {what} ({reason})") from None


def read_params_from(path: str | Path, classes: int, load: Callable[[Path], P],
                     digest: Callable[[Path], str] | None = None) -> tuple[P, str]:
    """``--params-from path``: the first ``classes`` classes of the ClassParams ``load`` reads from
    ``path`` (FdslError, one line, when it holds fewer), and the sha256 the source's config records
    (of the file's bytes, or ``digest(path)`` for what is not one file)."""
    path = Path(path)
    params = load(path)
    held = len(params)  # type: ignore[arg-type]
    if held < classes:
        raise FdslError(f"--params-from {path} holds {held} classes, fewer than --classes {classes}")
    sha256 = digest(path) if digest is not None else hashlib.sha256(path.read_bytes()).hexdigest()
    return params.head(classes), sha256  # type: ignore[attr-defined]
