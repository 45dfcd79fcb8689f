"""``facegraft run``: every stage from footage to the final shot, incremental, resumable,
and careful with the user's files."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import FAST_RUN_ARGS, run_args, run_cli
from facegraft.common.shot_layout import ShotLayout
from facegraft.common.stage_table import ShotSettings, shot_plan

STAGES = tuple(step.name for step in shot_plan(Path("shot"), ShotSettings(Path("p"), Path("s"))))


def _plate_frames(video, count):
    capture = cv2.VideoCapture(str(video))
    frames = []
    for _ in range(count):
        ok, frame = capture.read()
        assert ok
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    return frames


def test_fast_tier_every_stage_on_20_frames(fast_run, single_face, artifacts):
    out = fast_run.out
    finals = sorted((out / "final").glob("final_*.png"))
    assert [p.name for p in finals] == [f"final_{f:06d}.png" for f in range(1, 21)]
    assert len(list((out / "exr").glob("facegraft_*.exr"))) == 20
    movie = cv2.VideoCapture(str(out / "final.mp4"))
    assert int(movie.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] == 4 * 192
    shutil.copyfile(out / "contact_sheet.png", artifacts / "fast_run_contact_sheet.png")
    metrics = json.loads((out / "metrics.json").read_text())
    print(json.dumps(metrics["final_vs_plate"]), metrics["speed"])
    # Inside the matte the face was replaced; outside, only codec error (Blender and
    # OpenCV decode the plate's H.264 a level or two apart).
    compare = metrics["final_vs_plate"]
    assert compare["inside_matte_mean_abs"] > 8
    assert compare["outside_matte_mean_abs"] < 2.5
    assert compare["outside_matte_p99_9_abs"] <= 6
    for key in ("identity", "expression", "jitter", "timings_s", "speed"):
        assert key in metrics
    assert set(STAGES[:-1]) <= set(metrics["timings_s"])
    assert "sharpness_ratio" in metrics and "recognised" in metrics["identity"]
    assert metrics["speed"]["merge_fps"] > 0
    # The same figure from the pixels, independently of deliver's own bookkeeping.
    plate = _plate_frames(single_face, 20)
    matte = cv2.imread(str(ShotLayout(out).merge("tiny") / "matte" / "matte_000010.png"),
                       cv2.IMREAD_GRAYSCALE)
    final = cv2.cvtColor(cv2.imread(str(finals[9])), cv2.COLOR_BGR2RGB)
    difference = np.abs(final.astype(int) - plate[9]).max(axis=2)
    assert difference[matte == 0].mean() < 2.5 and difference[matte > 200].mean() > 8


def test_killed_run_resumes_where_it_stopped(fast_run):
    lines = fast_run.resume.stderr.splitlines()
    for stage in STAGES[:STAGES.index("composite")]:  # finished before the render: skipped
        assert any(line.endswith(f"] {stage}: up to date") for line in lines), stage
    assert any(line.endswith("] composite") for line in lines)
    # Frames rendered before the kill were kept, not rendered again.
    final = fast_run.out / "final"
    assert len(fast_run.killed_at) >= 5
    for name, (inode, mtime) in fast_run.killed_at.items():
        if name.startswith("final_"):
            stat = (final / name).stat()
            assert (stat.st_ino, stat.st_mtime_ns) == (inode, mtime), name
    assert not list(fast_run.out.rglob("*.partial*"))


def test_rerun_with_nothing_changed_skips_every_stage(fast_run, franck, single_face):
    outputs = [*(fast_run.out / "final").iterdir(), fast_run.out / "metrics.json",
               fast_run.out / "final.mp4", fast_run.out / "shot.blend"]
    before = {p: p.stat().st_mtime_ns for p in outputs}
    started = time.monotonic()
    result = run_cli(*run_args(franck, single_face, fast_run.out))
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    print(f"rerun: {seconds:.1f} s")
    for stage in STAGES:
        assert f"] {stage}: up to date" in result.stderr, stage
    assert before == {p: p.stat().st_mtime_ns for p in outputs}
    assert seconds < 30


def test_source_and_target_swapped_on_a_rerun(fast_run, franck, single_face):
    state = (fast_run.out / "pipeline.json").read_bytes()
    result = run_cli(*run_args(single_face, franck, fast_run.out))
    assert result.returncode == 1
    assert "swapped" in result.stderr and str(fast_run.out) in result.stderr
    assert (fast_run.out / "pipeline.json").read_bytes() == state


def test_source_and_target_swapped_in_a_new_run(franck, single_face, tmp_path):
    # man B's 72 frames as the source, man A's long clip as the plate: no identity to learn.
    out = tmp_path / "run"
    result = run_cli("run", "--source", single_face, "--plate", franck, "--shot", out,
                     "--plate-frames", "0:200", "--profile", "tiny", "--steps", "5")
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("facegraft: error: ") and "swapped" in error
    assert str(single_face) in error
    assert not ShotLayout(out).model("tiny").exists()


def test_output_inside_the_source_footage_folder_is_refused(single_face, franck, tmp_path):
    footage = tmp_path / "footage"
    footage.mkdir()
    source = footage / "franck.mp4"
    shutil.copyfile(franck, source)
    result = run_cli("run", "--source", source, "--plate", single_face, "--shot",
                     footage / "facegraft_run", *FAST_RUN_ARGS)
    assert result.returncode == 1
    assert "inside the source footage's folder" in result.stderr
    assert [p.name for p in footage.iterdir()] == ["franck.mp4"]


def test_an_unrelated_output_folder_is_not_touched(single_face, franck, tmp_path):
    out = tmp_path / "someone_elses"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = run_cli(*run_args(franck, single_face, out))
    assert result.returncode == 1 and "not a FaceGraft shot" in result.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_a_disk_that_fills_up(franck, single_face, tmp_path):
    """A file size limit (what a full disk looks like to a writer): a clear error naming
    the file, and nothing half-written left behind."""
    out = tmp_path / "run"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    argv = [sys.executable, "-m", "facegraft", *run_args(franck, single_face, out)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, preexec_fn=limit)
    assert result.returncode == 1, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    print(error)
    assert error.startswith("facegraft: error: ") and "too large" in error.lower()
    assert str(out) in error
    leftovers = [p for p in out.rglob("*") if ".partial" in p.name]
    assert not leftovers, leftovers
    assert os.path.getsize(franck) > 0 and os.path.getsize(single_face) > 0


def test_an_artists_edit_of_the_shot_blend_is_rendered_and_kept(fast_run, franck, single_face,
                                                                tmp_path):
    """On a copy of the fast run (the other tests' run stays FaceGraft's own)."""
    import bpy

    shot = tmp_path / "shot"
    shutil.copytree(fast_run.out, shot, symlinks=True)
    blend = shot / "shot.blend"
    bpy.ops.wm.open_mainfile(filepath=str(blend), load_ui=False)
    # The artist turns the face layer off in FaceGraft's compositor group and saves.
    bpy.data.node_groups["FaceGraft Composite"].nodes["Face Over Plate"].inputs["Factor"] \
        .default_value = 0.0
    bpy.ops.wm.save_mainfile()
    edited = blend.read_bytes()
    result = run_cli(*run_args(franck, single_face, shot))
    assert result.returncode == 0, result.stderr
    assert "] composite: up to date" not in result.stderr
    assert blend.read_bytes() == edited  # rendered, not replaced
    metrics = json.loads((shot / "metrics.json").read_text())
    assert metrics["final_vs_plate"]["inside_matte_mean_abs"] < 2.5  # the edit shows
    state = json.loads((shot / "final" / "render.json").read_text())
    assert state["blend_origin"] == "edited"


@pytest.mark.slow
def test_demo_end_to_end_cpu_profile(franck, single_face, tmp_path, artifacts):
    """The demo: man A onto man B's whole plate, cpu profile, as `make demo` runs it."""
    out = tmp_path / "demo"
    result = run_cli("run", "--source", franck, "--plate", single_face, "--shot", out,
                     "--profile", "cpu", "--minutes", "11", timeout=3600)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    print(json.dumps(metrics, indent=1))
    shutil.copyfile(out / "contact_sheet.png", artifacts / "demo_contact_sheet.png")
    compare = metrics["final_vs_plate"]
    assert compare["inside_matte_mean_abs"] > 8 and compare["outside_matte_mean_abs"] < 2.5
    assert metrics["expression"]["landmark_nme"] < 0.08
    assert metrics["jitter"]["jitter_ratio"] is not None
    identity = metrics["identity"]
    assert identity["distance_to_source"] is not None, identity
    assert identity["distance_to_source"] < identity["distance_to_target"]
