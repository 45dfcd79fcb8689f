"""The swap model on real data with the tiny profile: training, exact resume after
kill -9, swapping, metrics and bad input. (The 15-minute CPU runs are marked slow.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from facegraft.common.errors import FaceGraftError
from facegraft.ml.checkpoint import SIDECAR, load_checkpoint
from facegraft.ml.model import PROFILES, SwapModel
from safetensors.torch import load_file

TINY = PROFILES["tiny"].resolution


def _prepare(cli, shot: Path, size: int) -> Path:
    for args in (("guides", "--shot", shot, "--blend", shot / "scene.blend", "--size", str(size),
                  "--progress", "none"),
                 ("dataset", "--shot", shot, "--size", str(size), "--progress", "none")):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    return shot


@pytest.fixture(scope="module")
def source_shot(franck300_shot, cli):
    return _prepare(cli, franck300_shot, TINY)


@pytest.fixture(scope="module")
def target_shot(single_face, tmp_path_factory, cli):
    shot = tmp_path_factory.mktemp("plate_tiny")
    for args in (("track", single_face, "--shot", shot, "--progress", "none"),
                 ("build", "--shot", shot, "--blend", shot / "scene.blend")):
        assert cli(*args).returncode == 0
    return _prepare(cli, shot, TINY)


def _train_args(source, target, run, steps=12):
    return ["train", "--source", str(source), "--target", str(target), "--run", str(run),
            "--profile", "tiny", "--steps", str(steps), "--checkpoint-every", "4",
            "--preview-every", "4", "--progress", "json"]


@pytest.fixture(scope="module")
def straight_run(source_shot, target_shot, tmp_path_factory, cli):
    run = tmp_path_factory.mktemp("runs") / "straight"
    result = cli(*_train_args(source_shot, target_shot, run))
    assert result.returncode == 0, result.stderr
    return run


def test_training_writes_a_trustworthy_run(straight_run):
    sidecar = json.loads((straight_run / SIDECAR).read_text())
    assert sidecar["step"] == 12 and sidecar["config"]["resolution"] == TINY
    assert list(straight_run.glob("*.safetensors")) == [straight_run / sidecar["weights"]]
    losses = [json.loads(line) for line in (straight_run / "loss.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in losses] == list(range(1, 13))
    assert losses[-1]["loss"] < losses[0]["loss"]
    assert (straight_run / "preview_latest.png").is_file()
    assert len(list((straight_run / "previews").glob("*.png"))) == 3
    config = json.loads((straight_run / "config.json").read_text())
    assert config["profile"] == "tiny" and config["config"]["use_guides"] is True


def test_resume_after_kill_continues_exactly(source_shot, target_shot, straight_run, tmp_path):
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "facegraft",
                             *_train_args(source_shot, target_shot, run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        sidecar = run / SIDECAR
        if sidecar.is_file() and json.loads(sidecar.read_text())["step"] >= 4:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = json.loads((run / SIDECAR).read_text())["step"]
    assert 4 <= killed_at < 12
    load_checkpoint(run)  # whatever moment it died, the sidecar names complete weights
    result = subprocess.run([sys.executable, "-m", "facegraft",
                             *_train_args(source_shot, target_shot, run), "--resume"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads((run / SIDECAR).read_text())["step"] == 12
    resumed = load_file(str(run / json.loads((run / SIDECAR).read_text())["weights"]))
    straight = load_file(str(straight_run / json.loads(
        (straight_run / SIDECAR).read_text())["weights"]))
    for key in (k for k in straight if k.startswith("model.")):
        assert torch.allclose(resumed[key], straight[key], atol=1e-5), key
    steps = [json.loads(line)["step"]
             for line in (run / "loss.jsonl").read_text().splitlines()]
    assert steps[-1] == 12 and sorted(set(steps)) == list(range(1, 13))


def test_swap_and_metrics(straight_run, source_shot, target_shot, cli, tmp_path):
    result = cli("swap", "--run", straight_run, "--target", target_shot, "--progress", "none")
    assert result.returncode == 0, result.stderr
    swap = Path(result.stdout.strip().splitlines()[-1])
    out = tmp_path / "metrics.json"
    result = cli("eval", "--target", target_shot, "--swap", f"tiny={swap}", "--source",
                 source_shot, "--out", out)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(out.read_text())["runs"]["tiny"]
    for key in ("landmark_nme", "jitter_ratio", "identity_distance_to_source",
                "identity_distance_to_target"):
        assert key in metrics
    assert metrics["frames"] == 72 and metrics["landmark_detected_fraction"] > 0.5
    assert 0 <= metrics["landmark_nme"] < 1 and metrics["jitter_ratio"] > 0
    try:
        import dlib  # noqa: F401  (the optional 'identity' extra)
        from facegraft.common.samples import sample_path

        sample_path("dlib_face_recognition_resnet_model_v1.dat")
        identity = True
    except (ImportError, FaceGraftError):
        identity = False
    if identity:
        assert 0 < metrics["identity_distance_to_source"] < 2
        assert 0 < metrics["identity_distance_to_target"] < 2
    else:
        assert metrics["identity_distance_to_source"] is None and metrics["identity_note"]


def test_bad_checkpoints_and_inputs(straight_run, source_shot, target_shot, tmp_path, cli):
    import shutil

    forged = tmp_path / "forged"
    shutil.copytree(straight_run, forged)
    sidecar = json.loads((forged / SIDECAR).read_text())
    sidecar["version"] = 99
    (forged / SIDECAR).write_text(json.dumps(sidecar))
    with pytest.raises(FaceGraftError, match="version 99"):
        load_checkpoint(forged)
    truncated = tmp_path / "truncated"
    shutil.copytree(straight_run, truncated)
    weights = truncated / json.loads((truncated / SIDECAR).read_text())["weights"]
    weights.write_bytes(weights.read_bytes()[:1000])
    result = cli("swap", "--run", truncated, "--target", target_shot)
    assert result.returncode == 1 and "truncated" in result.stderr
    # A model at 64 px and a shot with only 128 px data: a resolution mismatch.
    other = tmp_path / "other"
    other.mkdir()
    (other / "dataset_128").mkdir()
    result = cli("swap", "--run", straight_run, "--target", other)
    assert result.returncode == 1 and "resolution 64" in result.stderr
    result = cli(*_train_args(source_shot, other, tmp_path / "r"))
    assert result.returncode == 1 and "dataset_64" in result.stderr
    # A shot whose frames have no face.
    result = cli(*_train_args(source_shot, target_shot, tmp_path / "r2")[:-2],
                 "--target-frames", "72:72")
    assert result.returncode == 1


def test_model_sizes_and_ablation_switch():
    for name, config in PROFILES.items():
        guided = SwapModel(config)
        plain = SwapModel(type(config)(**{**config.to_dict(), "use_guides": False}))
        x = torch.rand(1, 3, config.resolution, config.resolution)
        if name in ("tiny", "cpu"):
            from facegraft.ml.model import GUIDE_CHANNELS

            g = torch.rand(1, GUIDE_CHANNELS, config.resolution, config.resolution)
            assert guided(x, g, 0)[0].shape == (1, 3, config.resolution, config.resolution)
            assert plain(x, None, 1)[0].shape == (1, 3, config.resolution, config.resolution)
        assert sum(p.numel() for p in plain.parameters()) < sum(
            p.numel() for p in guided.parameters())


@pytest.mark.slow
def test_self_reenactment_cpu_profile_guided_beats_unguided(franck_shot, cli, artifacts):
    """franck.mp4: train on frames 0-3999, swap man A onto his held-out frames 4000-4799,
    15 minutes of CPU training each with and without guides."""
    shot = franck_shot
    size = PROFILES["cpu"].resolution
    if not (shot / "scene.blend").is_file():
        assert cli("build", "--shot", shot, "--blend", shot / "scene.blend").returncode == 0
    _prepare(cli, shot, size)
    minutes = os.environ.get("FACEGRAFT_SELF_REENACTMENT_MINUTES", "15")
    swaps = {}
    for name, extra in (("guided", []), ("unguided", ["--no-guides"])):
        run = artifacts / f"self_reenactment_{name}"
        if run.exists():
            import shutil

            shutil.rmtree(run)
        result = cli("train", "--source", shot, "--target", shot, "--run", run,
                     "--profile", "cpu", "--minutes", minutes, "--source-frames", "0:4000",
                     "--target-frames", "4000:4800", "--progress", "none", *extra,
                     timeout=3600)
        assert result.returncode == 0, result.stderr
        result = cli("swap", "--run", run, "--target", shot, "--frames", "4000:4800",
                     "--progress", "none")
        assert result.returncode == 0, result.stderr
        swaps[name] = Path(result.stdout.strip().splitlines()[-1])
    out = artifacts / "self_reenactment_metrics.json"
    result = cli("eval", "--target", shot, "--self-reenactment", "--out", out,
                 *[arg for name, folder in swaps.items() for arg in ("--swap", f"{name}={folder}")])
    assert result.returncode == 0, result.stderr
    runs = json.loads(out.read_text())["runs"]
    print(json.dumps(runs, indent=1))
    assert runs["guided"]["landmark_nme"] < runs["unguided"]["landmark_nme"]
    assert runs["guided"]["ssim"] > 0.5
