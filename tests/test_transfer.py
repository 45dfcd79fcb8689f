"""Geometry transfer: the plate's face mesh takes the source's face shape, keeps the
plate's expression, and guides follow an artist's sculpt of the shape key."""

from __future__ import annotations

import shutil

import bpy  # noqa: E402
import numpy as np
import pytest
from conftest import use_as_source
from facegraft.addon.blend_file import save_blend_atomic  # noqa: E402
from facegraft.addon.build import FACE_NAME  # noqa: E402
from facegraft.addon.transfer import (  # noqa: E402
    mirror_vertices,
    neutral_shape_cm,
    rigid_align,
    source_shape_on_plate,
    symmetric_shape,
    transfer_blend,
)
from facegraft.common.errors import FaceGraftError
from facegraft.common.guides_file import load_guides
from facegraft.common.head_pose import neutral_shape
from facegraft.common.shot_layout import SOURCE_IDENTITY_KEY as SHAPE_KEY
from facegraft.common.shot_layout import ShotLayout
from facegraft.common.track_file import load_track, save_track


@pytest.fixture(scope="module")
def plate_shot(single_face, franck_shot, tmp_path_factory, cli):
    """Man B's plate (single_face.mp4) with man A (all of franck.mp4) as the source."""
    shot = tmp_path_factory.mktemp("plate")
    for args in (("track", single_face, "--shot", shot, "--progress", "none"),
                 ("build", "--shot", shot)):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    use_as_source(ShotLayout(franck_shot).plate.track, shot)
    return shot


def _rms(a, b):
    return float(np.sqrt(((rigid_align(a, b) - b) ** 2).sum(axis=1).mean()))


def _lopsided(shape):
    """cm rms between a face shape and its own mirror image."""
    return _rms(shape[mirror_vertices()] * np.array([-1.0, 1.0, 1.0]), shape)


def _evaluated_shapes(frames):
    scene = bpy.context.scene
    face = bpy.data.objects[FACE_NAME]
    out = []
    for frame in frames:
        scene.frame_set(frame)
        evaluated = face.evaluated_get(bpy.context.evaluated_depsgraph_get())
        co = np.empty(len(evaluated.data.vertices) * 3, np.float32)
        evaluated.data.vertices.foreach_get("co", co)
        out.append(co.reshape(-1, 3) * 100)
    return np.array(out)


def test_a_performer_who_never_closes_his_mouth_gets_a_closed_neutral(plate_shot,
                                                                      monkeypatch):
    """Man C talks through all of carphone_pristine.mp4 and on his small face the
    blendshapes miss his parted lips: his calmest frames' median has the mouth open, and
    the swap opened its mouth that much less than his. Man B's frames with his lips apart
    stand for such a talker: the neutral of those alone closes along his own mouth's
    motion, towards the neutral of all his frames."""
    import facegraft.common.head_pose as head_pose
    from facegraft.common.face_regions import LIPS_INNER, LIPS_OUTER, mouth_openness

    plate = load_track(ShotLayout(plate_shot).plate.track)
    metric, names = plate.metric_landmarks_raw[:, :468], plate.meta["blendshape_names"]
    true = neutral_shape(metric, plate.blendshapes_raw, names, plate.present)
    talking = plate.present & (mouth_openness(metric) > 0.05)
    assert talking.sum() > 30 and mouth_openness(true) < head_pose.LIPS_CLOSED
    closed = neutral_shape(metric, plate.blendshapes_raw, names, talking)
    monkeypatch.setattr(head_pose, "LIPS_CLOSED", 1.0)  # the calm frames' median as it is
    parted = neutral_shape(metric, plate.blendshapes_raw, names, talking)
    lips = list(LIPS_INNER + LIPS_OUTER)

    def lips_off(shape: np.ndarray) -> float:  # cm
        return float(np.sqrt(((shape[lips] - true[lips]) ** 2).sum(axis=1).mean()))

    print(f"openness {mouth_openness(parted):.3f} -> {mouth_openness(closed):.3f}, lips "
          f"{lips_off(parted):.2f} -> {lips_off(closed):.2f} cm from his neutral")
    assert mouth_openness(parted) > 0.15 and mouth_openness(closed) < 0.05
    assert lips_off(closed) < 0.7 * lips_off(parted)


