"""``facegraft swap``: render the plate's frames as the source person (the format is in
``common/swap_file.py``). The guides are the plate's *source-shaped* passes (from
geometry transfer) when they exist, else the plate's own.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..common.dataset_file import DATASET_FORMAT, DATASET_VERSION, load_dataset
from ..common.errors import FaceGraftError
from ..common.file_checks import arrays_are_complete, json_is_readable
from ..common.frame_parts import (
    chunk_span,
    covering_parts,
    join_arrays,
    part_folder,
    part_is_done,
    remove_parts,
    write_part_meta,
)
from ..common.guides_file import load_guides
from ..common.profiles import get_profile
from ..common.progress import Progress
from ..common.shot_layout import SOURCE_IDENTITY_KEY, ShotLayout
from ..common.stage_folders import is_up_to_date, read_meta, written_folder
from ..common.stage_table import revision
from ..common.swap_file import SWAP_ARRAYS, SWAP_FORMAT, SWAP_VERSION, swap_is_complete
from ..common.texture_file import texture_key
from ..pipeline.texture import Texture, load_texture
from .checkpoint import averaged_tensors, load_checkpoint, read_sidecar, restore
from .model import SOURCE, SwapConfig, SwapModel, guides_tensor
from .plate_consistency import inconsistency_mattes
from .train import guide_arrays, parse_rows, require_dataset


def load_model(model_dir: Path) -> tuple[SwapModel, dict]:
    """The checkpoint's model on its averaged weights (its last weights when it has none)."""
    sidecar, tensors = load_checkpoint(model_dir)
    model = SwapModel(SwapConfig.from_dict(sidecar["config"]))
    restore(model, None, sidecar, tensors)
    model.load_state_dict(model.state_dict() | averaged_tensors(tensors))
    return model.eval(), sidecar


def swap_shot(shot: Path, profile: str = "cpu", frames: str | None = None,
              progress_mode: str = "bar", force: bool = False,
              chunk: tuple[int, int] | None = None) -> Path:
    """``facegraft swap``: the shot's plate as the source with the model of ``profile``."""
    layout = ShotLayout(shot)
    name = get_profile(profile).name
    return swap(layout.model(name), layout, layout.swap(name), frames=frames,
                progress_mode=progress_mode, force=force, chunk=chunk)


def _inputs_key(sidecar: dict, data_folder: Path, guides_folder: Path, layout: ShotLayout,
                frames) -> str | None:
    try:
        data_key = read_meta(data_folder, DATASET_FORMAT, DATASET_VERSION, "dataset"
                             ).get("inputs_key")
        guides_key = load_guides(guides_folder).meta.get("inputs_key")
        textures = [texture_key(layout.footage(role).texture) for role in ("source", "plate")]
    except FaceGraftError:
        return None  # reported where the inputs are loaded
    return hashlib.sha256(json.dumps([sidecar["weights_sha256"], data_key, guides_key, textures,
                                     frames, SWAP_VERSION, revision("swap")]).encode()
                          ).hexdigest()


