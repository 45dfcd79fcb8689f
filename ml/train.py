"""``facegraft train``: fit the swap model to a source and a target shot.

Each step draws half a batch from each identity's dataset (memory-mapped; no video is
decoded; crops with shut eyes or a wide-open mouth drawn more often, see
``expression_balanced_weights``), warps and colour-jitters the encoder's input (the target
stays put: it must line up with the guides), and reconstructs each identity with its own
decoder. The loss is, inside the face mask, L1 plus 1 - SSIM with the eyes, lips and
mouth weighted higher, plus a binary cross-entropy for the predicted mask.

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
from functools import partial
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..common.atomic import atomic_path, write_bytes_atomic
from ..common.checkpoint_file import checkpoint_is_complete
from ..common.dataset_file import load_dataset
from ..common.errors import FaceGraftError
from ..common.guides_file import REGION_LABELS
from ..common.profiles import GUIDE_NAMES, get_profile
from ..common.progress import Progress
from ..common.shot_layout import CHECKPOINT_SIDECAR, FootageFolder, ShotLayout
from ..common.texture_file import texture_key
from ..pipeline.texture import Texture, load_texture, render_face
from .checkpoint import averaged_tensors, load_checkpoint, read_sidecar, restore, save_checkpoint
from .distributed import Ranks, broadcast_flag, mean_across, ranks_from_environment, wait_for_all
from .distributed import start as start_processes
from .distributed import stop as stop_processes
from .losses import occlusion_loss, reconstruction_loss
from .model import SOURCE, TARGET, SwapConfig, SwapModel, guides_tensor, profile
from .occluders import paste_occluders
from .step_prefetch import StepPrefetch, prefetch_threads
from .weight_average import WeightAverage


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
    average_decay: float = 0.95  # of the averaged weights swaps use (ml/weight_average.py)


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
        self.draw_weights = expression_balanced_weights(self.data["region"], self.rows)

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


SHUT_EYES = 0.5  # eyes' area under half the shot's median: shut or closing
SHUT_EYES_SHARE = 0.2  # of the crops drawn, at least (when the shot has any)
WIDE_MOUTH = 0.004  # the mouth's interior over 0.4 % of the crop: a laugh, a shout
WIDE_MOUTH_SHARE = 0.3  # of the crops drawn, at least (when the shot has any)


def region_areas(region: np.ndarray, rows: np.ndarray, labels: tuple[int, ...],
                 chunk: int = 256) -> np.ndarray:
    """The pixels of each of ``labels`` (N, L) in each of ``rows`` of a dataset's region
    guide (N, R, R), read a chunk at a time (a 512 px dataset's guide is gigabytes)."""
    def counted(part: np.ndarray) -> np.ndarray:
        return np.stack([(part == label).sum(axis=(1, 2)) for label in labels], axis=1)
    return np.concatenate([counted(np.asarray(region[rows[i:i + chunk]]))
                           for i in range(0, len(rows), chunk)]).astype(np.float64)


def drawn_at_least(rare: np.ndarray, share: float) -> np.ndarray:
    """Weights that draw the ``rare`` crops for ``share`` of the draws; even weights when
    there is none, or already that many."""
    found = rare.mean()
    if found == 0 or found >= share:
        return np.ones(len(rare))
    return np.where(rare, share / found, (1 - share) / (1 - found))


def expression_balanced_weights(region: np.ndarray, rows: np.ndarray,
                                chunk: int = 256) -> torch.Tensor:
    """How often each of ``rows`` is drawn: crops whose eyes are shut or closing (the
    mesh's eye openings under SHUT_EYES of the shot's median) make SHUT_EYES_SHARE of the
    draws, and crops with the mouth wide open (its interior over WIDE_MOUTH of the crop)
    WIDE_MOUTH_SHARE. A blink is a few frames in a hundred and a laugh a few in ten: drawn
    as often as the rest, the model learns a calm face and the swap's eyes stay half open
    where the plate's close, its smile narrower than the plate's. The two weights are
    multiplied: exact shares where blinks and laughs are independent (franck.mp4's first
    4,000 frames: 21.6 % and 31.9 %)."""
    eyes, mouth = region_areas(region, rows, (REGION_LABELS["eyes"],
                                              REGION_LABELS["mouth_interior"]), chunk).T
    shut = eyes < SHUT_EYES * max(float(np.median(eyes)), 1.0)
    wide = mouth > WIDE_MOUTH * region.shape[1] * region.shape[2]
    return torch.from_numpy(drawn_at_least(shut, SHUT_EYES_SHARE)
                            * drawn_at_least(wide, WIDE_MOUTH_SHARE))


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


def augment(images: torch.Tensor, generator: torch.Generator, first: int = 0,
            total: int | None = None) -> torch.Tensor:
    """Random small similarity warps and colour changes of the encoder's input. The
    random numbers come from the (CPU) generator, drawn for the ``total`` crops of the whole
    batch of which ``images`` are the ``first``... share (several training processes each
    warp their share the way one process would); the work runs where the images are."""
    n = len(images)
    total = n if total is None else total
    u = (torch.rand(total, 6, generator=generator) * 2 - 1)[first:first + n]
    jitter = (torch.rand(total, 3, 1, 1, generator=generator) * 0.1)[first:first + n]
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
               resume: bool = False, progress_mode: str = "bar") -> Path | None:
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


