"""Shared command-line plumbing: one-line errors, exit codes, logging."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from fdsl import interrupts
from fdsl.errors import FdslError

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``prog: error: ...``) and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def number(kind: type = int, *, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> Callable[[str], Any]:
    """An argparse type: text -> ``kind`` (int or float) within [low, high] (``low_open``: > low).

    The message names the accepted range; NaN and infinities are refused for floats.
    """
    if low is None and high is None:
        want = "an integer" if kind is int else "a number"
    elif high is None:
        want = f"{'an integer' if kind is int else 'a number'} {'>' if low_open else '>='} {low:g}"
    else:
        want = f"a number in [{low:g}, {high:g}]" if kind is float else f"an integer between {low} and {high}"
    if kind is int and low == 1 and high is None:
        want = "a positive integer"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except (TypeError, ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}") from None
        ok = value == value and value not in (float("inf"), float("-inf"))
        if low is not None:
            ok = ok and (value > low if low_open else value >= low)
        if high is not None:
            ok = ok and value <= high
        if not ok:
            raise argparse.ArgumentTypeError(f"expected {want}, got {value}")
        return value

    parse.__name__ = f"{kind.__name__}_in_range"  # argparse names the type in some messages
    return parse


positive_int = number(int, low=1)
non_negative_int = number(int, low=0)
positive_float = number(float, low=0, low_open=True)
non_negative_float = number(float, low=0)
fraction = number(float, low=0, high=1)


def add_version(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--version`` (prints ``PROG fdsl X.Y.Z`` and exits 0)."""
    from fdsl import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s (fdsl {__version__})")
    return parser


def add_quiet(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--quiet``: no progress and no log lines but warnings and errors (results still print)."""
    parser.add_argument("--quiet", action="store_true",
                        help="no progress and no log lines but warnings and errors (results still print)")


def add_threads(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: str,
                *aliases: str) -> None:
    """Add ``--threads N`` (and ``aliases``), one meaning in every command: the CPU threads torch
    uses in each process that computes (``default`` says what happens without it)."""
    parser.add_argument("--threads", *aliases, type=positive_int, metavar="N",
                        help=f"torch CPU threads per process (default: {default})")


def use_threads(threads: int | None) -> None:
    """Apply ``--threads`` to this process (None: torch's default, one per core)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """fdsl's own log lines at INFO (DEBUG with ``verbose``, WARNING with ``quiet``); other
    libraries' only from WARNING (PyOpenGL's notes at import, say), unless ``verbose``."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("fdsl").setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


def run_cli(prog: str, body: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a CLI body, turning FdslError into one line on stderr and exit status 2, and Ctrl-C
    into one line and exit status 130 (also one that a library swallowed on the way)."""
    try:
        code = body(argv)
        interrupts.check()
        return code
    except FdslError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a path the user gave cannot be read or written
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return interrupts.answer(prog)
