"""PNG trees with a ``metadata.csv`` sidecar: ``writer.py`` writes a task and finishes a build,
``reader.py`` reads and verifies, ``listing.py`` holds the CSV files both use."""

from fdsl.datasets.format.base import StorageFormat
from fdsl.datasets.format.png.reader import PngReader
from fdsl.datasets.format.png.writer import PngShardWriter, finish, own_files

# png_bytes / png_sha256: the images' total size and the ListDigest over them, per task
FORMAT = StorageFormat("png", PngShardWriter, PngReader, finish, own_files, compression="png",
                       entry_keys={"png_bytes": "count", "png_sha256": "sha256"})
