"""Farm jobs: the Open Job Description template run for real by ``openjd run`` (every step
and its dependencies, frames equal to ``facegraft run``'s), and the Flamenco job type
compiled under Node against a stand-in for Flamenco's authoring API.

No Blender binary here: the tests' ``blender`` is a stand-in executable that takes
``-b -c facegraft ARGS`` and runs ``python -m facegraft ARGS`` (the same stage table and
dispatch; Blender stages run in the bpy module)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import FAST_RUN_ARGS, REPO
from facegraft.common.errors import FaceGraftError
from facegraft.common.frame_parts import resolve_chunk
from facegraft.common.profiles import get_profile
from facegraft.common.shot_layout import ShotLayout
from facegraft.common.stage_table import build_parser, chunk_spec
from facegraft.pipeline.farm_jobs import (
    FLAMENCO_FILE,
    OPENJD_FILE,
    farm_steps,
    flamenco_job_type,
    openjd_template,
)

FARM = REPO / "farm"
OPENJD = shutil.which("openjd", path=str(Path(sys.executable).parent))
NODE = shutil.which("node")


def _fast_run_option(name: str) -> str:
    return FAST_RUN_ARGS[FAST_RUN_ARGS.index(name) + 1]


@pytest.fixture(scope="module")
def blender_standin(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bin") / "blender"
    path.write_text(f"#!{sys.executable}\n" + """import os, sys
if sys.argv[1:4] != ["-b", "-c", "facegraft"]:
    sys.exit(f"blender stand-in: expected -b -c facegraft, got {sys.argv[1:4]}")
os.execv(sys.executable, [sys.executable, "-m", "facegraft", *sys.argv[4:]])
""")
    path.chmod(0o755)
    return path


def _frames(shot: Path) -> dict[str, np.ndarray]:
    return {p.name: cv2.imread(str(p)) for p in sorted(ShotLayout(shot).final.glob("*.png"))}


def test_committed_farm_files_are_current():
    """farm/ holds what 'facegraft farm-jobs farm' writes from today's stage table."""
    assert json.loads((FARM / OPENJD_FILE).read_text()) == openjd_template()
    assert (FARM / FLAMENCO_FILE).read_text() == flamenco_job_type()


def _fast_run_parameters(shot: Path, plate: Path, source: Path) -> dict:
    plate_start, plate_end = _fast_run_option("--plate-frames").split(":")
    source_start, source_end = _fast_run_option("--source-frames").split(":")
    return {"Shot": str(shot), "Plate": str(plate), "Source": str(source),
            "PlateStart": plate_start, "PlateEnd": plate_end, "SourceStart": source_start,
            "SourceEnd": source_end, "Profile": _fast_run_option("--profile"),
            "TrainMinutes": "30", "TrainSteps": _fast_run_option("--steps"),
            "Frames": f"1-{int(plate_end) - int(plate_start)}", "ChunkSize": "7"}


