"""The dataset stage: aligned crops that match the guides, from a video or a folder of
images, fast to read, and clear errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from facegraft.common.crop import apply, for_opencv, invert
from facegraft.common.dataset_file import load_dataset
from facegraft.common.shot_layout import ShotLayout
from facegraft.common.track_file import load_track


@pytest.fixture(scope="module")
def dataset(franck300_shot, franck300_guides, cli):
    result = cli("dataset", "--shot", franck300_shot, "--progress", "none")
    assert result.returncode == 0, result.stderr
    return load_dataset(ShotLayout(franck300_shot).plate.dataset(256))


def test_crops_are_the_aligned_plate(dataset, franck300_shot, franck):
    track = load_track(ShotLayout(franck300_shot).plate.track)
    assert dataset["rgb"].shape == (300, 256, 256, 3) and dataset["rgb"].dtype == np.uint8
    assert np.array_equal(dataset["mask"] > 0, dataset["region"] > 0)
    cap = cv2.VideoCapture(str(franck))
    for row in (0, 150, 299):
        cap.set(cv2.CAP_PROP_POS_FRAMES, row)
        ok, plate = cap.read()
        assert ok
        plate = cv2.cvtColor(plate, cv2.COLOR_BGR2RGB)
        # Warping the crop back onto the plate gives the plate again on the face.
        crop = dataset["crops"][row]
        back = cv2.warpAffine(np.asarray(dataset["rgb"][row]), for_opencv(invert(crop[None])[0]),
                              (plate.shape[1], plate.shape[0]), flags=cv2.INTER_LINEAR)
        face = cv2.warpAffine(np.asarray(dataset["mask"][row]), for_opencv(invert(crop[None])[0]),
                              (plate.shape[1], plate.shape[0]), flags=cv2.INTER_NEAREST) > 0
        face = cv2.erode(face.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        error = np.abs(back.astype(float) - plate.astype(float))[face].mean()
        assert error < 6, error  # two bilinear resamplings of real footage
        # The landmarks fall on the mask at their crop positions.
        points = apply(crop, track.landmarks[row, :468, :2]).astype(int)
        inside = dataset["mask"][row][points[:, 1].clip(0, 255), points[:, 0].clip(0, 255)] > 0
        assert inside.mean() > 0.95


def test_folder_of_images_as_a_shot(single_face, tmp_path, cli):
    frames = tmp_path / "frames"
    frames.mkdir()
    cap = cv2.VideoCapture(str(single_face))
    for index in range(30):
        ok, frame = cap.read()
        assert ok
        cv2.imwrite(str(frames / f"frame_{index:04d}.png"), frame)
    shot = tmp_path / "shot"
    for args in (("track", frames, "--shot", shot, "--progress", "none"),
                 ("build", "--shot", shot),
                 ("guides", "--shot", shot, "--size", "128", "--progress", "none"),
                 ("dataset", "--shot", shot, "--size", "128", "--progress", "none")):
        result = cli(*args)
        assert result.returncode == 0, (args[0], result.stderr)
    data = load_dataset(ShotLayout(shot).plate.dataset(128))
    assert data["rgb"].shape == (30, 128, 128, 3)
    assert (data["mask"].reshape(30, -1) > 0).mean(axis=1).min() > 0.2


def test_bad_inputs(cli, tmp_path, franck300_shot, dataset):
    result = cli("dataset", "--shot", tmp_path)
    assert result.returncode == 1 and "no track file" in result.stderr
    result = cli("dataset", "--shot", franck300_shot, "--size", "320")
    assert result.returncode == 1 and "guides_320" in result.stderr
    assert not ShotLayout(franck300_shot).plate.dataset(320).exists()
    result = cli("dataset", "--shot", franck300_shot, "--size", "200")
    assert result.returncode == 2 and "multiple of 64" in result.stderr
