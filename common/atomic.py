"""Atomic file writes: write to a temporary name in the target folder, then rename.

A reader (or a crash) never sees a half-written file, and an existing file is only
replaced once its successor is complete.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import FaceGraftError


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    The temporary file keeps the target's suffix so that writers which choose a format
    by extension (numpy, OpenCV) behave the same. On any exception it is removed.
    """
    target = Path(target)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=f".partial{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the final file the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as exc:  # a full disk or a size limit: name the file the user asked for
        tmp.unlink(missing_ok=True)
        raise FaceGraftError(f"{target}: could not write ({write_failure(exc)})") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_failure(exc: OSError) -> str:
    """Why a write failed, in words: a full disk says so."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk full"
    return exc.strerror or str(exc)


def write_bytes_atomic(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (temp file, fsync, rename)."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def new_folders(folder: Path) -> Iterator[Path]:
    """Create ``folder`` (and missing parents) for the block; when the block fails, remove
    again those it created that are still empty, so a refused or interrupted command
    leaves the file system as it found it."""
    folder = Path(folder)
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FaceGraftError(f"{folder}: cannot create the folder, not writable "
                             f"({exc.strerror or type(exc).__name__})") from exc
    try:
        yield folder
    except BaseException:
        for path in missing:  # deepest first
            try:
                path.rmdir()
            except OSError:
                break
        raise
