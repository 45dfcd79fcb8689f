"""The track-mask stage: a shot's occlusion matte kept as the plate's tracking mask, which
the plate's track then leaves out (the masking itself: tests/test_track.py)."""

from __future__ import annotations

import filecmp
import shutil

from facegraft.common.shot_layout import ShotLayout
from facegraft.common.stage_table import ShotSettings, shot_plan
from facegraft.common.track_file import load_track


def test_the_occlusion_matte_becomes_the_plates_tracking_mask(fast_run, franck, single_face,
                                                              tmp_path, cli):
    shot = tmp_path / "shot"
    shutil.copytree(fast_run.out, shot, symlinks=True)
    layout = ShotLayout(shot)
    mask = layout.plate.track_mask
    settings = ShotSettings(plate=single_face, source=franck, profile="tiny")
    unmasked = next(s for s in shot_plan(shot, settings) if s.name == "track plate")
    result = cli("track-mask", "--shot", shot, "--profile", "tiny")
    assert result.returncode == 0, result.stderr
    matte = layout.merge("tiny") / "occlusion"
    assert sorted(p.name for p in mask.iterdir()) == sorted(p.name for p in matte.iterdir())
    assert all(filecmp.cmp(p, mask / p.name, shallow=False) for p in matte.iterdir())
    # 'facegraft run' tracks the plate again with it (its step reads the mask)...
    masked = next(s for s in shot_plan(shot, settings) if s.name == "track plate")
    assert masked.reads == (*unmasked.reads, mask)
    # ...and so does the track stage however it is run.
    result = cli("track", single_face, "--shot", shot, "--end", 20, "--progress", "none")
    assert result.returncode == 0, result.stderr
    assert load_track(layout.plate.track).meta["mask"] == str(mask.resolve())
    # A mask already there is never replaced unless asked.
    painted = next(mask.iterdir())
    painted.write_bytes(b"an artist's own mask")
    result = cli("track-mask", "--shot", shot, "--profile", "tiny")
    assert result.returncode == 1 and "use --force" in result.stderr.strip().splitlines()[-1]
    assert painted.read_bytes() == b"an artist's own mask"
    result = cli("track-mask", "--shot", shot, "--profile", "tiny", "--force")
    assert result.returncode == 0 and filecmp.cmp(painted, matte / painted.name, shallow=False)


def test_no_merge_no_mask(tmp_path, cli):
    result = cli("track-mask", "--shot", tmp_path / "shot", "--profile", "tiny")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and lines == [lines[-1]], result.stderr
    assert "no complete merge" in lines[-1] and "merge_tiny" in lines[-1]
    assert not (tmp_path / "shot").exists()
