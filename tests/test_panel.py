"""The FaceGraft panel as the artist sees it: every panel and the preferences drawn into a
recording layout (a stand-in for Blender's UILayout that records labels, properties,
operators and whether each is enabled, operators' poll() included) in the states an artist
meets: fresh scene, no worker, worker ready, plate loaded, tracking running, a stage
failed, a damaged track.npz, after Run All, and a file saved mid-run reopened. No draw
raises in any of them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# isort: off
import bpy  # first: it puts Blender's own modules (addon_utils) on the path
import addon_utils
# isort: on
import pytest
from facegraft.addon import panels, run_state, worker_setup
from facegraft.addon.messages import for_artist
from facegraft.addon.operators import plan_of
from facegraft.addon.preferences import get_preferences
from facegraft.addon.step_status import step_inputs
from facegraft.common.shot_layout import ShotLayout
from facegraft.common.stage_table import SECTIONS, ShotSettings, shot_plan


@dataclass
class Drawn:
    kind: str  # "label", "prop", "operator", "progress"
    text: str
    name: str = ""  # the property or the operator's idname
    layouts: list = field(default_factory=list)  # the layouts it sits in, innermost last
    poll: bool = True

    @property
    def enabled(self) -> bool:
        return self.poll and all(layout.enabled for layout in self.layouts)


class OperatorProperties:
    """What ``layout.operator()`` returns: the button's properties, set by the panel."""


class RecordingLayout:
    """Records what a panel draws, nested as Blender nests rows, columns and boxes."""

    def __init__(self, drawn: list[Drawn] | None = None, parents: list | None = None):
        self.drawn = [] if drawn is None else drawn
        self.parents = [*(parents or []), self]
        self.enabled, self.alert, self.scale_y, self.active = True, False, 1.0, True

    def _add(self, kind: str, text: str, name: str = "", poll: bool = True) -> Drawn:
        item = Drawn(kind, text, name, self.parents, poll)
        self.drawn.append(item)
        return item

    def _child(self, *_args, **_kwargs) -> RecordingLayout:
        return RecordingLayout(self.drawn, self.parents)

    row = column = box = split = column_flow = _child

    def label(self, text: str = "", icon: str = "NONE", **_kwargs) -> None:
        self._add("label", text)

    def prop(self, data, name: str, text: str | None = None, **_kwargs) -> None:
        label = text if text is not None else data.bl_rna.properties[name].name
        self._add("prop", label, name)

    def operator(self, idname: str, text: str | None = None, **_kwargs) -> OperatorProperties:
        module, function = idname.split(".")
        operator = getattr(getattr(bpy.ops, module), function)
        label = text if text is not None else operator.get_rna_type().name
        self._add("operator", label, idname, poll=operator.poll())
        return OperatorProperties()

    def progress(self, factor: float = 0.0, text: str = "", **_kwargs) -> None:
        self._add("progress", text)

    def separator(self, **_kwargs) -> None:
        pass


class WithLayout:
    """A panel or the preferences with a recording layout in place of Blender's."""

    def __init__(self, target, layout: RecordingLayout, **attributes):
        self._target, self.layout = target, layout
        self.__dict__.update(attributes)

    def __getattr__(self, name):
        return getattr(self._target, name)


def draw_everything() -> list[Drawn]:
    """The shot panel, each section's sub-panel that polls true, and the preferences."""
    layout = RecordingLayout()
    panels.ShotPanel.draw(WithLayout(None, layout), bpy.context)
    for section in SECTIONS:
        if panels.SectionPanel.poll(bpy.context):
            panels.SectionPanel.draw(WithLayout(None, layout, section=section), bpy.context)
    prefs = get_preferences()
    type(prefs).draw(WithLayout(prefs, layout), bpy.context)
    return layout.drawn


def texts(drawn: list[Drawn]) -> list[str]:
    return [item.text for item in drawn]


def button(drawn: list[Drawn], text: str) -> Drawn:
    found = [item for item in drawn if item.kind == "operator" and item.text == text]
    assert found, f"no button {text!r} in {texts(drawn)}"
    return found[0]


def status_of(drawn: list[Drawn], label: str) -> str:
    """The status label drawn right after a step's button."""
    for index, item in enumerate(drawn):
        if item.kind == "operator" and item.text == label:
            return drawn[index + 1].text
    raise AssertionError(f"no row {label!r} in {texts(drawn)}")


def errors_in(drawn: list[Drawn]) -> list[str]:
    return [t for t in texts(drawn) if t.startswith("FaceGraft cannot show")]


@pytest.fixture(scope="module")
def registered():
    addon_utils.enable("facegraft", default_set=True)  # as Blender enables an add-on
    yield
    addon_utils.disable("facegraft", default_set=True)


