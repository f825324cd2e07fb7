"""Tests marked ``cudasim`` run in numba's CUDA simulator, in one child pytest per session.

The simulator must be chosen before numba is first imported (``NUMBA_ENABLE_CUDASIM=1``), while
the rest of the suite (and the PTX compilation tests) needs the real ``numba.cuda``. So in a normal
session every ``cudasim`` test is run, all of them together, by a child ``pytest`` with that
variable set; each test then reports its own outcome from the child's JUnit XML (a failure shows
the child's message). A session started with ``NUMBA_ENABLE_CUDASIM=1`` runs them directly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def junit_key(nodeid: str) -> tuple[str, str]:
    """(classname, name) that pytest's JUnit XML gives the test ``nodeid``."""
    path, *scopes = nodeid.split("::")
    module = path.removesuffix(".py").replace("/", ".")
    return ".".join([module, *scopes[:-1]]), scopes[-1]


class SimulatorRun:
    """One child pytest, with the simulator on, for the given test ids; started on first use."""

    def __init__(self, root: Path, nodeids: list[str]) -> None:
        self.root, self.nodeids = root, nodeids
        self._outcomes: dict[tuple[str, str], tuple[str, str]] | None = None
        self._output = ""

    def _run(self) -> dict[tuple[str, str], tuple[str, str]]:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "junit.xml"
            env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                   f"--junitxml={report}", *self.nodeids], cwd=self.root, env=env,
                                  capture_output=True, text=True)
            self._output = (done.stdout + done.stderr)[-4000:]
            outcomes = {}
            if report.is_file():
                for case in ET.parse(report).getroot().iter("testcase"):
                    status, text = "passed", ""
                    for tag in ("failure", "error", "skipped"):
                        found = case.find(tag)
                        if found is not None:
                            status, text = tag, f"{found.get('message', '')}\n{found.text or ''}"
                            break
                    outcomes[(case.get("classname", ""), case.get("name", ""))] = (status, text)
        return outcomes

    def check(self, nodeid: str) -> None:
        """Pass, fail or skip as the test did in the child."""
        if self._outcomes is None:
            self._outcomes = self._run()
        found = self._outcomes.get(junit_key(nodeid))
        if found is None:
            pytest.fail(f"{nodeid} did not run in the simulator child:\n{self._output}", pytrace=False)
        status, text = found
        if status == "skipped":
            pytest.skip(text.strip().splitlines()[0] if text.strip() else "skipped in the simulator")
        if status != "passed":
            pytest.fail(f"in the CUDA simulator: {text}", pytrace=False)


def route_to_simulator(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make every ``cudasim`` test (outside a simulator session) report the child's outcome."""
    if SIMULATED:
        return
    marked = [item for item in items if item.get_closest_marker("cudasim")]
    if marked:
        run = SimulatorRun(config.rootpath, [item.nodeid for item in marked])
        for item in marked:
            item.runtest = (lambda nodeid: lambda: run.check(nodeid))(item.nodeid)
