"""Shared fixtures. Tests run on CPU with small data the tests make themselves."""

from __future__ import annotations

import os

import pytest
from cudasim import route_to_simulator
from helpers import tree_hashes

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


@pytest.fixture
def hashes():
    return tree_hashes


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    route_to_simulator(config, items)