@pytest.fixture
def fresh(registered, tmp_path):
    bpy.ops.wm.read_homefile(use_empty=True)
    run_state.forget_all()
    worker_setup.STATE.__init__()
    worker_setup.STATE.loaded = True  # no saved check: a first session
    get_preferences().worker_python = ""
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "artist.blend"))
    return tmp_path


def _check_worker() -> None:
    assert bpy.ops.facegraft.check_worker() == {"FINISHED"}, worker_setup.STATE.error


def _set_up_shot(plate: Path, source: Path, shot: Path) -> None:
    assert bpy.ops.facegraft.load_plate(filepath=str(plate)) == {"FINISHED"}
    scene = bpy.context.scene
    scene.facegraft.source = str(source)
    scene.facegraft.shot_folder = str(shot)
    scene.facegraft.profile = "tiny"


def test_fresh_scene_and_no_worker_show_the_setup_box(fresh):
    drawn = draw_everything()
    assert "Set up FaceGraft's worker first" in texts(drawn)
    assert "The worker has not been checked yet: click Check Worker" in texts(drawn)
    assert button(drawn, "Install Worker") and button(drawn, "Check Worker").enabled
    assert not [item for item in drawn if item.name in ("facegraft.run_all",
                                                           "facegraft.run_step")]
    get_preferences().worker_python = "/nonexistent/bin/python3"
    drawn = draw_everything()
    assert any("worker Python not found" in t for t in texts(drawn)), texts(drawn)
    assert not errors_in(drawn)


def test_a_python_without_torch_says_so_in_the_setup_box(fresh):
    bare = fresh / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    get_preferences().worker_python = str(bare / "bin" / "python")
    with pytest.raises(RuntimeError):  # an operator's error report raises in background
        bpy.ops.facegraft.check_worker()
    drawn = draw_everything()
    assert "Set up FaceGraft's worker first" in texts(drawn)
    assert any("has no " in t and "Install FaceGraft's worker" in t for t in texts(drawn))
    assert not [item for item in drawn if item.name == "facegraft.run_step"]


def test_pick_face_from_a_clip_marker(fresh, single_face, franck):
    _check_worker()
    _set_up_shot(single_face, franck, fresh / "shot")
    clip = bpy.context.scene.active_clip
    assert not bpy.ops.facegraft.pick_face.poll()  # no marker yet: greyed, saying why
    track = clip.tracking.tracks.new(name="face", frame=1)
    track.markers.find_frame(1).co = (0.5, 0.4)  # normalised, y up
    clip.tracking.tracks.active = track
    assert bpy.ops.facegraft.pick_face() == {"FINISHED"}
    shot = bpy.context.scene.facegraft
    assert shot.use_pick and tuple(shot.pick) == (320, 216)  # 640x360 plate, y down
    folder, plan = plan_of(bpy.context)
    track_plate = next(step for step in plan if step.name == "track plate")
    assert track_plate.argv[track_plate.argv.index("--pick") + 1] == "320.0,216.0"
    assert "Follows the face at 320, 216" in texts(draw_everything())


def test_worker_ready_then_plate_loaded(fresh, single_face, franck):
    _check_worker()
    drawn = draw_everything()
    assert any(t.startswith("Worker ready: FaceGraft 0.1.0") for t in texts(drawn))
    assert "Set the plate, the source and the shot folder first" in texts(drawn)
    assert not [item for item in drawn if item.name == "facegraft.run_all"]
    _set_up_shot(single_face, franck, fresh / "shot")
    drawn = draw_everything()
    assert bpy.context.scene.frame_end == 72
    assert button(drawn, "Run All").enabled
    assert status_of(drawn, "Track Plate") == "Not Run"
    assert "Next: Track Plate (Track & Scene)" in texts(drawn)
    assert {"Erode", "Feather", "Shading", "Detail"} <= set(texts(drawn))
    assert not button(drawn, "Open Log").enabled  # nothing ran yet
    assert not errors_in(drawn)


def test_tracking_running_greys_what_depends_on_it(fresh, single_face, franck):
    _check_worker()
    _set_up_shot(single_face, franck, fresh / "shot")
    folder = ShotLayout(fresh / "shot").root
    run = run_state.start(folder, "track plate")
    run.progress, run.eta_s = 0.4, 30.0
    drawn = draw_everything()
    assert "40 %, 30 s left" in texts(drawn)
    assert [item.enabled for item in drawn if item.name == "facegraft.stop"] == [True]
    assert not button(drawn, "Build Scene").enabled
    assert status_of(drawn, "Build Scene") == "Waits for Track Plate"
    assert button(drawn, "Track Source").enabled  # reads nothing the plate's tracking writes
    assert not button(drawn, "Run All").enabled
    assert not button(drawn, "Load Plate").enabled
    run_state.clear(folder, "track plate")