def _new_model(config: SwapConfig, options: TrainOptions) -> tuple[SwapModel, torch.optim.Adam]:
    """The seed's initial weights (each step seeds its own draws) and a fresh optimizer."""
    torch.manual_seed(options.seed)
    model = SwapModel(config)
    return model, torch.optim.Adam(model.parameters(), lr=options.learning_rate,
                                   betas=(0.5, 0.999))


def _open_model(model_dir: Path, options: TrainOptions, config: SwapConfig, resume: bool,
                ranks: Ranks):
    """The model and optimizer, new or restored from the folder's checkpoint, and the step
    and training time it had reached."""
    model, optimizer = _new_model(config, options)
    step, elapsed, averaged = 0, 0.0, None
    if resume and (model_dir / CHECKPOINT_SIDECAR).exists():
        try:
            sidecar, tensors = load_checkpoint(model_dir)
            restore(model, optimizer, sidecar, tensors)
            step, elapsed = int(sidecar["step"]), float(sidecar.get("elapsed_s", 0.0))
            averaged = averaged_tensors(tensors)
        except FaceGraftError:  # weights changed since they were written
            model, optimizer = _new_model(config, options)  # every process starts again
            if ranks.is_main:
                _set_aside_damaged(model_dir)
                model_dir.mkdir()
    if ranks.is_main:
        _trim_log(model_dir / "loss.jsonl", step)
    wait_for_all(ranks)
    return model, optimizer, step, elapsed, averaged


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


class BothIdentities(nn.Module):
    """A training step's forward: each identity reconstructed by its own decoder and, when
    the model has an occlusion head, that head's view of each occluded input. One forward
    and one backward per step, so DistributedDataParallel can wrap it."""

    def __init__(self, model: SwapModel):
        super().__init__()
        self.model = model

    def forward(self, inputs: list, guides: list, occluded: list, masks: list) -> list:
        out = []
        for identity in (SOURCE, TARGET):
            rgb, mask_logits = self.model(inputs[identity], guides[identity], identity)
            occlusion = (None if occluded[identity] is None else
                         self.model.occlusion(occluded[identity], masks[identity],
                                              guides[identity]))
            out.append((rgb, mask_logits, occlusion))
        return out


def _step_batches(footages: tuple, generator: torch.Generator, half: int, ranks: Ranks
                  ) -> tuple[dict, dict]:
    """This process's share of the step's batch: ``half`` crops of each identity, drawn for
    the whole batch (every process draws the same) and sorted, then split by rank."""
    batches = []
    for data in footages:
        drawn = torch.multinomial(data.draw_weights, half * ranks.world, replacement=True,
                                  generator=generator)
        rows = np.sort(data.rows[drawn.numpy()])
        batches.append(data.batch(rows[ranks.rank * half:(ranks.rank + 1) * half]))
    return tuple(batches)


OCCLUDED_SHARE = 0.75  # of the crops, occluded by a pasted occluder


def _donors(batches: tuple, identity: int, first: int) -> np.ndarray:
    """The crops occluders' textures are cut from: every other crop its own face (skin like
    the face's, as a hand in front of it), the others the other person's crop."""
    own, other = ((batches[i]["rgb"] * 255).byte().permute(0, 2, 3, 1).numpy()
                  for i in (identity, 1 - identity))
    odd = (first + np.arange(len(own))) % 2 == 1
    return np.where(odd[:, None, None, None], own, other)


