"""Shared fixtures: real sample footage (fetched by `make test`) and a CLI runner."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

# Blender (the bpy module) must never read or write the real user's configuration: point
# it at a throwaway folder before anything imports bpy.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="facegraft-blender-"))
from facegraft.common.file_checks import exr_is_complete, png_is_complete
from facegraft.common.samples import sample_path
from facegraft.common.shot_layout import ShotLayout

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """out/test-artifacts: pictures the tests leave for a reviewer to look at."""
    folder = REPO / "out" / "test-artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def franck() -> Path:
    return sample_path("franck.mp4")


@pytest.fixture(scope="session")
def single_face() -> Path:
    return sample_path("single_face.mp4")


@pytest.fixture(scope="session")
def carphone() -> Path:
    return sample_path("carphone_pristine.mp4")


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


@pytest.fixture(scope="session")
def franck_shot(franck, tmp_path_factory) -> Path:
    """A shot folder whose plate is all 4,800 frames of franck.mp4, tracked (once)."""
    shot = tmp_path_factory.mktemp("franck")
    result = run_cli("track", franck, "--shot", shot, "--progress", "json")
    assert result.returncode == 0, result.stderr
    return shot


@pytest.fixture(scope="session")
def franck300_shot(franck, tmp_path_factory) -> Path:
    """A shot whose plate is franck.mp4 frames 0..299, tracked and built into
    plate/scene.blend by the command line."""
    shot = tmp_path_factory.mktemp("franck300")
    result = run_cli("track", franck, "--shot", shot, "--end", "300", "--progress", "none")
    assert result.returncode == 0, result.stderr
    result = run_cli("build", "--shot", shot)
    assert result.returncode == 0, result.stderr
    return shot


@pytest.fixture(scope="session")
def franck300_guides(franck300_shot) -> Path:
    """The 256x256 guides of franck300_shot's plate."""
    result = run_cli("guides", "--shot", franck300_shot, "--progress", "none")
    assert result.returncode == 0, result.stderr
    return ShotLayout(franck300_shot).plate.guides(256)


def use_as_source(track: Path, shot: Path) -> Path:
    """Give ``shot`` a source by copying a track made elsewhere (tracking is the slow part
    and a track does not depend on where it lies)."""
    target = ShotLayout(shot).source.track
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(track, target)
    return target


# Blender's extension build tool ships inside the bpy wheel, in its version's folder.
BUILD_TOOL = next((Path(sysconfig.get_paths()["platlib"]) / "bpy").glob(
    "*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))


def build_extension(dist: Path) -> Path:
    """The extension zip, built by Blender's own tool into ``dist``, as 'make extension'."""
    dist.mkdir(parents=True, exist_ok=True)
    built = subprocess.run([sys.executable, str(BUILD_TOOL), "build", "--source-dir", str(REPO),
                            "--output-dir", str(dist)], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    (zip_path,) = dist.glob("facegraft-*.zip")
    return zip_path


@dataclass
class FastRun:
    """A tiny-profile run of every stage on 20 plate frames, killed mid-render and resumed."""

    out: Path
    killed_at: dict[str, tuple[int, int]]  # whole final frames when it was killed: inode, mtime
    resume: subprocess.CompletedProcess
    resume_seconds: float


FAST_RUN_ARGS = ("--profile", "tiny", "--steps", "40", "--plate-frames", "0:20",
                 "--source-frames", "0:60")


def run_args(source: Path, plate: Path, shot: Path) -> list[str]:
    return ["run", "--source", str(source), "--plate", str(plate), "--shot", str(shot),
            *FAST_RUN_ARGS]


def _whole_frames(shot: Path) -> list[Path]:
    """Final PNGs whose frame is whole: the PNG and its EXR layers both complete (a kill
    can fall between the two files, and then the frame is rendered again)."""
    layout = ShotLayout(shot)
    return [png for png in sorted(layout.final.glob("final_*.png"))
            if png_is_complete(png) and exr_is_complete(
                layout.exr_frame(int(png.stem.removeprefix("final_"))))]


@pytest.fixture(scope="session")
def fast_run(franck, single_face, tmp_path_factory) -> FastRun:
    """``facegraft run`` (man A onto man B, tiny profile, plate frames 0-19), SIGKILLed with
    its whole process group once a few final frames are on disk, then run again."""
    out = tmp_path_factory.mktemp("fast_run") / "run"
    argv = [sys.executable, "-m", "facegraft", *run_args(franck, single_face, out)]
    process = subprocess.Popen([*argv, "--progress", "json"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        if len(_whole_frames(out)) >= 5:
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read()
    killed_at = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in _whole_frames(out)}
    started = time.monotonic()
    resume = run_cli(*run_args(franck, single_face, out), "--progress", "bar")
    assert resume.returncode == 0, resume.stderr
    return FastRun(out, killed_at, resume, time.monotonic() - started)
