"""Shared fixtures. Tests run on CPU with small data the tests make themselves."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def tree_hashes(folder: Path, skip: tuple[str, ...] = ("run.json",)) -> dict[str, str]:
    """sha256 of every file below ``folder`` by relative path (run logs excluded)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip}


@pytest.fixture
def hashes():
    return tree_hashes
