"""``facegraft worker-check``, run by the worker Python: its report as one JSON line
(Python, torch, MediaPipe, NumPy, OpenCV, safetensors and FaceGraft versions, FaceGraft's
code folder, the device), or one line naming the package it lacks. The add-on's Check
Worker and the installer read the report (``common/worker_environment.check_python``)."""

from __future__ import annotations

import json
import os
import platform
import sys

from ..common.errors import FaceGraftError
from ..common.worker_environment import (
    INSTALL_ADVICE,
    PACKAGE_DIR,
    WORKER_MODULES,
    facegraft_version,
)


def check_worker() -> None:
    """``facegraft worker-check``: print this Python's FaceGraft worker report as one JSON
    line (versions, FaceGraft's code folder, the device), or fail naming what is missing."""
    versions = {}
    for module, package in WORKER_MODULES.items():
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            raise FaceGraftError(f"{sys.executable}: has no {package}; {INSTALL_ADVICE}"
                                 ) from None
    import torch

    device = (f"CUDA: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available()
              else f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(json.dumps({"python": sys.executable, "python_version": platform.python_version(),
                      **versions, "facegraft": facegraft_version(),
                      "facegraft_code": str(PACKAGE_DIR), "device": device}), flush=True)
