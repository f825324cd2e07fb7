"""Shared fixtures. Tests run on CPU with small data the tests make themselves."""

from __future__ import annotations

import os

import pytest
from helpers import tree_hashes

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


@pytest.fixture
def hashes():
    return tree_hashes
