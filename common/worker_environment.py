"""The worker's Python environment: installing it (``facegraft worker-install``, run by
Blender's own Python from the add-on's preferences) and checking one
(``facegraft worker-check``, run by the worker Python itself: ``pipeline/worker_check.py``).

The installed environment is a virtual environment in the extension's user folder with the
pinned packages of ``worker_requirements.txt``, from the package index or from a folder of
wheels (``make worker-wheels`` prepares one, for studios without internet). FaceGraft's own
code is not installed into it: the add-on runs the worker with the installed extension on
``PYTHONPATH`` (``addon/worker.py``), so the worker always runs the extension's code.

The environment is built as ``<folder>.partial`` and renamed into place only once its
packages import: an interrupted or failed install leaves the previous environment (or
none) active, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import FaceGraftError
from .progress import Progress
from .stage_folders import replace_folder

REQUIREMENTS_FILE = Path(__file__).resolve().parent.parent / "worker_requirements.txt"
PACKAGE_DIR = Path(__file__).resolve().parent.parent  # FaceGraft's own code
# What the worker imports, by the name pip knows it under.
WORKER_MODULES = {"torch": "torch", "mediapipe": "mediapipe", "numpy": "numpy",
                  "cv2": "opencv-contrib-python", "safetensors": "safetensors"}
INSTALL_ADVICE = ("Install FaceGraft's worker (Preferences > Add-ons > FaceGraft) or choose "
                  "another Python")
# pip's messages that mean the package index could not be reached.
OFFLINE_HINTS = ("Could not find a version", "No matching distribution", "NewConnectionError",
                 "Failed to establish a new connection", "Temporary failure in name resolution",
                 "Network is unreachable")


def environment_python(folder: Path) -> Path:
    """The interpreter of an environment folder."""
    if os.name == "nt":
        return folder / "Scripts" / "python.exe"
    return folder / "bin" / "python"


def requirements() -> list[str]:
    """The pinned requirements, one per entry (comments and blank lines left out)."""
    try:
        lines = REQUIREMENTS_FILE.read_text().splitlines()
    except OSError as exc:
        raise FaceGraftError(f"{REQUIREMENTS_FILE}: missing from this FaceGraft ({exc.strerror})"
                             ) from None
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def install_worker(target: Path, wheels: Path | None = None, index_url: str | None = None,
                   progress_mode: str = "bar") -> Path:
    """``facegraft worker-install``: the worker environment at ``target``, its packages
    from the folder ``wheels`` (nothing downloaded) or the package index (``index_url``:
    another index than pip's configured one). Returns the environment's Python."""
    target = Path(target)
    if wheels is not None and not Path(wheels).is_dir():
        raise FaceGraftError(f"{wheels}: no such folder of wheels")
    partial = target.with_name(target.name + ".partial")
    steps = ["environment", *requirements(), "check"]
    progress = Progress("worker-install", len(steps), progress_mode)
    try:
        shutil.rmtree(partial, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "venv", str(partial)], partial, "create the environment")
        progress.update(1)
        _pip_install(partial, wheels, index_url, progress)
        report = check_python(environment_python(partial))
        progress.update(len(steps))
        replace_folder(partial, target)  # the old environment goes only now
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, FaceGraftError):
            progress.error(str(exc))
        raise
    progress.finish(output=str(environment_python(target)), **report)
    return environment_python(target)


def _pip_install(partial: Path, wheels: Path | None, index_url: str | None,
                 progress: Progress) -> None:
    """pip in the new environment; progress: one step per requirement collected."""
    argv = [str(environment_python(partial)), "-m", "pip", "install", "--no-input",
            "--disable-pip-version-check", "--progress-bar", "off", "-r", str(REQUIREMENTS_FILE)]
    if wheels is not None:
        argv += ["--no-index", "--find-links", str(wheels)]
    elif index_url:
        argv += ["--index-url", index_url]
    names = [r.split("=")[0].split("<")[0].split(">")[0].lower() for r in requirements()]
    collected: set[str] = set()
    lines: list[str] = []
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, stdin=subprocess.DEVNULL)
    try:
        for line in process.stdout:
            lines.append(line.rstrip())
            if line.startswith("Collecting "):
                name = line.split()[1].split("=")[0].split("<")[0].split(">")[0].lower()
                if name in names:
                    collected.add(name)
                    progress.update(1 + len(collected))
        returncode = process.wait()
    except BaseException:
        process.terminate()
        process.wait()
        raise
    if returncode != 0:
        raise FaceGraftError(_pip_failure(lines, wheels))


def _pip_failure(lines: list[str], wheels: Path | None) -> str:
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR:")]
    cause = errors[0] if errors else (lines[-1] if lines else "pip printed nothing")
    if wheels is not None:
        return f"{wheels}: the worker's packages could not be installed from this folder " \
               f"({cause}); prepare it with 'make worker-wheels' or pip download"
    if any(hint in line for line in lines for hint in OFFLINE_HINTS):
        return f"the package index could not be reached ({cause}); connect to the internet " \
               f"or choose a folder of wheels"
    return f"the worker's packages could not be installed ({cause})"


def _run(argv: list[str], where: Path, what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise FaceGraftError(f"{where}: could not {what} ({last})")


def worker_environ(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment to start the worker in: this FaceGraft's code first on PYTHONPATH,
    so the worker runs the installed extension's code, not another copy."""
    env = dict(os.environ if base is None else base)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([str(code_path()), *paths])
    return env


def check_python(python: Path) -> dict:
    """Run ``worker-check`` in ``python`` with this FaceGraft's code; its report, or one
    line saying why that Python cannot be the worker."""
    env = worker_environ()
    try:
        result = subprocess.run([str(python), "-m", "facegraft", "worker-check"],
                                capture_output=True, text=True, env=env, timeout=300,
                                stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FaceGraftError(f"{python}: cannot run ({exc})") from None
    if result.returncode != 0:
        raise FaceGraftError(check_failure(python, result.stderr))
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_failure(python: Path, stderr: str) -> str:
    """Why ``python -m facegraft worker-check`` failed, in one line."""
    errors = [ln for ln in stderr.splitlines() if ln.startswith("facegraft: error: ")]
    if errors:
        return errors[-1].removeprefix("facegraft: error: ")
    missing = re.search(r"No module named '([\w.]+)'", stderr)
    if missing:  # it failed before the check could say so: the same words
        return f"{python}: has no {missing.group(1).split('.')[0]}; {INSTALL_ADVICE}"
    cause = (stderr.strip().splitlines() or ["no output"])[-1]
    return f"{python}: not a FaceGraft worker ({cause})"


def code_path() -> Path:
    """A folder to put on the worker's PYTHONPATH so that ``import facegraft`` finds this
    very code: the parent of the package folder when that folder is named ``facegraft``
    (the installed extension), else a folder holding a link of that name to it (a
    checkout under another name)."""
    if PACKAGE_DIR.name == "facegraft":
        return PACKAGE_DIR.parent
    digest = hashlib.sha256(str(PACKAGE_DIR).encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"facegraft-code-{digest}"
    link = folder / "facegraft"
    if not link.is_symlink() or link.resolve() != PACKAGE_DIR:
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".link-{os.getpid()}"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(PACKAGE_DIR, target_is_directory=True)
        os.replace(temporary, link)
    return folder


def facegraft_version() -> str:
    """This FaceGraft's version, from its manifest."""
    manifest = PACKAGE_DIR / "blender_manifest.toml"
    for line in manifest.read_text().splitlines():
        if line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"')
    return "unknown"