def test_a_failed_stage_and_a_damaged_track(fresh, single_face, franck):
    _check_worker()
    shot = fresh / "shot"
    _set_up_shot(single_face, franck, shot)
    run_state.fail(shot, "guides plate", "Guides: the plate's scene is missing; click "
                                         "Build Scene first")
    (shot / "plate").mkdir(parents=True)
    ShotLayout(shot).plate.track.write_bytes(b"")  # 0 bytes: damaged
    drawn = draw_everything()
    assert status_of(drawn, "Plate Guides") == "Failed"
    assert "Guides: the plate's scene is missing; click Build Scene first" in texts(drawn)
    assert status_of(drawn, "Track Plate") == "Damaged: run it again"
    assert button(drawn, "Track Plate").enabled  # the button that repairs it
    assert not errors_in(drawn)
    # A failure remembered with its inputs clears when they change (the cause was fixed).
    folder, plan = plan_of(bpy.context)
    build = next(step for step in plan if step.name == "build plate")
    run_state.fail(folder, "dataset plate", "Dataset: no guides",
                   step_inputs(next(s for s in plan if s.name == "dataset plate")))
    run_state.fail(folder, build.name, "Build Scene: no track", step_inputs(build))
    assert status_of(draw_everything(), "Plate Dataset") == "Failed"
    ShotLayout(shot).plate.track.write_bytes(b"again")  # Build Scene reads the track
    drawn = draw_everything()
    assert status_of(drawn, "Build Scene") != "Failed"
    assert status_of(drawn, "Plate Dataset") == "Failed"  # its inputs did not change


def test_after_run_all_every_row_is_done(fresh, fast_run, single_face, franck):
    _check_worker()
    shot = fresh / "shot"
    shutil.copytree(fast_run.out, shot, symlinks=True)
    _set_up_shot(single_face, franck, shot)
    scene = bpy.context.scene
    # The fast run's frames: plate 0-19, source 0-59. Its 40 training steps took longer
    # than the panel's 0.1 minutes, so Train has nothing more to do: Run All checks every
    # step, then loads the result into the scene.
    scene.facegraft.use_frame_range = True
    scene.frame_end = 20
    scene.facegraft.source_start, scene.facegraft.source_end = 0, 60
    scene.facegraft.train_minutes = 0.1
    assert bpy.ops.facegraft.run_all() == {"FINISHED"}, run_state.get(shot, "run")
    drawn = draw_everything()
    statuses = {item.text: status_of(drawn, item.text) for item in drawn
                if item.name == "facegraft.run_step"}
    assert set(statuses.values()) == {"Done"}, statuses
    assert "Every step is done: the final frames are in the shot folder" in texts(drawn)
    assert button(drawn, "Open Log").enabled
    # Track Around Occluders keeps the occlusion matte as the plate's tracking mask: the
    # plate's track, and all that follows it, is to be made again.
    assert bpy.ops.facegraft.track_mask() == {"FINISHED"}, run_state.get(shot, "track-mask")
    assert ShotLayout(shot).plate.track_mask.is_dir()
    drawn = draw_everything()
    assert status_of(drawn, "Track Plate") != "Done"
    assert "The plate's track leaves out plate/track_mask" in texts(drawn)


def test_worker_errors_name_buttons_and_shot_files(tmp_path):
    """The worker's one-line errors, as the panel words them."""
    shot = tmp_path / "shot"
    plan = shot_plan(shot, ShotSettings(tmp_path / "plate.mp4", tmp_path / "source.mp4"))
    cases = {
        f"{shot}/plate/track.npz: no track file (run Track first)":
            "Plate/track.npz: no track file (click Track Plate first)",
        f"{shot}/source/guides_128: no readable guides output (run guides again)":
            "Source/guides_128: no readable guides output (click Source Guides again)",
        f"{shot}/model_cpu/checkpoint.json: no checkpoint (run Train first)":
            "Model_cpu/checkpoint.json: no checkpoint (click Train first)",
        "/home/me/footage/plate.mov: not a video FFmpeg can decode":
            "Plate.mov: not a video FFmpeg can decode",
        f"{tmp_path}/x/sample.mp4: sample not fetched yet; run 'facegraft samples'":
            "Sample.mp4: sample not fetched yet; click Fetch Samples",
    }
    for message, shown in cases.items():
        assert for_artist(message, shot, plan) == shown


def test_a_file_saved_mid_run_reopens_clean(fresh, single_face, franck):
    _check_worker()
    shot = fresh / "shot"
    _set_up_shot(single_face, franck, shot)
    run_state.start(shot, "train").progress = 0.42
    bpy.ops.wm.save_mainfile()
    bpy.ops.wm.open_mainfile(filepath=bpy.data.filepath)
    drawn = draw_everything()
    assert "42 %" not in " ".join(texts(drawn))
    assert status_of(drawn, "Train") == "Not Run"
    assert button(drawn, "Run All").enabled
    assert not errors_in(drawn)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
