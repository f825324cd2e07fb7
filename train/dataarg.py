"""The ``--data`` argument: a folder, or ``gen:FOLDER`` for a generated set made as training reads it.

Pure path handling (no torch), for the config stage and the data stage alike.
"""

from __future__ import annotations

from pathlib import Path

GENERATED = "gen:"


def generated_folder(data: str | Path | None) -> Path | None:
    """FOLDER of a ``gen:FOLDER`` data argument, else None."""
    text = "" if data is None else str(data)
    return Path(text[len(GENERATED):]) if text.startswith(GENERATED) else None


def absolute_data(data: str | Path) -> str | Path:
    """A data argument made absolute: the folder's path, keeping a ``gen:`` prefix."""
    folder = generated_folder(data)
    return f"{GENERATED}{folder.resolve()}" if folder is not None else Path(data).resolve()


def data_root(data: str | Path) -> Path:
    """The folder a data argument reads (FOLDER of ``gen:FOLDER``)."""
    return generated_folder(data) or Path(data)
