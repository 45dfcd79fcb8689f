"""A footage's texture folder: what makes it whole and what identifies it, readable without
OpenCV (``pipeline/texture.py`` writes, reads and renders it; its docstring has the
format)."""

from __future__ import annotations

import json
from pathlib import Path

from .file_checks import json_is_readable, npy_is_complete, png_is_complete
from .samples import sha256_of

TEXTURE_FORMAT = "facegraft.texture"
TEXTURE_VERSION = 1
# How a texture is rendered (``render_face``): part of the texture's key, so a model that
# learnt from the renders of an earlier way, and its swaps and merges, are made again.
# 2: the relighting ratio blurred over the face.
RENDERING = 2


def texture_is_complete(folder: Path) -> bool:
    folder = Path(folder)
    return (json_is_readable(folder / "meta.json") and png_is_complete(folder / "albedo.png")
            and png_is_complete(folder / "coverage.png")
            and npy_is_complete(folder / "lighting.npy"))


def texture_key(folder: Path) -> list | None:
    """What a texture folder holds, for the keys of the stages that read it: its inputs, the
    albedo's content (an artist's paint counts) and the way it is rendered; None when there
    is none."""
    try:
        meta = json.loads((Path(folder) / "meta.json").read_text())
        return [meta.get("inputs_key"), sha256_of(Path(folder) / "albedo.png"), RENDERING]
    except (OSError, ValueError, AttributeError):
        return None
