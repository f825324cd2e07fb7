"""The fdsl shard format's public names in one place (see docs/FORMAT.md).

The format itself lives in ``fdsl.datasets.manifest`` (the manifest, its validation and
``resolve_member``) and ``fdsl.datasets.format`` (HDF5 and PNG writers and readers); this module
gathers the names loaders, tools and older callers use.
"""

from __future__ import annotations

from fdsl.atomic import (  # noqa: F401
    TMP_MARK,
    commit_file,
    ensure_writable,
    fsync_dir,
    sha256_file,
    temp_path,
    write_bytes_atomic,
)
from fdsl.datasets.format import open_dataset, verify_dataset  # noqa: F401
from fdsl.datasets.format.base import DatasetReader, Problem, check_record  # noqa: F401
from fdsl.datasets.format.hdf5.reader import check_content, iter_shard_arrays, open_shard  # noqa: F401
from fdsl.datasets.format.hdf5.writer import COMPRESSIONS, shard_file_name, write_shard  # noqa: F401
from fdsl.datasets.manifest import (  # noqa: F401
    FAILURES_NAME,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    ShardRecord,
    dump_manifest,
    manifest_path,
    read_manifest,
    require_field,
    resolve_member,
    shard_records,
    validate_manifest,
    write_manifest,
)
