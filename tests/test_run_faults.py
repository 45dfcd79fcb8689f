"""``facegraft run`` after damage: each output of each step of a finished shot, and its
state files, deleted, cut short, emptied or overwritten with garbage, then the same run
again. It either repairs the shot (final frames equal to the clean run's) or stops with
one line naming the file; never a traceback. And kill -9 during a long step followed by a
run with changed inputs: the delivered frames are all of the new run, never a mix.

The fast tier damages each step's outputs once (the kinds of damage taken in turn); the
slow tier damages every output every way."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_args, run_cli
from facegraft.common.shot_layout import ShotLayout
from facegraft.common.stage_table import ShotSettings, shot_plan

DAMAGES = ("delete", "truncate", "empty", "garbage")


def _target_file(path: Path) -> Path:
    """The file to damage for an output: itself, or the largest file in its folder."""
    if path.is_file():
        return path
    files = [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
    return max(files, key=lambda p: p.stat().st_size)


def damage(path: Path, kind: str) -> None:
    if kind == "delete":
        path.unlink()
    elif kind == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(os.urandom(max(64, min(path.stat().st_size, 4096))))


def _targets(shot: Path) -> list[tuple[str, Path]]:
    """(label, file) for every output of every step of the fast run, and the state files."""
    layout = ShotLayout(shot)
    plan = shot_plan(shot, ShotSettings(Path("plate"), Path("source"), profile="tiny"))
    out = []
    for step in plan:
        for output in step.outputs:
            if output.exists():
                out.append((f"{step.name}:{output.name}", output))
    out += [("state:pipeline.json", layout.pipeline_state),
            ("state:render.json", layout.render_state),
            ("state:loss.jsonl", layout.model("tiny") / "loss.jsonl")]
    return out


def _labels() -> list[str]:
    """Each step of the plan (its outputs resolve in each test's copy) and the state files."""
    plan = shot_plan(Path("shot"), ShotSettings(Path("plate"), Path("source")))
    return [step.name for step in plan] + ["state:pipeline.json", "state:render.json",
                                           "state:loss.jsonl"]


def _cases(fast: bool) -> list[tuple[str, str]]:
    """Fast: each output once, the kinds of damage in turn; slow: the other three kinds."""
    cases = []
    for index, label in enumerate(_labels()):
        turn = DAMAGES[index % len(DAMAGES)]
        cases += [(label, kind) for kind in DAMAGES if (kind == turn) == fast]
    return cases


def _frames(shot: Path) -> list[np.ndarray]:
    return [cv2.imread(str(p)) for p in sorted(ShotLayout(shot).final.glob("final_*.png"))]


def _check_run_after(fast_run, franck, single_face, tmp_path, label: str, kind: str) -> str:
    shot = tmp_path / "shot"
    shutil.copytree(fast_run.out, shot, symlinks=True)
    targets = [(name, path) for name, path in _targets(shot)
               if name == label or name.startswith(label + ":")]
    if not targets:
        pytest.skip(f"{label}: not an output of this shot")
    damaged = _target_file(targets[0][1])
    damage(damaged, kind)
    result = run_cli(*run_args(franck, single_face, shot), "--progress", "none")
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    if result.returncode == 0:
        clean = _frames(fast_run.out)
        repaired = _frames(shot)
        assert len(repaired) == len(clean)
        for a, b in zip(repaired, clean, strict=True):
            assert np.array_equal(a, b), f"{damaged}: the repaired shot differs"
        return "repaired"
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.startswith("facegraft:")]
    assert result.returncode == 1 and lines[-1].startswith("facegraft: error: "), result.stderr
    assert str(shot) in lines[-1], lines[-1]
    return "refused"


@pytest.mark.parametrize("label, kind", _cases(fast=True))
def test_a_damaged_output_is_repaired_or_named(fast_run, franck, single_face, tmp_path,
                                               label, kind):
    print(label, kind, _check_run_after(fast_run, franck, single_face, tmp_path, label, kind))


@pytest.mark.slow
@pytest.mark.parametrize("label, kind", _cases(fast=False))
def test_every_damage_is_repaired_or_named(fast_run, franck, single_face, tmp_path, label,
                                           kind):
    print(label, kind, _check_run_after(fast_run, franck, single_face, tmp_path, label, kind))