def _step_inputs(model: SwapModel, batches: tuple, generator: torch.Generator,
                 seeds: tuple[int, int], ranks: Ranks, device: torch.device) -> tuple:
    """The encoder's inputs (occluded, warped), the guides, the occluded crops and the
    occluders' coverage of each identity. ``seeds``: (seed, step)."""
    half = len(batches[0]["rgb"])
    first, total = ranks.rank * half, half * ranks.world
    inputs, guides, occluded, coverages = [], [], [], []
    for identity, batch in zip((SOURCE, TARGET), batches, strict=True):
        crops, coverage = batch["rgb"], None
        if model.occlusion is not None:  # occluders over the input; the target stays clean
            donors = _donors(batches, identity, first)
            rngs = [np.random.default_rng([*seeds, identity, first + i]) for i in range(half)]
            pasted_crops, pasted = paste_occluders(crops.permute(0, 2, 3, 1).numpy(),
                                                   batch["mask"][:, 0].numpy(), rngs, donors,
                                                   chance=OCCLUDED_SHARE)
            crops = torch.from_numpy(pasted_crops).permute(0, 3, 1, 2)
            coverage = torch.from_numpy(pasted).unsqueeze(1).to(device)
        crops = crops.to(device)
        warped = augment(crops, generator, first, total)
        if device.type == "cuda":
            warped = warped.contiguous(memory_format=torch.channels_last)
        inputs.append(warped)
        guides.append(batch["guides"].to(device) if model.config.use_guides else None)
        occluded.append(crops if coverage is not None else None)
        coverages.append(coverage)
    return inputs, guides, occluded, coverages


