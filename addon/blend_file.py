"""Writing .blend files the way every FaceGraft stage does: atomically, with relative paths."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import bpy


def _save_atomic(blend: Path, copy: bool) -> Path:
    blend = Path(blend)
    fd, tmp = tempfile.mkstemp(prefix=f".{blend.stem}.", suffix=".partial.blend", dir=blend.parent)
    os.close(fd)
    # Blender keeps a ".blend1" backup of a file it saves over: give it none to back up.
    os.unlink(tmp)
    try:
        if bpy.data.filepath and not copy:  # absolute paths (images loaded since) relative...
            bpy.ops.file.make_paths_relative()
        # ...and relative_remap rebases them onto the new .blend's folder (the temporary
        # file sits beside the final one, so they stay right); a first save makes every
        # path relative.
        bpy.ops.wm.save_as_mainfile(filepath=tmp, relative_remap=True, compress=False,
                                    copy=copy)
        os.replace(tmp, blend)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return blend


def save_blend_atomic(blend: Path) -> Path:
    """Save the open file as ``blend`` (which it then is) via a temporary file, renamed."""
    return _save_atomic(blend, copy=False)


def save_copy_atomic(blend: Path) -> Path:
    """Save a copy of the open file as ``blend``; the open file keeps its own name."""
    return _save_atomic(blend, copy=True)
