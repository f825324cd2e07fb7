"""The console scripts (``[project.scripts]`` in pyproject.toml) start here, so that Ctrl-C gets
one line and exit status 130 from the first instant.

A command's module imports numba, pyrender, torch ... for seconds, and some of them swallow a
KeyboardInterrupt on the way (scipy's docstring processing does). So SIGINT is taken over before
anything else (``fdsl.interrupts.install``, which also undoes a SIGINT ignored by the shell that
started the command), held back while the module imports, and answered right after. The
commands' modules are named here as strings only: this shim is the one place above every layer.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Callable

from fdsl import interrupts
from fdsl.faults import fault_point

COMMANDS = {
    "gen-fractal": "fdsl.generators.cli:main",
    "render-shapenet": "fdsl.render.cli:main",
    "inspect-shards": "fdsl.datasets.inspect.cli:main",
    "export-shards": "fdsl.datasets.export.cli:main",
    "import-cub": "fdsl.datasets.importers.cli:main",
    "train-classifier": "fdsl.train.cli:main",
    "run-study": "fdsl.studies.cli:main",
}


def command_main(prog: str) -> Callable[[list[str]], int]:
    """The ``main(argv)`` of command ``prog``."""
    module, _, name = COMMANDS[prog].partition(":")
    return getattr(importlib.import_module(module), name)


def _after_exit(signum: int, frame: object) -> None:
    # The command is done and its output flushed: no traceback from interpreter shutdown.
    os.write(2, f"{_after_exit.prog}: interrupted; re-run the same command to resume\n".encode())
    os._exit(130)


def run(prog: str) -> int:
    """Run command ``prog`` on ``sys.argv[1:]`` with Ctrl-C answered in one line at any moment."""
    interrupts.install()
    try:
        fault_point("startup")
        with interrupts.deferred():
            main = command_main(prog)
            fault_point("imported")
        code = main(sys.argv[1:])
        interrupts.check()
    except KeyboardInterrupt:
        code = interrupts.answer(prog)
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        _after_exit.prog = prog  # type: ignore[attr-defined]
        signal.signal(signal.SIGINT, _after_exit)
    return code


def _command(prog: str) -> Callable[[], int]:
    def main() -> int:
        return run(prog)

    main.__name__ = main.__qualname__ = prog.replace("-", "_")
    main.__doc__ = f"The ``{prog}`` console script."
    return main


gen_fractal = _command("gen-fractal")
render_shapenet = _command("render-shapenet")
inspect_shards = _command("inspect-shards")
export_shards = _command("export-shards")
import_cub = _command("import-cub")
train_classifier = _command("train-classifier")
run_study = _command("run-study")
