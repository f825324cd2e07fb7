"""Deterministic ``.npz`` bytes: the same arrays give the same bytes on every run and machine."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping

import numpy as np

# np.savez stamps the current time into each member; a fixed stamp makes the file reproducible.
_EPOCH = (1980, 1, 1, 0, 0, 0)


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
