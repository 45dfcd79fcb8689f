"""Whether a stage's output is whole, whatever the output: the one place ``facegraft run``
and the panel ask before they trust a stage's result (the stages themselves check their
own outputs with the same functions). A file cut short, emptied or overwritten with
something else counts as missing: the stage that makes it runs again."""

from __future__ import annotations

import json
from pathlib import Path

from .checkpoint_file import checkpoint_is_complete
from .dataset_file import DATASET_FORMAT, dataset_is_complete
from .file_checks import (
    blend_is_complete,
    exr_is_complete,
    json_is_readable,
    png_is_complete,
)
from .guides_file import GUIDES_FORMAT, guides_are_complete
from .merge_file import MERGE_FORMAT, merge_is_complete
from .point_cache import pc2_is_complete
from .shot_layout import CHECKPOINT_SIDECAR, TRACK_FILENAME, exr_name, final_name
from .swap_file import SWAP_FORMAT, swap_is_complete
from .texture_file import TEXTURE_FORMAT, texture_is_complete
from .track_file import track_is_complete

FOLDER_CHECKS = {GUIDES_FORMAT: guides_are_complete, DATASET_FORMAT: dataset_is_complete,
                 SWAP_FORMAT: swap_is_complete, MERGE_FORMAT: merge_is_complete,
                 TEXTURE_FORMAT: texture_is_complete}


def output_is_complete(path: Path) -> bool:
    path = Path(path)
    if path.name == TRACK_FILENAME:
        return track_is_complete(path)
    if path.name == CHECKPOINT_SIDECAR:
        return checkpoint_is_complete(path.parent)
    if path.suffix == ".blend":
        return blend_is_complete(path)
    if path.suffix == ".pc2":
        return pc2_is_complete(path)
    if path.suffix == ".png":
        return png_is_complete(path)
    if path.suffix == ".json":
        return json_is_readable(path)
    if path.suffix == ".mp4":
        return path.is_file() and path.stat().st_size > 0
    if (path / "render.json").is_file():
        return final_frames_are_complete(path)
    try:
        check = FOLDER_CHECKS[json.loads((path / "meta.json").read_text())["format"]]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return check(path)


def final_frames_are_complete(final: Path) -> bool:
    """Every frame of the shot's scene range rendered whole (and its EXR beside it)."""
    try:
        state = json.loads((Path(final) / "render.json").read_text())
        first, last = (int(v) for v in state["scene_frames"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    exr = Path(final).with_name("exr")
    return all(png_is_complete(Path(final) / final_name(frame))
               and (not state.get("exr", True) or exr_is_complete(exr / exr_name(frame)))
               for frame in range(first, last + 1))
