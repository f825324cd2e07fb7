"""Files that are never seen half-written, and folders that one run owns at a time.

Every writer in fdsl (shards, manifests, PNG trees, checkpoints, metrics, summaries) goes through
these helpers: write to a hidden temporary name in the same folder, fsync, rename, fsync the
folder. ``folder_lock`` takes an advisory ``flock`` on ``FOLDER/.fdsl.lock``; the kernel drops it
when the process exits or is killed, so a crashed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from fdsl.errors import DiskFullError, FdslError

TMP_MARK = ".tmp-"
LOCK_NAME = ".fdsl.lock"


def fsync_dir(folder: str | Path) -> None:
    """Make a rename inside ``folder`` durable."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temp_path(final: str | Path) -> Path:
    """A hidden temporary name beside ``final``, unique to this process."""
    final = Path(final)
    return final.with_name(f".{final.name}{TMP_MARK}{os.getpid()}")


def commit_file(tmp: str | Path, final: str | Path) -> None:
    """fsync ``tmp`` and atomically rename it to ``final``."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    fsync_dir(Path(final).parent)


def remove_quietly(path: str | Path) -> None:
    """Delete a file if it is there (clean-up after a failed write)."""
    with contextlib.suppress(OSError):
        os.unlink(path)


def write_bytes_atomic(final: str | Path, data: bytes, *, sync: bool = True) -> None:
    """Write ``data`` to ``final`` through a temporary file and a rename.

    ``sync=False`` skips the fsyncs, for many small files whose hashes are checked on resume. The
    temporary file is removed when the write fails (a full disk, say) and the error re-raised.
    """
    final = Path(final)
    tmp = temp_path(final)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        remove_quietly(tmp)
        raise
    if sync:
        fsync_dir(final.parent)


def ensure_writable(folder: str | Path, what: str = "output folder") -> None:
    """Create ``folder`` and write a probe file in it; FdslError (one line) when that fails, so an
    unusable folder is reported before any long work."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe{TMP_MARK}{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise FdslError(f"cannot write to {what} {folder}: {exc.strerror or exc}") from None


class FolderLockedError(FdslError):
    """Another fdsl process holds the output folder."""


# flock's answers when another process holds the lock
_HELD = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


def locked_error(folder: str | Path) -> FolderLockedError:
    """The one-line refusal of a folder another fdsl run holds."""
    return FolderLockedError(f"{folder} is in use by another fdsl run; wait for it to finish or choose "
                             "another output folder")


def folder_busy(folder: str | Path) -> bool:
    """Whether another process holds ``folder``'s lock, looked at without creating the lock file
    (only an existing one can be held) or taking the lock."""
    lock = Path(folder) / LOCK_NAME
    if not lock.is_file():
        return False
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in _HELD:
            return True
        raise
    finally:
        os.close(fd)  # releases the probe lock
    return False


def file_stamp(path: str | Path) -> tuple[int, int, int] | None:
    """(inode, mtime_ns, size) of a file, None when it cannot be looked at: a later stamp that
    differs says the file was replaced or changed in between."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def check_output_folder(folder: str | Path, what: str = "output folder") -> None:
    """Refuse (FdslError, one line) an output folder that this run could not use, creating and
    changing nothing: a path that is a file or lies below one, a folder (or, for a new one, the
    nearest existing parent) this process may not write, a folder another fdsl run holds. A
    command checks this with its other inputs, before it creates or locks anything."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise FdslError(f"cannot write to {what} {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FdslError(f"cannot write to {what} {folder}: {existing} is not writable")
    if existing == folder and folder_busy(folder):
        raise locked_error(folder)


@contextlib.contextmanager
def folder_lock(folder: str | Path, *, wait: bool = False) -> Iterator[Path]:
    """Hold an exclusive advisory lock on ``folder`` (created if missing) for the ``with`` body.

    A second process asking for the same folder is refused at once with FolderLockedError (one
    line naming the folder), or blocks until the first is done when ``wait`` is true. The lock file
    itself stays (it is empty and hidden); the kernel releases the lock on exit or kill.
    """
    folder = Path(folder)
    ensure_writable(folder)
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in _HELD:
                raise locked_error(folder) from None
            raise
        # A run refused before writing anything removes the lock file it made; a lock taken on
        # that removed file guards nothing, so take the lock again on the file now in place.
        if _same_file(fd, path):
            break
        os.close(fd)
    try:
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def free_bytes(folder: str | Path) -> int:
    """Bytes free for an unprivileged writer on the file system holding ``folder``."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def is_disk_full(exc: BaseException) -> bool:
    """Whether an exception is the OS saying the disk is full or failing (ENOSPC, EDQUOT, EIO)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO)


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def disk_full_error(folder: str | Path, exc: BaseException | None = None, needed: int | None = None) -> DiskFullError:
    """The one-line error for a full (or failing) disk under ``folder``: what is free, what is needed."""
    try:
        free = _mib(free_bytes(folder))
    except OSError:
        free = "unknown"
    need = f", about {_mib(needed)} needed" if needed else ""
    # os.strerror, not the exception's text: HDF5 puts a multi-line report there.
    cause = f" ({os.strerror(exc.errno) if exc.errno else 'write failed'})" if isinstance(exc, OSError) else ""
    return DiskFullError(f"disk full writing {folder}{cause}: {free} free{need}; free some space and "
                         "re-run the same command to resume")


def check_free_space(folder: str | Path, needed: int) -> None:
    """Raise DiskFullError when ``folder``'s file system has less than ``needed`` bytes free."""
    if needed > 0 and free_bytes(folder) < needed:
        raise disk_full_error(folder, needed=needed)


@contextlib.contextmanager
def disk_full_guard(folder: str | Path, needed: int | None = None) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT/EIO raised in the body into DiskFullError naming ``folder``."""
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(folder, exc, needed) from None
        raise


def _boot_time() -> float | None:
    try:
        with open("/proc/stat") as fh:
            return next(float(line.split()[1]) for line in fh if line.startswith("btime "))
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def writer_alive(pid: int, path: str | Path) -> bool:
    """Whether process ``pid`` may still be writing ``path``: it exists, is no zombie (a killed
    process waits as one until it is reaped, sometimes for seconds) and, where /proc tells, it
    started before ``path`` last changed (else the pid was reused by another process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        state, started_ticks = fields[0], int(fields[19])
        changed = os.stat(path).st_mtime
    except (OSError, IndexError, ValueError):
        return True  # no /proc (not Linux) or the file went: keep it
    if state in ("Z", "X"):
        return False
    boot = _boot_time()
    # btime is whole seconds, so the start computed from it may be up to 1 s early, never late.
    return boot is None or boot + started_ticks / os.sysconf("SC_CLK_TCK") <= changed + 1.0


def remove_stale_temps(folder: str | Path) -> int:
    """Delete the temporary files that dead processes left anywhere below ``folder`` (a killed
    or crashed run); call it holding ``folder_lock``. A file whose writer (the pid in its name)
    still runs is kept: an orphaned worker of a killed run may be writing it. Returns how many
    were removed."""
    removed = 0
    for path in Path(folder).rglob(f".*{TMP_MARK}*"):
        pid = path.name.rpartition(TMP_MARK)[2]
        if pid.isdigit() and int(pid) != os.getpid() and writer_alive(int(pid), path):
            continue
        if path.is_file() or path.is_symlink():
            remove_quietly(path)
            removed += 1
    return removed
