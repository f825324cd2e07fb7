"""Shared fixtures. Tests run on CPU with small data the tests make themselves."""

from __future__ import annotations

import os
import signal

import pytest
from cudasim import route_to_simulator
from helpers import tree_hashes

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

# A runner may start the suite with SIGINT ignored (a background job of a non-interactive shell
# ignores it, and children inherit that). The Ctrl-C tests need Python's usual answer, here and in
# the processes they start: a caught signal is reset to its default when a child execs.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def hashes():
    return tree_hashes


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    route_to_simulator(config, items)