@pytest.mark.skipif(OPENJD is None, reason="openjd-cli is a dev dependency: 'make test'")
def test_openjd_template_runs_the_shot(fast_run, franck, single_face, blender_standin,
                                       tmp_path):
    shot = tmp_path / "shot"
    parameters = {**_fast_run_parameters(shot, single_face, franck),
                  "Blender": str(blender_standin)}
    argv = [OPENJD, "run", str(FARM / OPENJD_FILE), "--step", "deliver", "--run-dependencies"]
    for key, value in parameters.items():
        argv += ["-p", f"{key}={value}"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    # Every step ran, the plate's in three chunks (7 + 7 + 6 frames), the source's in its
    # four parts (of 60 frames).
    for name in ("track-plate", "track-source-parts", "train", "composite-setup", "deliver"):
        assert f"{name}" in result.stdout
    theirs, ours = _frames(shot), _frames(fast_run.out)
    assert list(theirs) == list(ours) and len(ours) == 20
    for name in ours:
        assert np.array_equal(theirs[name], ours[name]), name
    assert (shot / "final.mp4").is_file() and (shot / "metrics.json").is_file()


def _compile_flamenco(settings: dict, tmp_path: Path) -> dict:
    script = tmp_path / "facegraft.js"
    script.write_text(flamenco_job_type())
    result = subprocess.run([NODE, str(REPO / "tests" / "flamenco_standin.js"), str(script),
                             json.dumps(settings)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.skipif(NODE is None, reason="Node runs Flamenco's job compilers")
def test_flamenco_job_compiles_every_frame_once_in_order(tmp_path):
    settings = {"shot": "/farm/shots/sh010", "plate": "/farm/plates/sh010.mov",
                "source": "/farm/source/actor.mp4", "profile": "gpu", "train_minutes": 20,
                "frames": "1-250", "chunk_size": 40, "source_parts": 3}
    compiled = _compile_flamenco(settings, tmp_path)
    tasks = compiled["tasks"]
    names = [task["name"] for task in tasks]
    assert len(set(names)) == len(names)
    for index, task in enumerate(tasks):  # each task comes after what it waits for
        assert set(task["dependencies"]) <= set(names[:index]), task["name"]
    chunked = [step for step in farm_steps() if step.chunked]
    assert {step.name for step in chunked} == {
        "track-plate-chunks", "guides-plate-chunks", "dataset-plate-chunks", "swap-chunks",
        "merge-chunks", "composite"}
    for step in chunked:  # every frame once per chunked step, each chunk after the same
        chunks = [task for task in tasks if task["name"].startswith(step.name + "-")
                  and task["name"][len(step.name) + 1:][0].isdigit()]
        frames = []
        for task in chunks:
            args = task["commands"][0]["parameters"]["args"]
            flag = "--frames" if step.name == "composite" else "--chunk"
            first, last = (int(x) for x in args[args.index(flag) + 1].split("-"))
            frames += range(first, last + 1)
            assert task["dependencies"] == chunks[0]["dependencies"], task["name"]
        assert sorted(frames) == list(range(1, 251)) and len(chunks) == 7, step.name
        joined = [task for task in tasks if set(task["dependencies"]) >= {
            c["name"] for c in chunks}]
        assert joined, f"nothing waits for every chunk of {step.name}"
    evaluate = tasks[names.index("eval")]
    assert any(name.startswith("composite-1-") for name in evaluate["dependencies"])
    parted = [step for step in farm_steps() if step.parts]
    assert {step.name for step in parted} == {"track-source-parts", "guides-source-parts",
                                              "dataset-source-parts"}
    for step in parted:  # the source's frames in 3 equal parts, then the join
        parts = [task for task in tasks if task["name"].startswith(step.name + "-")]
        chunks = [task["commands"][0]["parameters"]["args"] for task in parts]
        assert [args[args.index("--chunk") + 1] for args in chunks] == ["1/3", "2/3", "3/3"]
        join = tasks[names.index(step.name.removesuffix("-parts"))]
        assert set(join["dependencies"]) == {task["name"] for task in parts}
    parser = build_parser(prog="blender -b -c facegraft")
    for task in tasks:  # real command lines: the stage table's parser takes each one
        command, = task["commands"]
        assert command["type"] == "exec" and command["parameters"]["exe"] == "{blender}"
        args = command["parameters"]["args"]
        assert args[:3] == ["-b", "-c", "facegraft"]
        parsed = parser.parse_args(args[3:])
        assert str(parsed.shot) == settings["shot"]
        assert task["type"] == ("facegraft-gpu" if parsed.stage == "train" else "blender")
    train_args = tasks[names.index("train")]["commands"][0]["parameters"]["args"]
    assert train_args[train_args.index("--minutes") + 1] == "20"
    keys = {setting["key"] for setting in compiled["settings"]}
    assert {"plate", "source", "profile", "train_minutes", "chunk_size", "frames"} <= keys


@pytest.mark.skipif(NODE is None, reason="Node runs Flamenco's job compilers")
def test_flamenco_commands_run_for_real(fast_run, franck, single_face, blender_standin,
                                        tmp_path):
    """The compiled composite tasks, run as a Worker would, on a copy of the fast run with
    its frames removed: they render the same frames."""
    shot = tmp_path / "shot"
    shutil.copytree(fast_run.out, shot, symlinks=True)
    for folder in (ShotLayout(shot).final, ShotLayout(shot).exr):
        shutil.rmtree(folder)
    ShotLayout(shot).render_state.unlink(missing_ok=True)
    (shot / "shot.blend").unlink()
    parameters = _fast_run_parameters(shot, single_face, franck)
    settings = {"shot": str(shot), "plate": str(single_face), "source": str(franck),
                "profile": parameters["Profile"], "train_minutes": 1,
                "frames": parameters["Frames"], "chunk_size": 9}
    tasks = _compile_flamenco(settings, tmp_path)["tasks"]
    for task in tasks:
        if task["name"].startswith("composite"):
            args = task["commands"][0]["parameters"]["args"]
            result = subprocess.run([str(blender_standin), *args], capture_output=True,
                                    text=True, timeout=600)
            assert result.returncode == 0, result.stderr[-2000:]
    theirs, ours = _frames(shot), _frames(fast_run.out)
    assert list(theirs) == list(ours)
    for name in ours:
        assert np.array_equal(theirs[name], ours[name]), name


# The plate's steps a farm splits into chunks, and those between them that they need.
CHUNKED_PLATE_STEPS = ("track-plate", "build-plate", "transfer", "guides-plate",
                       "dataset-plate", "texture-plate", "swap", "merge")


def test_parts_of_a_footage_cover_every_frame_once():
    """--chunk K/N: N parts of a footage's frames, about equal, every frame in exactly one,
    as the scene frames its part folder is named by."""
    for count, parts in ((60, 4), (61, 3), (4800, 7), (5, 5)):
        frames = []
        for index in range(1, parts + 1):
            first, last = resolve_chunk(chunk_spec(f"{index}/{parts}"), 100, count, Path("x"))
            frames += range(first, last + 1)
        assert frames == list(range(101, 101 + count))
    with pytest.raises(FaceGraftError, match="part 1/6 of 2 frames is empty"):
        resolve_chunk(chunk_spec("1/6"), 0, 2, Path("x"))
    for bad in ("0/3", "4/3", "a/b", "1/0"):
        with pytest.raises(argparse.ArgumentTypeError):
            chunk_spec(bad)


def _step_of(task_name: str) -> str:
    """The farm step a compiled task belongs to (a chunk's task: its step's name)."""
    base = task_name.split("-chunks-")[0]
    return base


@pytest.mark.skipif(NODE is None, reason="Node runs Flamenco's job compilers")
def test_chunked_plate_steps_equal_one_pass(fast_run, franck, single_face, blender_standin,
                                           tmp_path):
    """The compiled tasks of the plate's steps, run as Workers would (chunks of 7 frames,
    then the joining task), on a copy of the fast run without those outputs: the track
    within 1e-5 px of the one pass, the guides, dataset and swap arrays and the merged
    frames byte-identical."""
    shot = tmp_path / "shot"
    shutil.copytree(fast_run.out, shot, symlinks=True)
    plate, size = ShotLayout(shot).plate, _fast_run_size()
    for path in (plate.track, plate.guides(size), plate.dataset(size), ShotLayout(shot).swap(
            "tiny"), ShotLayout(shot).merge("tiny")):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in plate.path.glob("guides_*_source_identity"):
        shutil.rmtree(path)
    parameters = _fast_run_parameters(shot, single_face, franck)
    settings = {"shot": str(shot), "plate": str(single_face), "source": str(franck),
                "profile": parameters["Profile"], "train_minutes": 1, "train_steps": 40,
                "plate_start": 0, "plate_end": 20, "source_start": 0, "source_end": 60,
                "frames": parameters["Frames"], "chunk_size": 7}
    ran = {}
    for task in _compile_flamenco(settings, tmp_path)["tasks"]:
        if _step_of(task["name"]) in CHUNKED_PLATE_STEPS:
            args = task["commands"][0]["parameters"]["args"]
            result = subprocess.run([str(blender_standin), *args], capture_output=True,
                                    text=True, timeout=600)
            assert result.returncode == 0, task["name"] + result.stderr[-2000:]
            ran[task["name"]] = args
    assert sum("-chunks-" in name for name in ran) == 5 * 3
    assert not list(shot.rglob("*.parts"))  # each join removed its parts
    _assert_same_plate_outputs(ShotLayout(shot), ShotLayout(fast_run.out), size)
    # A requeued chunk whose work is done is skipped.
    again = subprocess.run([str(blender_standin), *ran["swap-chunks-8-14"]],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and '"skipped": true' in again.stdout, again.stdout


def _fast_run_size() -> int:
    return get_profile(_fast_run_option("--profile")).resolution


def _assert_same_plate_outputs(ours: ShotLayout, one_pass: ShotLayout, size: int) -> None:
    a, b = np.load(ours.plate.track), np.load(one_pass.plate.track)
    for name in ("landmarks", "head_matrix", "blendshapes", "confidence"):
        assert np.nanmax(np.abs(a[name] - b[name])) <= 1e-5, name
    assert np.array_equal(a["present"], b["present"])
    for folder in (lambda s: s.plate.guides(size), lambda s: s.plate.dataset(size),
                   lambda s: s.swap("tiny")):
        for array in sorted(folder(one_pass).glob("*.npy")):
            assert np.array_equal(np.load(folder(ours) / array.name), np.load(array),
                                  equal_nan=array.name == "crops.npy"), array
    merged = sorted(p.relative_to(one_pass.merge("tiny"))
                    for p in one_pass.merge("tiny").rglob("*.png"))
    assert merged == sorted(p.relative_to(ours.merge("tiny"))
                            for p in ours.merge("tiny").rglob("*.png"))
    for name in merged:
        assert (ours.merge("tiny") / name).read_bytes() == \
            (one_pass.merge("tiny") / name).read_bytes(), name


def test_worker_stage_streams_progress_through_the_blender_command(fast_run, tmp_path):
    """``blender -b -c facegraft merge ... --progress json``: the worker's progress lines
    reach stdout while the stage runs, not all at its end; exit status 0."""
    shot = tmp_path / "shot"
    shutil.copytree(fast_run.out, shot, symlinks=True)
    code = ("import sys, bpy\nfrom facegraft.addon import blender_command\n"
            "sys.exit(blender_command.handle_cli(sys.argv[1:]))")
    argv = [sys.executable, "-c", code, "merge", "--shot", str(shot), "--profile", "tiny",
            "--force", "--progress", "json"]
    env = {**os.environ, "FACEGRAFT_WORKER_PYTHON": sys.executable}
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    arrivals = [(time.monotonic(), line) for line in process.stdout]
    ended = time.monotonic()
    assert process.wait(timeout=600) == 0, process.stderr.read()
    updates = [(t, json.loads(line)) for t, line in arrivals if line.startswith("{")]
    progress = [(t, u) for t, u in updates if u.get("event") == "progress"]
    assert len(progress) >= 3, arrivals
    assert progress[0][0] < ended - 0.5, "progress came only at the end"
    assert updates[-1][1].get("event") == "done"
