"""Every path of a shot: the one module that names FaceGraft's files and folders.

A *shot* is one folder holding everything FaceGraft makes for one plate and one source
(``facegraft run --shot``, the panel's Shot Folder, a farm job's shot). Nothing is ever
written next to the footage itself::

    SHOT/
      plate/                 the plate's footage folder
        track.npz            face track (common/track_file.py)
        face_shape.pc2       per-frame face shape, read by the scene's Mesh Cache
        scene.blend          the built scene (camera, face mesh, Source Identity key)
        guides_<R>/          guide passes of the plate's own face (common/guides_file.py)
        guides_<R>_source_identity/   the same with the source's face shape
        dataset_<R>/         aligned crops + guides for training (common/dataset_file.py)
        texture/             the face's albedo (albedo.png) and each frame's light
                             (pipeline/texture.py)
        track_mask/          what the plate's track must not see, by scene frame
                             (pipeline/track_mask.py): written only when asked
                             (facegraft track-mask), read by the plate's track
      source/                the source's footage folder (same names, no variant)
      model_<profile>/       the trained model (ml/checkpoint.py): checkpoint.json,
                             checkpoint-<step>.safetensors, config.json, loss.jsonl,
                             previews/, preview_latest.png
      swap_<profile>/        swapped aligned faces (common/swap_file.py)
      merge_<profile>/       the swap in plate space + matte (common/merge_file.py)
      occlusion_corrected/   an artist's corrections of the occlusion matte, by scene
                             frame (occlusion_<frame>.png); FaceGraft never writes here
      shot.blend             the composite scene, renders final/ and exr/
      final/final_<frame>.png, exr/facegraft_<frame>.exr   numbered by scene frame
      final/render.json      what the final frames were rendered from
      final.mp4, contact_sheet.png, eval.json, metrics.json
      pipeline.json          what each step of 'facegraft run' was last run from
      facegraft.log          what the add-on's worker runs printed, for support

``<R>`` is the model profile's crop size (``common/profiles.py``). Scene frame f shows
frame f - 1 of the footage (Blender counts from 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROLES = ("plate", "source")
SOURCE_IDENTITY_KEY = "Source Identity"  # the shape key transfer adds to the plate's face
TRACK_FILENAME = "track.npz"
POINT_CACHE_FILENAME = "face_shape.pc2"
SCENE_FILENAME = "scene.blend"
CHECKPOINT_SIDECAR = "checkpoint.json"
PIPELINE_STATE = "pipeline.json"
DELIVERABLES = ("final.mp4", "contact_sheet.png", "metrics.json")


def variant_suffix(shape_key: str | None) -> str:
    """Folder suffix of a guides variant: '' for the footage's own face shape."""
    return "" if shape_key is None else "_" + shape_key.lower().replace(" ", "_")


def final_name(scene_frame: int) -> str:
    return f"final_{scene_frame:06d}.png"


def exr_name(scene_frame: int) -> str:
    return f"facegraft_{scene_frame:06d}.exr"


def parts_folder(output: Path) -> Path:
    """Where the farm chunks of an output keep their parts: ``<output>.parts/``."""
    return output.with_name(output.name + ".parts")


def part_folder(output: Path, chunk: tuple[int, int]) -> Path:
    """One chunk's part (scene frames FIRST-LAST): ``<output>.parts/<FIRST>-<LAST>/``."""
    return parts_folder(output) / f"{chunk[0]:06d}-{chunk[1]:06d}"


@dataclass(frozen=True)
class FootageFolder:
    """``SHOT/plate`` or ``SHOT/source``: one footage's track, scene, guides and dataset."""

    path: Path

    @property
    def track(self) -> Path:
        return self.path / TRACK_FILENAME

    @property
    def point_cache(self) -> Path:
        return self.path / POINT_CACHE_FILENAME

    @property
    def scene(self) -> Path:
        return self.path / SCENE_FILENAME

    def guides(self, size: int, shape_key: str | None = None) -> Path:
        return self.path / f"guides_{size}{variant_suffix(shape_key)}"

    def dataset(self, size: int) -> Path:
        return self.path / f"dataset_{size}"

    @property
    def texture(self) -> Path:
        return self.path / "texture"

    @property
    def track_mask(self) -> Path:
        return self.path / "track_mask"


@dataclass(frozen=True)
class ShotLayout:
    """The paths of one shot folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def footage(self, role: str) -> FootageFolder:
        if role not in ROLES:
            raise ValueError(f"role {role!r}: one of {ROLES}")
        return FootageFolder(self.root / role)

    @property
    def plate(self) -> FootageFolder:
        return self.footage("plate")

    @property
    def source(self) -> FootageFolder:
        return self.footage("source")

    def model(self, profile: str) -> Path:
        return self.root / f"model_{profile}"

    def checkpoint(self, profile: str) -> Path:
        return self.model(profile) / CHECKPOINT_SIDECAR

    def preview(self, profile: str) -> Path:
        return self.model(profile) / "preview_latest.png"

    def swap(self, profile: str) -> Path:
        return self.root / f"swap_{profile}"

    def merge(self, profile: str) -> Path:
        return self.root / f"merge_{profile}"

    @property
    def occlusion_corrected(self) -> Path:
        return self.root / "occlusion_corrected"

    @property
    def composite_blend(self) -> Path:
        return self.root / "shot.blend"

    @property
    def final(self) -> Path:
        return self.root / "final"

    def final_frame(self, scene_frame: int) -> Path:
        return self.final / final_name(scene_frame)

    @property
    def render_state(self) -> Path:
        """What the frames in final/ were rendered from (addon/composite.py)."""
        return self.final / "render.json"

    @property
    def exr(self) -> Path:
        return self.root / "exr"

    def exr_frame(self, scene_frame: int) -> Path:
        return self.exr / exr_name(scene_frame)

    @property
    def movie(self) -> Path:
        return self.root / "final.mp4"

    @property
    def contact_sheet(self) -> Path:
        return self.root / "contact_sheet.png"

    @property
    def eval_report(self) -> Path:
        return self.root / "eval.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def pipeline_state(self) -> Path:
        return self.root / PIPELINE_STATE

    @property
    def log(self) -> Path:
        return self.root / "facegraft.log"
