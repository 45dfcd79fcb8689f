"""``facegraft swap``: render the target's frames as the source person (the format is in
``common/swap_file.py``). The guides are the target's *source-shaped* passes
(``guides_<R>_source_identity``, from geometry transfer) when they exist, else the
target's own.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..common.errors import FaceGraftError
from ..common.guides_file import guides_dir, load_guides
from ..common.progress import Progress
from ..common.stage_folders import is_up_to_date, read_meta, written_folder
from ..common.swap_file import SWAP_FORMAT, SWAP_VERSION, swap_dir
from .checkpoint import load_checkpoint, read_sidecar, restore
from .dataset import DATASET_FORMAT, DATASET_VERSION, dataset_dir, load_dataset
from .model import SwapConfig, SwapModel, guides_tensor
from .train import SOURCE, parse_rows

SOURCE_VARIANT = "Source Identity"


def load_model(run: Path) -> tuple[SwapModel, dict]:
    sidecar, tensors = load_checkpoint(run)
    model = SwapModel(SwapConfig.from_dict(sidecar["config"]))
    restore(model, None, sidecar, tensors)
    return model.eval(), sidecar


def swap(run: Path, target: Path, frames: str | None = None, variant: str | None = None,
         batch_size: int = 16, progress_mode: str = "bar", force: bool = False) -> Path:
    run, target = Path(run), Path(target)
    sidecar = read_sidecar(run)
    resolution = sidecar["config"]["resolution"]
    if variant is None:
        source_shaped = guides_dir(target, resolution, SOURCE_VARIANT)
        guides_folder = source_shaped if source_shaped.is_dir() else guides_dir(target, resolution)
    else:
        guides_folder = guides_dir(target, resolution, variant)
    folder = swap_dir(target, resolution, run)
    try:
        data_key = read_meta(dataset_dir(target, resolution), DATASET_FORMAT,
                             DATASET_VERSION, "dataset").get("inputs_key")
        guides_key = load_guides(guides_folder).meta.get("inputs_key")
    except FaceGraftError:
        data_key = guides_key = None  # reported below, where the inputs are loaded
    key = hashlib.sha256(json.dumps([sidecar["weights_sha256"], data_key, guides_key, frames,
                                     SWAP_VERSION]).encode()).hexdigest()
    if not force and data_key and is_up_to_date(folder, key):
        Progress("swap", 1, progress_mode).finish(output=str(folder), skipped=True)
        return folder
    model, sidecar = load_model(run)
    config = model.config
    size = config.resolution
    if not dataset_dir(target, size).is_dir():
        raise FaceGraftError(
            f"{dataset_dir(target, size)}: no dataset at the model's resolution {size} "
            f"(the run works at {size}x{size}); run 'facegraft guides --size {size}' and "
            f"'facegraft dataset --size {size}' on the target"
        )
    data = load_dataset(dataset_dir(target, size))
    guides = load_guides(guides_folder)
    if guides.meta["resolution"] != size:
        raise FaceGraftError(f"{guides.folder}: {guides.meta['resolution']}px guides for a "
                             f"{size}px model")
    n = data["meta"]["frame_count"]
    rows = parse_rows(frames, n)
    rows = rows[np.asarray(data["present"])[rows] & np.asarray(guides.present)[rows]]
    if len(rows) == 0:
        raise FaceGraftError(f"{target}: no frame with a face to swap")
    progress = Progress("swap", len(rows), progress_mode)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    with written_folder(folder, progress) as partial:
        rgba = np.lib.format.open_memmap(partial / "rgba.npy", mode="w+", dtype=np.uint8,
                                         shape=(n, size, size, 4))
        present = np.zeros(n, bool)
        with torch.no_grad():
            for first in range(0, len(rows), batch_size):
                chunk = rows[first:first + batch_size]
                image = torch.from_numpy(np.asarray(data["rgb"][chunk])).permute(0, 3, 1, 2)
                region = torch.from_numpy(np.asarray(guides.region[chunk]))
                cond = guides_tensor(torch.from_numpy(np.asarray(guides.normals[chunk])),
                                     torch.from_numpy(np.asarray(guides.uv[chunk])), region)
                with torch.autocast(device.type, dtype=torch.bfloat16,
                                    enabled=device.type == "cuda"):
                    rgb, mask = model(image.float().to(device) / 255,
                                      cond.to(device) if config.use_guides else None, SOURCE)
                out = torch.cat([rgb.float(), torch.sigmoid(mask.float())], dim=1)
                rgba[chunk] = (out.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
                present[chunk] = True
                progress.update(first + len(chunk))
        rgba.flush()
        del rgba
        np.save(partial / "present.npy", present)
        (partial / "meta.json").write_text(json.dumps({
            "format": SWAP_FORMAT, "version": SWAP_VERSION, "resolution": size,
            "run": str(run.resolve()), "step": sidecar["step"], "guides": guides.folder.name,
            "frame_count": n, "frames": frames, "use_guides": config.use_guides,
            "inputs_key": key,
        }, indent=1))
    progress.finish(output=str(folder), frames=int(len(rows)))
    return folder
