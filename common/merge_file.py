"""The merge folder: the swapped faces in plate space and their matte. The one module
that reads it (the merge stage writes it; the compositor, delivery and the panel read it).

Format ``facegraft.merge`` version 2 (1 had no occlusion): ``SHOT/merge_<profile>/`` with
three PNG sequences numbered by *scene* frame (footage frame + 1, as in the built scene),
one file per frame of the track so Blender reads them as plain image sequences:

- ``swap/swap_<frame:06d>.png``: RGBA 8-bit, the swapped face warped to the plate, colour
  matched; alpha = the network's predicted alpha on the mesh (fully transparent where
  there is no swap);
- ``matte/matte_<frame:06d>.png``: 8-bit grey, the matte the compositor lays the face
  with: the source-shaped mesh's coverage (mouth interior from the swap or the plate),
  within the plate's own face mesh unless the source's outline is asked for, eroded,
  faded where the surface turns away from the camera, feathered, and cut where something
  stands in front of the face;
- ``occlusion/occlusion_<frame:06d>.png``: 8-bit grey, what stands in front of the face
  (255: an occluder): the model's occlusion matte, or the artist's corrected frame from
  ``SHOT/occlusion_corrected/`` where there is one;

and ``meta.json``: format, version, frame_count, first_scene_frame, width, height, swap
(the model folder), options, plate_grain (the plate's noise level, 0..1), inputs_key,
seconds, fps. Importable without OpenCV (the command line's choices come from here).
"""

from __future__ import annotations

from pathlib import Path

from .errors import FaceGraftError
from .file_checks import png_is_complete
from .stage_folders import read_meta

MERGE_FORMAT = "facegraft.merge"
MERGE_VERSION = 2
COLOR_MODES = ("none", "mean", "meanstd", "hist")  # colour matching in Lab
MOUTH_MODES = ("swap", "plate")  # where the mouth interior comes from
SHADING_MODES = ("render", "none")  # the face's broad shading from the CG render, or not
OUTLINE_MODES = ("plate", "source")  # whose face outline bounds the matte
SEQUENCES = ("swap", "matte", "occlusion")


def sequence_name(kind: str, scene_frame: int) -> str:
    """File name of one frame of the ``swap`` or ``matte`` sequence."""
    return f"{kind}_{scene_frame:06d}.png"


def frame_path(folder: Path, kind: str, scene_frame: int) -> Path:
    return Path(folder) / kind / sequence_name(kind, scene_frame)


def load_merge_meta(folder: Path) -> dict:
    """A merge folder's meta, refused unless it is this format and version."""
    return read_meta(Path(folder), MERGE_FORMAT, MERGE_VERSION, "merge")


def merge_is_complete(folder: Path) -> bool:
    """meta.json and every frame of every sequence, each PNG whole."""
    try:
        meta = load_merge_meta(folder)
        first, count = int(meta["first_scene_frame"]), int(meta["frame_count"])
    except (FaceGraftError, KeyError, TypeError, ValueError):
        return False
    return all(png_is_complete(frame_path(folder, kind, frame)) for kind in SEQUENCES
               for frame in range(first, first + count))
