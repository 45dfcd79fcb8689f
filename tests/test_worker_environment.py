"""``facegraft worker-install`` and ``facegraft worker-check``: the worker environment an
artist installs from Blender's preferences. Bad input fails in one line and leaves no
half-installed environment active. The real install from a folder of wheels, through the
installed extension in Blender, takes about a minute here (about 1 GB installed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, build_extension
from facegraft.common.errors import FaceGraftError
from facegraft.common.worker_environment import (
    REQUIREMENTS_FILE,
    check_python,
    environment_python,
    requirements,
)


def _install(target: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facegraft", "worker-install", "--target",
                           str(target), "--progress", "none", *args], capture_output=True,
                          text=True, env=env, timeout=600)


def _isolated_pip() -> dict:
    """pip without this machine's configured wheel folders and mirrors."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_RETRIES": "0", "PIP_TIMEOUT": "5"}


def _left_behind(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir())


def test_requirements_are_the_projects_pins():
    """One list: the package metadata and the installer read worker_requirements.txt."""
    text = (REPO / "pyproject.toml").read_text()
    assert 'dependencies = { file = ["worker_requirements.txt"] }' in text
    assert requirements()[0] == "torch==2.13.0" and "mediapipe==1.2.3" in requirements()
    assert REQUIREMENTS_FILE.parent == REPO


def test_a_wheel_folder_missing_packages_installs_nothing(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (tmp_path / "worker").mkdir()
    (tmp_path / "worker" / "previous").write_text("the environment that worked")
    result = _install(tmp_path / "worker", "--wheels", str(wheels), env=_isolated_pip())
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"facegraft: error: {wheels}: the worker's packages could not be "
                           f"installed from this folder"), line
    assert "Traceback" not in result.stderr
    assert _left_behind(tmp_path) == ["wheels", "worker"]  # no .partial
    assert (tmp_path / "worker" / "previous").is_file()  # the old one stays active


def test_no_network_says_so(tmp_path):
    result = _install(tmp_path / "worker", "--index-url", "http://127.0.0.1:9/simple",
                      env=_isolated_pip())
    assert result.returncode == 1
    assert "the package index could not be reached" in result.stderr, result.stderr
    assert "choose a folder of wheels" in result.stderr
    assert _left_behind(tmp_path) == []


def test_an_interrupted_install_leaves_the_previous_environment(tmp_path):
    (tmp_path / "worker").mkdir()
    (tmp_path / "worker" / "previous").write_text("the environment that worked")
    process = subprocess.Popen(
        [sys.executable, "-m", "facegraft", "worker-install", "--target",
         str(tmp_path / "worker"), "--index-url", "http://127.0.0.1:9/simple", "--progress",
         "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**_isolated_pip(), "PIP_RETRIES": "5"})
    for line in process.stdout:  # the environment is made: pip is at work
        if json.loads(line).get("done", 0) >= 1:
            break
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)  # as Cancel in the preferences does
    assert process.wait(timeout=60) == 130, process.stderr.read()
    assert _left_behind(tmp_path) == ["worker"]
    assert (tmp_path / "worker" / "previous").is_file()


def test_a_python_without_torch_is_refused_by_check_worker(tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    with pytest.raises(FaceGraftError) as error:
        check_python(environment_python(bare))
    message = str(error.value)  # the first of the worker's packages it lacks
    assert message.startswith(f"{environment_python(bare)}: has no ")
    assert message.split("has no ")[1].split(";")[0] in ("numpy", "torch", "mediapipe")
    assert "Install FaceGraft's worker (Preferences > Add-ons > FaceGraft)" in message


def test_check_worker_reports_versions_and_device():
    report = check_python(Path(sys.executable))
    assert report["facegraft"] == "0.1.0" and report["torch"].startswith("2.13.0")
    assert report["mediapipe"] == "1.2.3" and report["python_version"].startswith("3.11")
    assert Path(report["facegraft_code"]).resolve() == REPO
    assert report["device"].startswith(("CPU", "CUDA"))


def test_install_worker_from_a_wheel_folder_in_blender_then_track(tmp_path, face_noface):
    """The real thing, as an artist in a studio without internet does it: the wheels
    prepared (as 'make worker-wheels' does), the extension installed into a throwaway
    Blender user folder, Install Worker from the wheel folder, Check Worker, then Track
    Plate run by that worker."""
    wheels = tmp_path / "wheels"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
                    "-q", "-r", str(REQUIREMENTS_FILE), "-d", str(wheels)], check=True)
    print(f"wheels downloaded in {time.monotonic() - started:.0f} s")
    zip_path = build_extension(tmp_path / "dist")
    user = tmp_path / "blender-user"
    env = {**_isolated_pip(), "BLENDER_USER_RESOURCES": str(user)}
    env.pop("FACEGRAFT_WORKER_PYTHON", None)
    session = subprocess.run(
        [sys.executable, str(REPO / "tests" / "worker_install_session.py"), str(zip_path),
         str(wheels), str(face_noface), str(tmp_path / "shot")],
        capture_output=True, text=True, env=env, timeout=1800)
    lines = [ln for ln in session.stdout.splitlines() if ln.startswith("FINDINGS ")]
    assert session.returncode == 0 and lines, session.stdout[-3000:] + session.stderr[-3000:]
    found = json.loads(lines[-1].removeprefix("FINDINGS "))
    print({k: found[k] for k in ("install_s", "track_s")})
    assert found["install"] == ["FINISHED"] and found["check"] == ["FINISHED"]
    assert Path(found["installed_in"]).is_relative_to(user)
    assert Path(found["worker_python"]).is_relative_to(Path(found["installed_in"]))
    for report in (found["install_report"], found["check_report"]):
        assert report["torch"].startswith("2.13.0") and report["mediapipe"] == "1.2.3"
        assert Path(report["facegraft_code"]).is_relative_to(user)  # the extension's code
    assert found["ready"] and found["track"] == ["FINISHED"] and found["track_file"]
