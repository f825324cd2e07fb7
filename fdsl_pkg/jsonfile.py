"""Reading a JSON file that may be missing, cut short or not JSON at all, in one clear line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fdsl.errors import FdslError


def read_json(path: Path, what: str, error: type[FdslError] = FdslError) -> Any:
    """The parsed content of ``path``; ``error`` "PATH: unreadable WHAT (reason)" when the file
    cannot be read or parsed (unreadable, not UTF-8, not JSON, nested too deep)."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise error(f"{path}: unreadable {what} ({exc})") from None