def _prepared_step(model: SwapModel, footages: tuple, options: TrainOptions, ranks: Ranks,
                   device: torch.device, step: int) -> tuple:
    """Everything of step ``step`` before the network: its crops (on the CPU, for the
    preview), the same on the device, and the encoder's inputs, all drawn from the step's
    own generator (any thread may prepare it, in any order)."""
    generator = torch.Generator().manual_seed(options.seed * 1_000_003 + step)
    batches = _step_batches(footages, generator, max(1, options.batch_size // 2), ranks)
    inputs = _step_inputs(model, batches, generator, (options.seed, step), ranks, device)
    on_device = tuple({k: v.to(device) for k, v in batch.items()} for batch in batches)
    return batches, on_device, inputs


def _training_step(forward: nn.Module, batches: tuple, prepared: tuple, device: torch.device,
                   region_weight: float, ranks: Ranks) -> tuple[float, dict]:
    """Forward and backward of both identities (``batches`` on the device); returns the
    mean loss and its parts, over the whole batch (all processes)."""
    inputs, guides, occluded, coverages = prepared
    masks = [batch["mask"] for batch in batches]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        outputs = forward(inputs, guides, occluded, masks)
    total_of = partial(mean_across, ranks)
    parts, loss_total = {}, 0
    for identity, (rgb, mask_logits, occlusion) in zip((SOURCE, TARGET), outputs, strict=True):
        batch = batches[identity]
        loss, values = reconstruction_loss(rgb.float(), mask_logits.float(), batch,
                                           region_weight, total_of)
        if occlusion is not None:
            occlusion_part = occlusion_loss(occlusion.float(), coverages[identity],
                                            batch["mask"], total_of,
                                            near_occluders_only=identity == TARGET)
            loss = loss + occlusion_part
            values["occlusion"] = occlusion_part.item()
        loss_total = loss_total + loss
        name = "source" if identity == SOURCE else "target"
        parts.update({f"{k}_{name}": v for k, v in values.items()})
    loss_total.backward()
    names = list(parts)
    means = mean_across(ranks, torch.tensor([loss_total.item(), *parts.values()],
                                            dtype=torch.float64, device=device)).tolist()
    return means[0] / 2, dict(zip(names, means[1:], strict=True))


def _write_config(model_dir: Path, layout: ShotLayout, options: TrainOptions,
                  config: SwapConfig, device: torch.device, footages: tuple,
                  ranks: Ranks) -> None:
    """config.json: every training option, the network's configuration, and the batch
    and learning rate as trained (``batch_size`` is each process's)."""
    per_process = 2 * max(1, options.batch_size // 2)
    record = {"source": str(layout.source.path), "plate": str(layout.plate.path),
              **asdict(options), "config": config.to_dict(), "device": str(device),
              "processes": ranks.world, "batch_per_process": per_process,
              "effective_batch_size": per_process * ranks.world,
              "effective_learning_rate": options.learning_rate,
              "source_rows": int(len(footages[0].rows)), "plate_rows": int(len(footages[1].rows))}
    write_bytes_atomic(model_dir / "config.json", json.dumps(record, indent=1).encode())
    (model_dir / "previews").mkdir(exist_ok=True)


def _open_training(layout: ShotLayout, options: TrainOptions, resume: bool,
                   guides: tuple[str, ...], ranks: Ranks) -> tuple:
    """The model folder set up by the first process (a model of other data or a damaged one
    moved aside), then on every process: the footages, the model, its optimizer and the
    step and training time reached."""
    model_dir = layout.model(options.profile)
    data_key = _data_key(layout, get_profile(options.profile).resolution)
    if ranks.is_main:
        if resume:
            _set_aside_if_other_data(model_dir, data_key)
        config = model_config(model_dir, options, resume, guides)
    wait_for_all(ranks)
    if not ranks.is_main:
        config = model_config(model_dir, options, resume, guides)
    footages = (FootageData(layout.source, config, options.source_frames),
                FootageData(layout.plate, config, options.plate_frames))
    if ranks.is_main:
        model_dir.mkdir(parents=True, exist_ok=True)  # only once the inputs are known good
    wait_for_all(ranks)
    model, optimizer, step, elapsed, averaged = _open_model(model_dir, options, config, resume,
                                                            ranks)
    return model_dir, data_key, config, footages, model, optimizer, step, elapsed, averaged


def train(layout: ShotLayout, options: TrainOptions, resume: bool = False,
          progress_mode: str = "bar", guides: tuple[str, ...] = GUIDE_NAMES) -> Path | None:
    """Train on this process, or on every process torchrun started (see ``distributed``).
    Returns the model folder (nothing on the processes other than the first: one line is
    printed per training, not per process)."""
    if options.steps is None and options.minutes is None:
        raise FaceGraftError("say how long to train: --steps S or --minutes M")
    ranks = ranks_from_environment()
    start_processes(ranks)
    try:
        model_dir = _train(layout, options, resume, progress_mode, guides, ranks)
        # The others wait while the first writes its last checkpoint and preview, so no
        # process leaves the group while another may still use it: gloo can abort a
        # process (SIGABRT) that tears its group down under a peer still at work.
        wait_for_all(ranks)
        return model_dir if ranks.is_main else None
    finally:
        stop_processes(ranks)


def _train(layout: ShotLayout, options: TrainOptions, resume: bool, progress_mode: str,
           guides: tuple[str, ...], ranks: Ranks) -> Path:
    (model_dir, data_key, config, footages, model, optimizer, step,
     elapsed_before, averaged) = _open_training(layout, options, resume, guides, ranks)
    device = ranks.device()
    _to_device(model, optimizer, device)
    average = WeightAverage(model, options.average_decay, step, averaged)
    forward = _forward_of(model, ranks, device)
    if ranks.is_main:
        _write_config(model_dir, layout, options, config, device, footages, ranks)
    deadline = None if options.minutes is None else options.minutes * 60
    progress = Progress("train", options.steps or int(deadline),
                        progress_mode if ranks.is_main else "none")
    started = time.perf_counter()
    last_saved, batches = step, None

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - started

    def finished() -> bool:
        return ((options.steps is not None and step >= options.steps)
                or (deadline is not None and elapsed() >= deadline))

    def save() -> None:
        if ranks.is_main:
            save_checkpoint(model_dir, step, model, optimizer, config.to_dict(),
                            {**asdict(options), "data_key": data_key}, elapsed(),
                            average.tensors())

    prepare = partial(_prepared_step, model, footages, options, ranks, device)
    with _loss_log(model_dir, ranks) as log, StepPrefetch(
            prepare, step, prefetch_threads(device, ranks.world)) as prepared:
        while not broadcast_flag(ranks, finished(), device):
            batches, on_device, inputs = prepared.next()
            optimizer.zero_grad(set_to_none=True)
            loss, parts = _training_step(forward, on_device, inputs, device,
                                         options.region_weight, ranks)
            optimizer.step()
            average.update()
            step += 1
            log.write(json.dumps({"step": step, "loss": loss, **parts,
                                  "seconds": round(elapsed(), 2)}) + "\n")
            log.flush()
            progress.update(step if options.steps else int(elapsed()))
            if ranks.is_main and step % options.preview_every == 0:
                _write_previews([model_dir / "previews" / f"step_{step:08d}.png",
                                 layout.preview(options.profile)], average, batches)
            if step % options.checkpoint_every == 0:
                save()
                last_saved = step
        if step != last_saved:
            save()
    if batches is not None and ranks.is_main:
        _write_previews([layout.preview(options.profile)], average, batches)
    progress.finish(output=str(model_dir), steps=step)
    return model_dir


def _forward_of(model: SwapModel, ranks: Ranks, device: torch.device) -> nn.Module:
    """Both identities' forward pass, wrapped for gradients averaged across processes."""
    forward = BothIdentities(model)
    if not ranks.distributed:
        return forward
    return DistributedDataParallel(forward,
                                   device_ids=[device.index] if device.type == "cuda" else None)


def _write_previews(paths: list[Path], average: WeightAverage, batches: tuple) -> None:
    """Previews of the model the swap will use: its averaged weights."""
    with average.applied():
        for path in paths:
            _write_preview(path, average.model, *batches)


def _loss_log(model_dir: Path, ranks: Ranks) -> TextIO:
    """The loss log (appended to), written by the first process only."""
    return open(model_dir / "loss.jsonl", "a") if ranks.is_main else open(os.devnull, "w")
