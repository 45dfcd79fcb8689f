"""Output folders of the stages that write many arrays (guides, dataset, swap): their
``meta.json``, the up-to-date check of a rerun, and the swap of a finished folder into
place (written as ``<name>.partial``, then renamed, replacing an older one only once the
new one is complete)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .atomic import write_failure
from .errors import FaceGraftError


def read_meta(folder: Path, fmt: str, version: int, stage: str) -> dict:
    """``folder/meta.json``, refused unless it is format ``fmt`` at ``version``."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError) as exc:
        raise FaceGraftError(f"{folder}: no readable {stage} output (run {stage} again)"
                             ) from exc
    if meta.get("format") != fmt or meta.get("version") != version:
        raise FaceGraftError(
            f"{folder}: format {meta.get('format')} version {meta.get('version')} is not "
            f"supported (this FaceGraft reads {fmt} version {version})"
        )
    return meta


def load_arrays(folder: Path, names, stage: str) -> dict[str, np.ndarray]:
    """The folder's ``<name>.npy`` arrays, memory-mapped read-only; a missing or damaged one
    is one line naming it and the stage that makes it again."""
    arrays = {}
    for name in names:
        path = Path(folder) / f"{name}.npy"
        try:
            arrays[name] = np.load(path, mmap_mode="r")
        except FileNotFoundError as exc:
            raise FaceGraftError(f"{path}: missing; run {stage} again") from exc
        except (OSError, ValueError, EOFError) as exc:
            raise FaceGraftError(f"{path}: damaged or cut short; run {stage} again") from exc
    return arrays


def is_up_to_date(folder: Path, inputs_key: str, complete: Callable[[Path], bool]) -> bool:
    """Whether ``folder`` was made from exactly these inputs (its meta's ``inputs_key``) and
    is whole (``complete``: its format's check). Anything else is redone."""
    try:
        meta = json.loads((Path(folder) / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("inputs_key") == inputs_key and complete(folder)


def partial_folder(folder: Path) -> Path:
    """A fresh, empty ``<folder>.partial`` to write into."""
    partial = Path(folder).with_name(Path(folder).name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return partial


def replace_folder(partial: Path, folder: Path) -> Path:
    """Rename the finished ``partial`` onto ``folder``, replacing an older one."""
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
        os.replace(partial, folder)
        shutil.rmtree(old)
    else:
        os.replace(partial, folder)
    return folder


@contextlib.contextmanager
def written_folder(folder: Path, progress=None) -> Iterator[Path]:
    """Yield a fresh ``<folder>.partial`` to write into; rename it onto ``folder`` when the
    block ends, or remove it (and report a FaceGraftError to ``progress``) when it fails."""
    partial = partial_folder(folder)
    try:
        yield partial
        replace_folder(partial, Path(folder))
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, OSError):  # a full disk: name the folder being written
            exc = FaceGraftError(f"{folder}: could not write ({write_failure(exc)})")
        if isinstance(exc, FaceGraftError):
            if progress is not None:
                progress.error(str(exc))
            raise exc from None
        raise