def swap(model_dir: Path, layout: ShotLayout, folder: Path, frames: str | None = None,
         batch_size: int = 16, progress_mode: str = "bar", force: bool = False,
         chunk: tuple[int, int] | None = None) -> Path:
    """Swap the plate's frames ``frames`` (all by default) into ``folder``; ``chunk``: only
    those scene frames, as a part the run without a chunk joins."""
    sidecar = read_sidecar(model_dir)
    size = sidecar["config"]["resolution"]
    guides_folder = swap_guides_folder(layout, size)
    data_folder = layout.plate.dataset(size)
    key = _inputs_key(sidecar, data_folder, guides_folder, layout, frames)
    span = None
    if chunk is not None:  # as scene frames, before a part is looked up by it
        meta = read_meta(data_folder, DATASET_FORMAT, DATASET_VERSION, "dataset")
        chunk, span = chunk_span(chunk, meta["start"], meta["frame_count"], layout.plate.track)
    if not force and key and (is_up_to_date(folder, key, swap_is_complete) or (
            chunk is not None and part_is_done(folder, chunk, key, _part_is_complete))):
        Progress("swap", 1, progress_mode).finish(output=str(folder), skipped=True)
        return folder
    model, sidecar = load_model(model_dir)
    data = load_dataset(require_dataset(data_folder, size))
    guides = load_guides(guides_folder)
    if guides.meta["resolution"] != size:
        raise FaceGraftError(f"{guides.folder}: {guides.meta['resolution']}px guides for a "
                             f"{size}px model")
    n = data["meta"]["frame_count"]
    span = span or (0, n)
    rows = parse_rows(frames, n)
    rows = rows[np.asarray(data["present"])[rows] & np.asarray(guides.present)[rows]]
    rows = rows[(rows >= span[0]) & (rows < span[1])]
    if chunk is None and len(rows) == 0:
        raise FaceGraftError(f"{layout.plate.path}: no frame with a face to swap")
    parts = None if chunk is not None else covering_parts(folder, key, n, _part_is_complete)
    textures, plate_texture = _swap_textures(model, layout)
    progress = Progress("swap", len(rows), progress_mode)
    with written_folder(folder if chunk is None else part_folder(folder, chunk),
                        progress) as partial:
        if parts is not None:
            join_arrays(parts, partial, SWAP_ARRAYS)
        else:
            present = _swap_rows(model, data, guides, textures, plate_texture, rows, span,
                                 partial, batch_size, progress)
            np.save(partial / "present.npy", present)
        if chunk is not None:
            write_part_meta(partial, chunk, span, key)
        else:
            (partial / "meta.json").write_text(json.dumps({
                "format": SWAP_FORMAT, "version": SWAP_VERSION, "resolution": size,
                "model": str(model_dir.resolve()), "step": sidecar["step"],
                "guides": guides.folder.name, "frame_count": n, "frames": frames,
                "model_guides": list(model.config.guides), "inputs_key": key,
            }, indent=1))
    if chunk is None:
        remove_parts(folder)
    progress.finish(output=str(folder), frames=int(len(rows)))
    return folder


def swap_guides_folder(layout: ShotLayout, size: int) -> Path:
    """The guides the swap reads: the plate's source-shaped passes, else its own."""
    source_shaped = layout.plate.guides(size, SOURCE_IDENTITY_KEY)
    return source_shaped if source_shaped.is_dir() else layout.plate.guides(size)


def _swap_textures(model: SwapModel, layout: ShotLayout) -> tuple[tuple | None, Texture]:
    """(source texture, plate texture) when the model sees the texture guide, else None;
    and the plate's texture (what the plate's face looks like)."""
    plate_texture = load_texture(layout.plate.texture)
    if "texture" not in model.config.guides:
        return None, plate_texture
    return (load_texture(layout.source.texture), plate_texture), plate_texture


def model_faces(model: SwapModel, layout: ShotLayout, rows: np.ndarray,
                batch_size: int = 16) -> np.ndarray:
    """The source decoder's RGB (N, R, R, 3 uint8) of the plate dataset's ``rows`` on the
    swap's guides and textures: the model alone, no occlusion matte, nothing written
    (``bench/time_to_ssim.py`` judges checkpoints with it while training runs)."""
    size = model.config.resolution
    data = load_dataset(require_dataset(layout.plate.dataset(size), size))
    guides = load_guides(swap_guides_folder(layout, size))
    textures, plate_texture = _swap_textures(model, layout)
    device = next(model.parameters()).device
    faces = [_swap_batch(model, data, guides, textures, plate_texture,
                         rows[first:first + batch_size], device)[0][..., :3]
             for first in range(0, len(rows), batch_size)]
    return np.concatenate(faces)


def _part_is_complete(folder: Path) -> bool:
    return json_is_readable(folder / "meta.json") and arrays_are_complete(folder, SWAP_ARRAYS)


