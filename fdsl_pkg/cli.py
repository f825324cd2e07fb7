"""Shared command-line plumbing: one-line errors, exit codes, logging, and the flags every
command spells the same way (``--quiet``, ``--threads``, ``--version``, folders as ``--data DIR``
/ ``--out DIR`` or positionally)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from fdsl import interrupts
from fdsl.errors import FdslError

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``prog: error: ...``) and exit 2, and whose
    folders (``add_folders``) may be given positionally or by flag."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        # Two optional positionals (DIR OUT) parse only intermixed: plain parsing hands the first
        # positional of "DIR --to F OUT" both slots and then refuses OUT.
        if len(getattr(self, "_fdsl_folders", ())) > 1:
            parsed = self.parse_intermixed_args(args, namespace)
        else:
            parsed = super().parse_args(args, namespace)
        if hasattr(parsed, FOLDERS):  # set by this parser or by the subcommand's parser
            _resolve_folders(parsed)
        return parsed


class Folder(NamedTuple):
    """A folder a command takes either positionally (``METAVAR``) or as ``FLAG METAVAR``."""

    flag: str  # "--data"
    metavar: str  # "DIR"
    what: str  # "the data set folder": names it in messages
    help: str

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


FOLDERS = "_fdsl_folders"


def add_folders(parser: OneLineParser, *folders: Folder) -> None:
    """Add ``folders`` in order, each as an optional positional and as its flag (both in --help).

    After parsing, ``args.<flag name>`` holds each folder: the flags' values, and the positionals
    given filling, in order, the folders no flag named. A folder given both ways, or not at all,
    is a one-line error."""
    parser._fdsl_folders = folders  # type: ignore[attr-defined]
    for f in folders:
        parser.add_argument(f"{f.dest}_positional", nargs="?", metavar=f.metavar,
                            help=f"{f.help}; or {f.flag} {f.metavar}")
    for f in folders:
        parser.add_argument(f.flag, dest=f.dest, metavar=f.metavar, help=f"{f.what}: the same as {f.metavar}")
    parser.set_defaults(**{FOLDERS: parser})


def _resolve_folders(args: argparse.Namespace) -> None:
    parser = getattr(args, FOLDERS)
    delattr(args, FOLDERS)
    folders: tuple[Folder, ...] = parser._fdsl_folders
    given = [getattr(args, f"{f.dest}_positional") for f in folders]
    for f in folders:
        delattr(args, f"{f.dest}_positional")
    given = [g for g in given if g is not None]
    flagged = [f for f in folders if getattr(args, f.dest) is not None]
    if len(given) == len(folders) and flagged:
        f = flagged[0]
        parser.error(f"{f.what} is given twice, as {given[folders.index(f)]!r} and as {f.flag} "
                     f"{getattr(args, f.dest)!r}; give it once")
    empty = [f for f in folders if getattr(args, f.dest) is None]
    if len(given) > len(empty):
        parser.error(f"{given[len(empty)]!r} is one folder too many: {' and '.join(f.flag for f in flagged)} "
                     f"already name{'s' if len(flagged) == 1 else ''} "
                     f"{' and '.join(f.what for f in flagged)}; give each folder once")
    for f, value in zip(empty, given, strict=False):
        setattr(args, f.dest, value)
    for f in folders:
        if getattr(args, f.dest) is None:
            parser.error(f"give {f.what}: {f.metavar} or {f.flag} {f.metavar}")


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
    """Add ``--version``: prints ``PROG (fdsl X.Y.Z)`` and exits 0, in every command and
    subcommand alike (``run-study pruning (fdsl X.Y.Z)``)."""
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