def test_source_shape_with_plate_expression(plate_shot):
    layout = ShotLayout(plate_shot)
    transfer_blend(plate_shot)
    bpy.ops.wm.open_mainfile(filepath=str(layout.plate.scene))
    plate = load_track(layout.plate.track)
    source = load_track(layout.source.track)
    face = bpy.data.objects[FACE_NAME]
    assert face.data.shape_keys.key_blocks[SHAPE_KEY].value == 1.0
    shapes = _evaluated_shapes(range(1, plate.frame_count + 1))
    names = plate.meta["blendshape_names"]
    transferred = neutral_shape(shapes, plate.blendshapes_raw, names, plate.present)
    # Its symmetric part is the source's (the left-right deviation is the plate's).
    to_source = _rms(symmetric_shape(transferred),
                     symmetric_shape(neutral_shape_cm(source, layout.source.track)))
    to_plate = _rms(symmetric_shape(transferred),
                    symmetric_shape(neutral_shape_cm(plate, layout.plate.track)))
    print(f"transferred neutral's symmetric part: {to_source:.3f} cm from the source's, "
          f"{to_plate:.3f} cm from the plate's own")
    assert to_source < to_plate / 5
    # The mouth still opens and closes with the plate: the inner-lip gap (landmark 13 over
    # 14) of the transferred mesh against the plate's own.
    gap = shapes[:, 13, 1] - shapes[:, 14, 1]
    plate_gap = plate.metric_landmarks[:, 13, 1] - plate.metric_landmarks[:, 14, 1]
    assert np.corrcoef(gap, plate_gap)[0, 1] > 0.99
    assert np.ptp(gap) > 0.5 * np.ptp(plate_gap)
    assert gap.min() > -0.05  # the lips do not cross when the plate's mouth closes
    # The key adds the same offset on every frame, however far the mouth opens: the
    # performance is added linearly (Mesh Cache's INTEGRATE mode threw the inner-lip
    # vertices 26 cm away on wide smiles).
    key = face.data.shape_keys.key_blocks
    delta = np.array([v.co for v in key[SHAPE_KEY].data]) - np.array([v.co for v in key[0].data])
    face.data.shape_keys.key_blocks[SHAPE_KEY].value = 0.0
    without = _evaluated_shapes(range(1, plate.frame_count + 1))
    assert np.abs(shapes - without - delta[None] * 100).max() < 1e-3


def test_the_source_gives_its_symmetric_shape_and_the_plate_keeps_its_lopsidedness(plate_shot):
    """Man A's tracked neutral is lopsided (0.73 cm rms from its mirror image, man B's
    0.38): on man B's plate his face came out pushed sideways within man B's outline,
    0.51 from man A by dlib on the occluded pair (0.47 with the shapes as here). A face's
    left-right deviation is mostly how the tracker saw it in that footage, and the plate's
    pixels follow the plate's own: the transferred shape is the source's symmetric part
    with the plate's deviation, so a source who is the plate's performer gives the plate's
    own shape back."""
    layout = ShotLayout(plate_shot)
    man_a = neutral_shape_cm(load_track(layout.source.track), layout.source.track)
    man_b = neutral_shape_cm(load_track(layout.plate.track), layout.plate.track)
    print(f"lopsided: man A {_lopsided(man_a):.3f} cm, man B {_lopsided(man_b):.3f} cm")
    assert _lopsided(man_a) > 0.6 and _lopsided(man_b) < 0.45
    assert _lopsided(symmetric_shape(man_a)) < 1e-4
    assert _rms(symmetric_shape(man_b), man_b) < _lopsided(man_b)
    assert np.abs(source_shape_on_plate(man_b, man_b) - man_b).max() < 1e-4
    on_b = source_shape_on_plate(man_a, man_b)
    assert _rms(symmetric_shape(on_b), symmetric_shape(man_a)) < 0.02
    assert abs(_lopsided(on_b) - _lopsided(man_b)) < 0.02
    assert _rms(on_b, man_b) < _rms(man_a, man_b) / 2  # man A's lopsidedness is gone


def test_guides_follow_a_sculpted_shape_key(plate_shot, cli):
    layout = ShotLayout(plate_shot)
    blend = layout.plate.scene
    transfer_blend(plate_shot)
    args = ("guides", "--shot", plate_shot, "--progress", "none")
    assert cli(*args).returncode == 0
    shaped = layout.plate.guides(256, SHAPE_KEY)
    before = np.array(load_guides(shaped).depth[10])
    # The artist pulls the nose tip 2 cm out of the face in the shape key.
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    key = bpy.data.objects[FACE_NAME].data.shape_keys.key_blocks[SHAPE_KEY]
    key.data[1].co.z += 0.02
    save_blend_atomic(blend)
    assert cli(*args).returncode == 0
    after = np.array(load_guides(shaped).depth[10])
    changed = (np.abs(after.astype(np.float32) - before.astype(np.float32)) > 0.5)
    assert 20 < changed.sum() < 2000  # around the nose tip, not the whole face


def test_source_without_faces_is_refused(plate_shot, franck_shot, tmp_path):
    shot = tmp_path / "shot"
    shutil.copytree(ShotLayout(plate_shot).plate.path, ShotLayout(shot).plate.path)
    empty = load_track(ShotLayout(franck_shot).plate.track)
    empty.present[:] = False
    save_track(empty, use_as_source(ShotLayout(franck_shot).plate.track, shot))
    blend = ShotLayout(shot).plate.scene
    before = blend.read_bytes()
    with pytest.raises(FaceGraftError, match="no frame with a face"):
        transfer_blend(shot)
    assert blend.read_bytes() == before
