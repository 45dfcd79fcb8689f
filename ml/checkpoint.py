"""Training checkpoints: ``.safetensors`` weights plus a JSON sidecar (the format is in
``common/checkpoint_file.py``). One module writes and loads them.

Saving writes the weights under a new name, then the sidecar (each through a temporary
file and a rename), then deletes the previous weights: at any moment, even after
``kill -9``, ``checkpoint.json`` names a complete weights file. Loading never unpickles:
safetensors and JSON only, and the sha256 is checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from ..common.atomic import atomic_path, write_bytes_atomic
from ..common.checkpoint_file import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, read_sidecar
from ..common.errors import FaceGraftError
from ..common.samples import sha256_of
from ..common.shot_layout import CHECKPOINT_SIDECAR as SIDECAR

AVERAGE_PREFIX = "average."  # the averaged weights (ml/weight_average.py) swaps use


def save_checkpoint(run: Path, step: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None, config: dict, options: dict,
                    elapsed_s: float, average: dict[str, torch.Tensor] | None = None) -> Path:
    run = Path(run)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"{AVERAGE_PREFIX}{k}": v for k, v in (average or {}).items()})
    optimizer_groups = None
    if optimizer is not None:
        state = optimizer.state_dict()
        for index, values in state["state"].items():
            for key, value in values.items():
                tensor = value if torch.is_tensor(value) else torch.tensor(value)
                tensors[f"optim.{index}.{key}"] = tensor.detach().cpu().contiguous()
        optimizer_groups = state["param_groups"]
    tensors["rng.torch"] = torch.get_rng_state()
    weights = run / f"checkpoint-{step:08d}.safetensors"
    # Serialised in memory, written by Python: a full disk is then an OSError with the
    # file's name (safetensors' own writer reports it as a SafetensorError).
    with atomic_path(weights) as tmp:
        tmp.write_bytes(save(tensors))
    try:
        previous = read_sidecar(run)
    except FaceGraftError:  # none yet, or a damaged one this save replaces
        previous = None
    sidecar = {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "step": step,
        "config": config, "weights": weights.name, "weights_sha256": sha256_of(weights),
        "weights_bytes": weights.stat().st_size,
        "optimizer": optimizer_groups, "options": options, "elapsed_s": elapsed_s,
    }
    write_bytes_atomic(run / SIDECAR, json.dumps(sidecar, indent=1).encode())
    if previous and previous["weights"] != weights.name:
        (run / previous["weights"]).unlink(missing_ok=True)
    return weights


def load_checkpoint(run: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The sidecar and the verified tensors of a run's latest checkpoint."""
    sidecar = read_sidecar(run)
    weights = Path(run) / sidecar["weights"]
    if not weights.is_file():
        raise FaceGraftError(f"{weights}: the checkpoint's weights file is missing")
    if sha256_of(weights) != sidecar["weights_sha256"]:
        raise FaceGraftError(f"{weights}: truncated or changed (sha256 differs from the sidecar)")
    try:
        tensors = load_file(str(weights))
    except Exception as exc:  # noqa: BLE001  (safetensors raises its own error types)
        raise FaceGraftError(f"{weights}: not a readable safetensors file ({exc})") from exc
    return sidecar, tensors


def restore(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, sidecar: dict,
            tensors: dict[str, torch.Tensor]) -> None:
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if optimizer is not None and sidecar.get("optimizer") is not None:
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": sidecar["optimizer"]})
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])


def averaged_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The averaged weights a checkpoint's tensors hold (by parameter name); empty for a
    checkpoint written before averages were kept."""
    return {k[len(AVERAGE_PREFIX):]: v for k, v in tensors.items()
            if k.startswith(AVERAGE_PREFIX)}