def _swap_rows(model: SwapModel, data: dict, guides, textures: tuple | None,
               plate_texture: Texture, rows: np.ndarray, span: tuple[int, int], partial: Path,
               batch_size: int, progress: Progress) -> np.ndarray:
    """The source decoder over ``rows`` into ``partial/rgba.npy``, whose rows are the track
    rows ``span``, and the occlusion matte into ``partial/occlusion.npy``: the larger of
    the occlusion head's and what does not look like the plate's face, less the head's
    parts that look like it; returns presence."""
    size = model.config.resolution
    count = span[1] - span[0]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    rgba = np.lib.format.open_memmap(partial / "rgba.npy", mode="w+", dtype=np.uint8,
                                     shape=(count, size, size, 4))
    occlusion = np.lib.format.open_memmap(partial / "occlusion.npy", mode="w+",
                                          dtype=np.uint8, shape=(count, size, size))
    present = np.zeros(count, bool)
    for first in range(0, len(rows), batch_size):
        batch = rows[first:first + batch_size]
        at = batch - span[0]
        # Always a whole batch (the last row repeated): the convolutions' arithmetic depends
        # on the batch's shape, so a farm chunk's short batch would round differently.
        whole = np.concatenate([batch, np.repeat(batch[-1:], batch_size - len(batch))])
        faces, mattes = _swap_batch(model, data, guides, textures, plate_texture, whole,
                                    device)
        rgba[at] = faces[:len(batch)]
        occlusion[at] = inconsistency_mattes(data, batch, plate_texture, mattes[:len(batch)])
        present[at] = True
        progress.update(first + len(batch))
    rgba.flush()
    occlusion.flush()
    return present


def _occlusion_guides(model: SwapModel, data: dict, rows: np.ndarray,
                      plate_texture: Texture) -> torch.Tensor:
    """The guides the occlusion head saw in training for the plate's crops: the plate's own
    geometry (its dataset's), not the source-shaped guides, and the plate's own texture
    under each frame's light; the channels the head skips left empty."""
    sets = model.config.occlusion_guide_sets
    arrays = guide_arrays(data, rows, plate_texture, plate_texture, sets)
    if "texture" not in sets:
        arrays["render"] = np.zeros((*arrays["region"].shape, 3), np.uint8)
    return guides_tensor(arrays, model.config.guides)


@torch.no_grad()
def _swap_batch(model: SwapModel, data: dict, guides, textures: tuple | None,
                plate_texture: Texture, rows: np.ndarray, device: torch.device
                ) -> tuple[np.ndarray, np.ndarray]:
    """The source decoder's RGBA and the occlusion head's matte (uint8) of ``rows``."""
    image = torch.from_numpy(np.asarray(data["rgb"][rows])).permute(0, 3, 1, 2)
    image = image.float().to(device) / 255
    arrays = guide_arrays(vars(guides), rows, *(textures or (None, None)), model.config.guides)
    cond = guides_tensor(arrays, model.config.guides).to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        rgb, mask = model(image, cond if model.config.use_guides else None, SOURCE)
        occluded = None
        if model.occlusion is not None:  # what covers the plate's own face
            face = torch.from_numpy(np.asarray(data["mask"][rows]) > 0).float()
            occluded = torch.sigmoid(model.occlusion(
                image, face.unsqueeze(1).to(device),
                _occlusion_guides(model, data, rows, plate_texture).to(device)))
    out = torch.cat([rgb.float(), torch.sigmoid(mask.float())], dim=1)
    as_bytes = lambda t: (t.cpu().numpy() * 255).round().astype(np.uint8)  # noqa: E731
    occlusion = (as_bytes(occluded.float()[:, 0]) if occluded is not None
                 else np.zeros((len(rows), *image.shape[-2:]), np.uint8))
    return as_bytes(out.permute(0, 2, 3, 1)), occlusion