def _kill_during(argv: list[str], shot: Path, ready) -> None:
    """Start the run, SIGKILL its whole process group once ``ready(shot)`` holds."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        if ready(shot):
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"


def _rendering_new_frames(shot: Path) -> bool:
    """The earlier frames are set aside and the new render has written a few."""
    return (ShotLayout(shot).root / ".final.replaced").exists() and \
        len(list(ShotLayout(shot).final.glob("final_*.png"))) >= 3


def test_a_run_killed_mid_render_with_new_inputs_never_mixes(fast_run, franck, single_face,
                                                             tmp_path):
    """A finished shot rerun with another colour match and killed while rendering: the next
    run delivers only frames of the new grade, equal to a clean run of it."""
    shot = tmp_path / "shot"
    shutil.copytree(fast_run.out, shot, symlinks=True)
    argv = [sys.executable, "-m", "facegraft", *run_args(franck, single_face, shot),
            "--color", "hist", "--progress", "none"]
    _kill_during(argv, shot, _rendering_new_frames)
    result = run_cli(*argv[3:])
    assert result.returncode == 0, result.stderr
    clean = tmp_path / "clean"
    result = run_cli(*run_args(franck, single_face, clean), "--color", "hist",
                     "--progress", "none")
    assert result.returncode == 0, result.stderr
    for a, b in zip(_frames(shot), _frames(clean), strict=True):
        assert np.array_equal(a, b)
    assert not list(shot.glob(".*.replaced"))


# (the step to kill the run in, the changed options of the run killed and of the rerun)
KILLED_STEPS = {
    "guides plate": ("--plate-frames", "2:20"),
    "train": ("--steps", "60"),
    "merge": ("--color", "hist"),
}


def _changed(args: list[str], option: str, value: str) -> list[str]:
    out = list(args)
    if option not in out:
        return [*out, option, value]
    out[out.index(option) + 1] = value
    return out


@pytest.mark.slow
@pytest.mark.parametrize("step", list(KILLED_STEPS))
def test_a_run_killed_in_a_long_step_with_new_inputs_never_mixes(step, fast_run, franck,
                                                                 single_face, tmp_path):
    """kill -9 while the step runs with changed inputs, then the same run again: its frames
    equal a clean run of the new inputs, frame by frame."""
    option, value = KILLED_STEPS[step]
    shot, clean = tmp_path / "shot", tmp_path / "clean"
    shutil.copytree(fast_run.out, shot, symlinks=True)
    argv = [sys.executable, "-m", "facegraft",
            *_changed(run_args(franck, single_face, shot), option, value), "--progress", "json"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, start_new_session=True)
    for line in process.stdout:
        if f'"step": "{step}"' in line:
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.wait()
    assert process.returncode == -signal.SIGKILL, f"the run ended before {step} ran"
    result = run_cli(*argv[3:])
    assert result.returncode == 0, result.stderr
    result = run_cli(*_changed(run_args(franck, single_face, clean), option, value),
                     "--progress", "none")
    assert result.returncode == 0, result.stderr
    ours, theirs = _frames(shot), _frames(clean)
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs, strict=True):
        assert np.array_equal(a, b)


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 200 MB tmpfs of its own (root only), unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is a small tmpfs, and mounting one needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mount refused a tmpfs: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path, leave: int) -> None:
    """Fill the disk but ``leave`` bytes."""
    stat = os.statvfs(disk)
    with open(disk / "filler", "wb") as filler:
        filler.truncate(0)
        remaining = stat.f_bavail * stat.f_frsize - leave
        block = b"\0" * (1 << 20)
        while remaining > 0:
            remaining -= filler.write(block[:min(len(block), remaining)])


# Each stage on a full disk: what it must write again (removed first) and its command.
FULL_DISK = {
    "guides": (("plate/guides_64", "plate/guides_64_source_identity"),
               ("guides", "--role", "plate", "--size", "tiny")),
    "train": ((), ("train", "--profile", "tiny", "--steps", "60", "--resume",
                   "--checkpoint-every", "5")),
    "merge": (("merge_tiny",), ("merge", "--profile", "tiny", "--force")),
    "composite": (("final/final_*.png", "exr"), ("composite", "--profile", "tiny")),
}


@pytest.mark.parametrize("stage", list(FULL_DISK))
def test_a_full_disk_says_so_and_keeps_the_good_state(stage, fast_run, small_disk):
    shot = small_disk / "shot"
    shutil.copytree(fast_run.out, shot, symlinks=True)
    removed, args = FULL_DISK[stage]
    for pattern in removed:
        for path in shot.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    before = {p: p.read_bytes() for p in (shot / "model_tiny").glob("checkpoint*")}
    _fill(small_disk, leave=64 * 1024)
    result = run_cli(args[0], "--shot", shot, *args[1:], "--progress", "none")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[-1].startswith("facegraft: error: ") and "disk full" in lines[-1], lines[-1]
    assert str(shot) in lines[-1]
    leftovers = [p for p in shot.rglob("*") if ".partial" in p.name or p.name.startswith(".tmp")]
    assert not leftovers, leftovers
    for path, data in before.items():  # the last good checkpoint is untouched
        assert path.read_bytes() == data, path
    (small_disk / "filler").unlink()
    result = run_cli(args[0], "--shot", shot, *args[1:], "--progress", "none")
    assert result.returncode == 0, result.stderr  # with room again, the stage completes
