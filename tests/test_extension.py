"""The extension as a user installs it: built with Blender's own tool, installed into an
isolated user folder, registered, unregistered and re-registered, and driven end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, build_extension


def test_extension_installs_registers_and_runs(tmp_path, single_face, carphone):
    zip_path = build_extension(tmp_path / "dist")

    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender-user"))
    shot = tmp_path / "shot"
    source = tmp_path / "source" / "carphone.mp4"
    source.parent.mkdir()
    source.write_bytes(carphone.read_bytes())
    session = subprocess.run(
        [sys.executable, str(REPO / "tests" / "extension_session.py"), str(zip_path),
         str(single_face), str(shot), str(source)],
        capture_output=True, text=True, env=env, timeout=900,
    )
    lines = [ln for ln in session.stdout.splitlines() if ln.startswith("FINDINGS ")]
    assert session.returncode == 0 and lines, session.stdout[-3000:] + session.stderr[-3000:]
    found = json.loads(lines[-1].removeprefix("FINDINGS "))
    assert found["installed"] and found["panels"]
    assert found["unregistered"] and found["reregistered"] and found["double_register"]
    assert found["missing_worker_result"] == ["CANCELLED"]
    assert found["missing_worker_status"] == "NOT_RUN"  # refused by poll(): nothing ran
    assert "worker Python not found" in found["missing_worker_message"]
    assert found["shot_untouched"]
    assert found["check_worker"] == ["FINISHED"]
    report = found["worker_report"]
    assert report["facegraft"] == "0.1.0" and report["torch"] and report["mediapipe"]
    installed = tmp_path / "blender-user"
    assert Path(report["facegraft_code"]).is_relative_to(installed), report
    assert report["device"].startswith(("CPU", "CUDA"))
    assert found["track_result"] == ["FINISHED"] and found["track_file"]
    assert found["status_after_track"] == ["DONE", "NOT_RUN"]
    assert found["build_result"] == ["FINISHED"]
    assert found["status_after_build"] == ["DONE", "DONE"]
    assert found["status_other_plate"] == "STALE"
    assert found["face_vertices"] == 468 and found["frame_end"] == 72
    assert all(v == ["FINISHED"] for v in found["steps"].values()), found.get("errors")
    assert {"plate", "source", "model_tiny", "swap_tiny", "merge_tiny", "exr", "final.mp4",
            "metrics.json"} <= set(found["outputs"])
    assert {"track.npz", "face_shape.pc2", "scene.blend", "guides_64",
            "guides_64_source_identity", "dataset_64"} <= set(found["plate_outputs"])
    assert set(found["statuses"].values()) == {"DONE"}, found["statuses"]
    # The composite joined the scene's own compositor as a node group.
    assert {"FaceGraft Composite", "FaceGraft EXR Layers"} <= set(found["compositor"])
    # Composite rendered the shot's frames (PNG and EXR) into the shot folder.
    assert len(found["exr_written"]) == 72 and "facegraft_000030.exr" in found["exr_written"]
    # Nothing was written beside the footage.
    assert found["beside_source"] == ["carphone.mp4"]
    # Run All in a fresh scene over the panel's work: every row Done, the result loaded.
    assert found["run_all"] == ["FINISHED"]
    assert {k: v for k, v in found["statuses_after_run_all"].items() if v != "DONE"} == {}
    assert found["run_all_frames"] == 72
    assert found["final_image"] and found["backgrounds"] == ["MOVIE_CLIP", "IMAGE"]
    assert found["cli_merge"] == 0
    assert found["cli_build"] == 0 and found["cli_blend"]
    assert found["cli_bad"] == 1
    # The user folder holds the extension; nothing was written to the real one.
    assert any((tmp_path / "blender-user").rglob("blender_manifest.toml"))
