"""A model folder's checkpoint: the JSON sidecar and the check that it names complete
weights. Readable without torch (``facegraft run`` and the panel check it);
``ml/checkpoint.py`` writes and loads the weights.

Format ``facegraft.checkpoint`` version 1, in ``SHOT/model_<profile>/``:

- ``checkpoint-<step>.safetensors``: the model's tensors under ``model.<name>``, the
  averaged weights that swaps use under ``average.<name>`` (``ml/weight_average.py``;
  absent from checkpoints written before they were kept: swaps then use ``model.``), the
  optimizer's per-parameter state under ``optim.<index>.<key>`` and the torch RNG state
  under ``rng.torch``.
- ``checkpoint.json``: ``format``, ``version``, ``step``, ``config`` (the SwapConfig),
  ``weights`` (the file name above), ``weights_sha256``, ``weights_bytes``, ``optimizer``
  (param_groups hyper-parameters), ``options`` (the training options), ``elapsed_s``.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import FaceGraftError
from .shot_layout import CHECKPOINT_SIDECAR

CHECKPOINT_FORMAT = "facegraft.checkpoint"
CHECKPOINT_VERSION = 1
SAFETENSORS_HEADER_MAX = 100_000_000  # a header longer than this is not one


def read_sidecar(model_dir: Path) -> dict:
    """``checkpoint.json``, refused with one line when it is not a readable checkpoint."""
    path = Path(model_dir) / CHECKPOINT_SIDECAR
    try:
        sidecar = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise FaceGraftError(f"{path}: no checkpoint (run Train first)") from exc
    except (OSError, ValueError) as exc:
        raise FaceGraftError(f"{path}: not a readable checkpoint ({exc}); run Train again "
                             f"in another shot folder or delete the model folder") from exc
    if not isinstance(sidecar, dict) or sidecar.get("format") != CHECKPOINT_FORMAT:
        raise FaceGraftError(f"{path}: not a FaceGraft checkpoint")
    if sidecar.get("version") != CHECKPOINT_VERSION:
        raise FaceGraftError(
            f"{path}: checkpoint format version {sidecar.get('version')} is not supported "
            f"(this FaceGraft reads version {CHECKPOINT_VERSION})")
    for key, kind in (("step", int), ("config", dict), ("weights", str),
                      ("weights_sha256", str)):
        if not isinstance(sidecar.get(key), kind):
            raise FaceGraftError(f"{path}: '{key}' is missing or not a {kind.__name__}; the "
                                 f"checkpoint was edited or damaged")
    return sidecar


def checkpoint_is_complete(model_dir: Path) -> bool:
    """Whether the sidecar is readable and names a weights file of the right size that
    starts with a safetensors header (cheap: the sha256 is checked when loading)."""
    try:
        sidecar = read_sidecar(model_dir)
        weights = Path(model_dir) / sidecar["weights"]
        size = weights.stat().st_size
        with open(weights, "rb") as f:
            header = int.from_bytes(f.read(8), "little")
    except (FaceGraftError, OSError):
        return False
    expected = sidecar.get("weights_bytes")
    return 8 < header + 8 <= size and header < SAFETENSORS_HEADER_MAX and (
        expected is None or expected == size)
