"""``facegraft train``: fit the swap model to a source and a target shot.

Each step draws half a batch from each identity's dataset (memory-mapped; no video is
decoded), warps and colour-jitters the encoder's input (the target stays put: it must
line up with the guides), and reconstructs each identity with its own decoder. The loss
is, inside the face mask, L1 plus 1 - SSIM with the eyes, lips and mouth weighted
higher, plus a binary cross-entropy for the predicted mask.

Everything random in a step is drawn from a generator seeded by (seed, step), so a run
resumed from a checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..common.atomic import atomic_path, write_bytes_atomic
from ..common.checkpoint_file import checkpoint_is_complete
from ..common.dataset_file import load_dataset
from ..common.errors import FaceGraftError
from ..common.profiles import GUIDE_NAMES, get_profile
from ..common.progress import Progress
from ..common.shot_layout import CHECKPOINT_SIDECAR, FootageFolder, ShotLayout
from ..common.texture_file import texture_key
from ..pipeline.texture import Texture, load_texture, render_face
from .checkpoint import load_checkpoint, read_sidecar, restore, save_checkpoint
from .losses import occlusion_loss, reconstruction_loss
from .model import SOURCE, TARGET, SwapConfig, SwapModel, guides_tensor, profile
from .occluders import paste_occluders


@dataclass
class TrainOptions:
    profile: str = "cpu"
    batch_size: int = 8
    learning_rate: float = 2e-4
    steps: int | None = None
    minutes: float | None = None
    checkpoint_every: int = 200
    preview_every: int = 200
    seed: int = 1
    source_frames: str | None = None  # "FIRST:END" rows of the source dataset
    plate_frames: str | None = None
    region_weight: float = 3.0  # eyes, lips and mouth count this much more


def parse_rows(text: str | None, count: int) -> np.ndarray:
    if not text:
        return np.arange(count)
    first, end = (int(v) if v else d for v, d in zip(text.split(":"), (0, count), strict=True))
    if not 0 <= first < end <= count:
        raise FaceGraftError(f"frame range {text} is outside 0:{count}")
    return np.arange(first, end)


def require_dataset(folder: Path, resolution: int) -> Path:
    """``folder`` when it exists; else say which resolutions there are and what makes it."""
    if not folder.is_dir():
        others = sorted(p.name for p in folder.parent.glob("dataset_*"))
        raise FaceGraftError(
            f"{folder}: no dataset at the model's resolution {resolution}"
            + (f" (found {', '.join(others)})" if others else "")
            + f"; run Guides and Dataset at {resolution} px (the model's profile)")
    return folder


class FootageData:
    """One identity's training frames (memory-mapped) and its guides: its own texture
    rendered under each frame's own light."""

    def __init__(self, footage: FootageFolder, config: SwapConfig, rows: str | None):
        folder = footage.dataset(config.resolution)
        self.data = load_dataset(require_dataset(folder, config.resolution))
        chosen = parse_rows(rows, self.data["meta"]["frame_count"])
        self.rows = chosen[np.asarray(self.data["present"])[chosen]]
        if len(self.rows) == 0:
            raise FaceGraftError(f"{folder}: no frame with a face in the chosen range")
        self.guides = config.guides
        self.texture = load_texture(footage.texture) if "texture" in config.guides else None

    def batch(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        rows = np.sort(rows)
        d = self.data
        out = {
            "rgb": torch.from_numpy(np.asarray(d["rgb"][rows])).permute(0, 3, 1, 2).float() / 255,
            "mask": torch.from_numpy(np.asarray(d["mask"][rows])).float().unsqueeze(1) / 255,
            "region": torch.from_numpy(np.asarray(d["region"][rows])),
        }
        out["guides"] = guides_tensor(guide_arrays(d, rows, self.texture, self.texture,
                                                   self.guides), self.guides)
        return out


def guide_arrays(data: dict, rows: np.ndarray, albedo_of: Texture | None,
                 light_of: Texture | None, guides: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The guide arrays of ``rows`` (of a dataset, or ``vars()`` of a guides folder), with
    the albedo of ``albedo_of`` rendered under the light of ``light_of`` when the model
    sees "texture"."""
    arrays = {name: np.asarray(data[name][rows]) for name in ("normals", "uv", "region", "iris")}
    if "texture" in guides:
        arrays["render"] = np.stack([
            render_face(albedo_of, arrays["uv"][i], arrays["normals"][i],
                        arrays["region"][i], light_of.lighting[row])
            for i, row in enumerate(rows)])
    return arrays


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random small similarity warps and colour changes of the encoder's input. The
    random numbers come from the (CPU) generator; the work runs where the images are."""
    n = len(images)
    u = torch.rand(n, 6, generator=generator) * 2 - 1
    jitter = torch.rand(n, 3, 1, 1, generator=generator) * 0.1
    angle = u[:, 0] * math.radians(5)
    scale = 1 + u[:, 1] * 0.05
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale * torch.cos(angle)
    theta[:, 0, 1] = -scale * torch.sin(angle)
    theta[:, 1, 0] = scale * torch.sin(angle)
    theta[:, 1, 1] = scale * torch.cos(angle)
    theta[:, :, 2] = u[:, 2:4] * 0.05
    theta, u, jitter = theta.to(images.device), u.to(images.device), jitter.to(images.device)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection",
                           align_corners=False)
    gain = 1 + u[:, 4:5, None, None] * 0.15 + jitter
    offset = u[:, 5:6, None, None] * 0.05
    return (warped * gain + offset).clamp(0, 1)


def _write_preview(path: Path, model: SwapModel, source: dict, target: dict):
    """Rows: source in/out, target in/out, target frame rendered as the source."""
    use_guides = model.config.use_guides
    device = next(model.parameters()).device
    source = {k: v.to(device) for k, v in source.items()}
    target = {k: v.to(device) for k, v in target.items()}
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16,
                                         enabled=device.type == "cuda"):
        n = min(4, len(source["rgb"]), len(target["rgb"]))
        rec_s, _ = model(source["rgb"][:n], source["guides"][:n] if use_guides else None, SOURCE)
        rec_t, _ = model(target["rgb"][:n], target["guides"][:n] if use_guides else None, TARGET)
        swap, mask = model(target["rgb"][:n], target["guides"][:n] if use_guides else None, SOURCE)
        alpha = torch.sigmoid(mask)
        composite = swap * alpha + target["rgb"][:n] * (1 - alpha)
    columns = [source["rgb"][:n], rec_s, target["rgb"][:n], rec_t, composite]
    grid = torch.cat([torch.cat(list(c.float().cpu()), dim=1) for c in columns], dim=2)
    image = (grid.permute(1, 2, 0).float().numpy() * 255).clip(0, 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), image[..., ::-1])


