"""Shared fixtures: real sample footage (fetched by `make test`) and a CLI runner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from facegraft.common.samples import sample_path

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def franck() -> Path:
    return sample_path("franck.mp4")


@pytest.fixture(scope="session")
def single_face() -> Path:
    return sample_path("single_face.mp4")


@pytest.fixture(scope="session")
def face_noface() -> Path:
    return sample_path("face_noface.mov")


@pytest.fixture(scope="session")
def cli():
    """``cli("track", video, ...)`` runs the command line as a user would."""
    return run_cli


def run_cli(*args, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m facegraft ARGS`` as a user would, capturing its output."""
    return subprocess.run([sys.executable, "-m", "facegraft", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)