def train_shot(shot: Path, profile: str = "cpu", minutes: float | None = None,
               steps: int | None = None, batch_size: int = 8, checkpoint_every: int = 200,
               preview_every: int = 200, seed: int = 1, source_frames: str | None = None,
               plate_frames: str | None = None, guides: tuple[str, ...] = GUIDE_NAMES,
               resume: bool = False, progress_mode: str = "bar") -> Path:
    """``facegraft train``: the shot's model of ``profile`` from its source and plate."""
    layout = ShotLayout(shot)
    options = TrainOptions(
        profile=get_profile(profile).name, batch_size=batch_size, steps=steps,
        minutes=minutes, checkpoint_every=checkpoint_every, preview_every=preview_every,
        seed=seed, source_frames=source_frames, plate_frames=plate_frames)
    return train(layout, options, resume=resume, progress_mode=progress_mode, guides=guides)


def model_config(model_dir: Path, options: TrainOptions, resume: bool,
                 guides: tuple[str, ...]) -> SwapConfig:
    """The network to train: the profile's with ``guides``, or the checkpoint's when
    resuming (which must have been trained with the same guides). A damaged checkpoint is
    moved aside (``model_<profile>.damaged``) and training starts again."""
    if resume and (model_dir / CHECKPOINT_SIDECAR).exists() and \
            not checkpoint_is_complete(model_dir):
        _set_aside_damaged(model_dir)
    sidecar_exists = (model_dir / CHECKPOINT_SIDECAR).exists()
    if sidecar_exists and not resume:
        raise FaceGraftError(f"{model_dir}: already holds a trained model; resume it or use "
                             f"another shot folder")
    config = profile(options.profile, guides=tuple(guides))
    if not (resume and sidecar_exists):
        return config
    trained = SwapConfig.from_dict(read_sidecar(model_dir)["config"])
    if trained.guides != config.guides:
        raise FaceGraftError(
            f"{model_dir}: this model was trained with the guides "
            f"{','.join(trained.guides) or 'none'}; resume it with those, or train the other "
            f"guides in another shot folder")
    return trained


def _data_key(layout: ShotLayout, size: int) -> str:
    """What the model learns from: both datasets and textures (their recorded inputs)."""
    keys = []
    for footage in (layout.source, layout.plate):
        try:
            meta = json.loads((footage.dataset(size) / "meta.json").read_text())
        except (OSError, ValueError):
            meta = {}
        keys += [meta.get("inputs_key") if isinstance(meta, dict) else None,
                 texture_key(footage.texture)]
    return hashlib.sha256(json.dumps(keys).encode()).hexdigest()


def _set_aside_if_other_data(model_dir: Path, data_key: str) -> None:
    """A model trained on other data is not resumed (its frames would mix what it learnt
    from both): it is moved to ``model_<profile>.previous`` and training starts again."""
    if not checkpoint_is_complete(model_dir):
        return
    trained_on = read_sidecar(model_dir).get("options", {}).get("data_key")
    if trained_on is None or trained_on == data_key:
        return
    aside = model_dir.with_name(model_dir.name + ".previous")
    shutil.rmtree(aside, ignore_errors=True)
    os.replace(model_dir, aside)
    print(f"facegraft train: the datasets changed since {model_dir} was trained; it was "
          f"moved to {aside} and training starts again", file=sys.stderr)


def _set_aside_damaged(model_dir: Path) -> None:
    aside = model_dir.with_name(model_dir.name + ".damaged")
    shutil.rmtree(aside, ignore_errors=True)
    os.replace(model_dir, aside)
    print(f"facegraft train: the checkpoint in {model_dir} was damaged; it was moved to "
          f"{aside} and training starts again", file=sys.stderr)


def _open_model(model_dir: Path, options: TrainOptions, config: SwapConfig, resume: bool):
    """The model and optimizer, new or restored from the folder's checkpoint, and the step
    and training time it had reached."""
    torch.manual_seed(options.seed)  # the initial weights; each step seeds its own draws
    model = SwapModel(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=options.learning_rate, betas=(0.5, 0.999))
    step, elapsed = 0, 0.0
    if resume and (model_dir / CHECKPOINT_SIDECAR).exists():
        try:
            sidecar, tensors = load_checkpoint(model_dir)
            restore(model, optimizer, sidecar, tensors)
            step, elapsed = int(sidecar["step"]), float(sidecar.get("elapsed_s", 0.0))
        except FaceGraftError:  # weights changed since they were written
            _set_aside_damaged(model_dir)
            model_dir.mkdir()
    _trim_log(model_dir / "loss.jsonl", step)
    return model, optimizer, step, elapsed


def _trim_log(log: Path, step: int) -> None:
    """Keep the loss log's steps up to the checkpoint's: the steps a killed run logged after
    its last checkpoint are trained again and logged again."""
    if not log.is_file():
        return
    kept = []
    # Undecodable bytes (a damaged log) count as lines cut short.
    for line in log.read_text(errors="replace").splitlines():
        try:
            if int(json.loads(line)["step"]) <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill
    write_bytes_atomic(log, "".join(f"{line}\n" for line in kept).encode())


def _to_device(model: SwapModel, optimizer, device: torch.device) -> None:
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
        for state in optimizer.state.values():
            for key, value in state.items():
                if torch.is_tensor(value):
                    state[key] = value.to(device)


def _training_step(model: SwapModel, batches: tuple, generator: torch.Generator,
                   rng: np.random.Generator, device: torch.device, region_weight: float
                   ) -> tuple[float, dict]:
    """Forward and backward of both identities; returns the mean loss and its parts."""
    parts, loss_total = {}, 0.0
    for identity, batch in zip((SOURCE, TARGET), batches, strict=True):
        inputs, coverage = batch["rgb"], None
        if model.occlusion is not None:  # occluders over the input; the target stays clean
            donors = (batches[1 - identity]["rgb"] * 255).byte().permute(0, 2, 3, 1).numpy()
            occluded, pasted = paste_occluders(batch["rgb"].permute(0, 2, 3, 1).numpy(),
                                               batch["mask"][:, 0].numpy(), rng, donors)
            inputs = torch.from_numpy(occluded).permute(0, 3, 1, 2)
            coverage = torch.from_numpy(pasted).unsqueeze(1).to(device)
        batch = {k: v.to(device) for k, v in batch.items()}
        inputs = inputs.to(device)
        warped = augment(inputs, generator)
        guides = batch["guides"] if model.config.use_guides else None
        if device.type == "cuda":
            warped = warped.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            rgb, mask_logits = model(warped, guides, identity)
            occlusion = (model.occlusion(inputs, batch["mask"]) if coverage is not None
                         else None)
        loss, values = reconstruction_loss(rgb.float(), mask_logits.float(), batch,
                                           region_weight)
        if occlusion is not None:
            values["occlusion"] = occlusion_loss(occlusion.float(), coverage, batch["mask"])
            loss = loss + values["occlusion"]
            values["occlusion"] = values["occlusion"].item()
        loss.backward()
        loss_total += loss.item()
        name = "source" if identity == SOURCE else "target"
        parts.update({f"{k}_{name}": v for k, v in values.items()})
    return loss_total / 2, parts


def _write_config(model_dir: Path, layout: ShotLayout, options: TrainOptions,
                  config: SwapConfig, device: torch.device, source: FootageData,
                  target: FootageData) -> None:
    """config.json: every training option and the network's configuration."""
    record = {"source": str(layout.source.path), "plate": str(layout.plate.path),
              **asdict(options), "config": config.to_dict(), "device": str(device),
              "source_rows": int(len(source.rows)), "plate_rows": int(len(target.rows))}
    (model_dir / "config.json").write_text(json.dumps(record, indent=1))
    (model_dir / "previews").mkdir(exist_ok=True)


def train(layout: ShotLayout, options: TrainOptions, resume: bool = False,
          progress_mode: str = "bar", guides: tuple[str, ...] = GUIDE_NAMES) -> Path:
    if options.steps is None and options.minutes is None:
        raise FaceGraftError("say how long to train: --steps S or --minutes M")
    model_dir = layout.model(options.profile)
    data_key = _data_key(layout, get_profile(options.profile).resolution)
    if resume:
        _set_aside_if_other_data(model_dir, data_key)
    config = model_config(model_dir, options, resume, guides)
    source = FootageData(layout.source, config, options.source_frames)
    target = FootageData(layout.plate, config, options.plate_frames)
    model_dir.mkdir(parents=True, exist_ok=True)  # only once the inputs are known good
    model, optimizer, step, elapsed_before = _open_model(model_dir, options, config, resume)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _to_device(model, optimizer, device)
    _write_config(model_dir, layout, options, config, device, source, target)
    deadline = None if options.minutes is None else options.minutes * 60
    progress = Progress("train", options.steps or int(deadline), progress_mode)
    started = time.perf_counter()
    half = max(1, options.batch_size // 2)
    last_saved, batches = step, None

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - started

    def save() -> None:
        save_checkpoint(model_dir, step, model, optimizer, config.to_dict(),
                        {**asdict(options), "data_key": data_key}, elapsed())

    with open(model_dir / "loss.jsonl", "a") as log:
        while not ((options.steps is not None and step >= options.steps)
                   or (deadline is not None and elapsed() >= deadline)):
            generator = torch.Generator().manual_seed(options.seed * 1_000_003 + step)
            rng = np.random.default_rng(options.seed * 1_000_003 + step)
            batches = tuple(
                data.batch(data.rows[torch.randint(len(data.rows), (half,),
                                                   generator=generator).numpy()])
                for data in (source, target))
            optimizer.zero_grad(set_to_none=True)
            loss, parts = _training_step(model, batches, generator, rng, device,
                                         options.region_weight)
            optimizer.step()
            step += 1
            log.write(json.dumps({"step": step, "loss": loss, **parts,
                                  "seconds": round(elapsed(), 2)}) + "\n")
            log.flush()
            progress.update(step if options.steps else int(elapsed()))
            if step % options.preview_every == 0:
                _write_preview(model_dir / "previews" / f"step_{step:08d}.png", model, *batches)
                _write_preview(layout.preview(options.profile), model, *batches)
            if step % options.checkpoint_every == 0:
                save()
                last_saved = step
        if step != last_saved:
            save()
    if batches is not None:
        _write_preview(layout.preview(options.profile), model, *batches)
    progress.finish(output=str(model_dir), steps=step)
    return model_dir
