"""The stage table is the one place a stage is declared: every stage has its command line
(with help for every option), a function that takes exactly its options, a route from
``blender -b -c facegraft`` and, when it is a step of a shot, a row in the panel. A stage
added halfway fails here."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from conftest import run_cli
from facegraft.common.shot_layout import ShotLayout
from facegraft.common.stage_entry import stage_function
from facegraft.common.stage_table import (
    BLENDER,
    SECTIONS,
    STAGES,
    STAGES_BY_NAME,
    WORKER,
    ShotSettings,
    build_parser,
    shot_plan,
)

# Commands that are not a step of a shot.
UTILITIES = {"samples", "preview", "run", "guides-chunk", "farm-jobs", "worker-install",
             "worker-check", "track-mask"}


def _plan(tmp_path: Path):
    return shot_plan(tmp_path / "shot", ShotSettings(plate=tmp_path / "plate.mp4",
                                                     source=tmp_path / "source.mp4"))


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_every_stage_has_its_command_line_and_function(stage):
    result = run_cli(stage.name, "--help")
    assert result.returncode == 0, result.stderr
    for option in stage.options:
        assert option.help, (stage.name, option.flags)
        if option.flags[0].startswith("-"):
            assert option.flags[0] in result.stdout, (stage.name, option.flags)
    parameters = inspect.signature(stage_function(stage)).parameters
    expected = {option.name for option in stage.options} | (
        {"progress_mode"} if stage.progress else set())
    assert expected <= set(parameters), (stage.name, expected - set(parameters))
    required = {name for name, p in parameters.items() if p.default is inspect.Parameter.empty}
    assert required <= expected, (stage.name, required - expected)
    assert stage.runs_in in (WORKER, BLENDER) and stage.label and stage.reads and stage.writes


def test_blender_command_dispatches_every_stage():
    """``blender -b -c facegraft`` parses with the same table and runs Blender stages in
    Blender, the others in the worker."""
    import facegraft.addon.blender_command as blender_command

    parser = build_parser(prog="blender -b -c facegraft")
    for stage in STAGES:
        args = parser.parse_args([stage.name, *_required_args(stage)])
        assert args.stage == stage.name
    source = inspect.getsource(blender_command._run)
    assert "runs_in == BLENDER" in source and "worker_process" in source


SAMPLE_VALUES = {"frame_range": "0:2", "scene_frames": "1:2", "positive_int": "1",
                 "frame_index": "0", "positive_float": "1.5", "fraction": "0.1",
                 "pixel": "1,2"}


def _required_args(stage) -> list[str]:
    """The least command line the stage accepts: a sample value for each required option."""
    out = []
    for option in stage.options:
        value = (option.choices[0] if option.choices
                 else SAMPLE_VALUES.get(getattr(option.type, "__name__", ""), "x"))
        if not option.flags[0].startswith("-"):
            out.append(value)
        elif option.required:
            out += [option.flags[0], value]
    return out


def test_every_step_is_a_stage_and_a_panel_row(tmp_path):
    plan = _plan(tmp_path)
    names = [step.name for step in plan]
    assert len(names) == len(set(names))
    for step in plan:
        assert step.stage in STAGES_BY_NAME and step.argv[0] == step.stage
        assert step.section in SECTIONS and step.label
        build_parser().parse_args(list(step.argv))  # the plan's commands are valid
    stepped = {step.stage for step in plan}
    assert stepped == {s.name for s in STAGES} - UTILITIES
    # The steps respect their dependencies: whatever a step needs is made before it.
    made = set()
    for step in plan:
        assert all(name in names[:names.index(step.name)] for name in step.after)
        made |= set(step.outputs)
    assert all(path in made for step in plan for path in step.needs)


def test_every_step_writes_inside_the_shot_folder(tmp_path):
    root = ShotLayout(tmp_path / "shot").root
    for step in _plan(tmp_path):
        for path in step.outputs:
            assert root in path.parents, (step.name, path)


def test_the_panel_draws_a_row_for_every_step(tmp_path):
    """The panel's rows come from the plan: every step shows, in its section."""
    import bpy
    from facegraft.addon import panels

    drawn = []

    class Layout:
        def __getattr__(self, name):
            return lambda *args, **kwargs: self

        def operator(self, idname, text="", **kwargs):
            drawn.append((idname, text))
            return type("Properties", (), {})()

    scene = bpy.context.scene
    if not hasattr(bpy.types.Scene, "facegraft"):
        from facegraft.addon import properties
        properties.register()
    scene.facegraft.plate = str(tmp_path / "plate.mp4")
    scene.facegraft.source = str(tmp_path / "source.mp4")
    scene.facegraft.shot_folder = str(tmp_path / "shot")
    context = type("Context", (), {"scene": scene})()
    for section in SECTIONS:
        panels.draw_section(Layout(), context, section)
    # After the steps, the Output section's own button.
    assert [text for _, text in drawn] == [step.label for step in _plan(tmp_path)] + [
        "Track Around Occluders"]


def test_the_architecture_page_lists_every_stage():
    page = (Path(__file__).resolve().parent.parent / "docs" / "ARCHITECTURE.md").read_text()
    for stage in STAGES:
        if not stage.hidden:
            assert f"| `{stage.name}` |" in page, stage.name


BAD_VALUES = {"positive_int": ("0", "-5", "x", "1.5"), "frame_index": ("-1", "x"),
              "positive_float": ("0", "-2", "nan", "inf", "x"), "fraction": ("-0.1", "0.3"),
              "frame_range": ("5:5", "6:2", "a:b", "4", "-1:3"),
              "scene_frames": ("5:4", "x", "7-3", "-2"),
              "pixel": ("1", "a,b"), "guide_sets": ("hands", ""), "detail_gain": ("-1", "9"),
              "int": ("x",), "end_frame": ("-1", "x", "1.5"), "crop_size": ("100", "0", "x")}


def _bad_cases():
    for stage in STAGES:
        for option in stage.options:
            if not option.flags[0].startswith("-") or option.flag:
                continue
            values = (("nope",) if option.choices
                      else BAD_VALUES.get(getattr(option.type, "__name__", ""), ()))
            for value in values:
                yield stage, option, value


@pytest.mark.parametrize("stage, option, value", list(_bad_cases()),
                         ids=lambda v: v if isinstance(v, str) else getattr(v, "name", ""))
def test_an_invalid_value_is_refused_in_one_line(stage, option, value, tmp_path):
    """Every numeric, range and choice option: exit status 2, one line on stderr, no
    traceback, nothing written (the command runs in an empty folder, its shot inside)."""
    args = [str(tmp_path / "shot") if arg == "x" else arg for arg in _required_args(stage)]
    flag = option.flags[0]
    if flag in args:
        args = args[:args.index(flag)] + args[args.index(flag) + 2:]
    result = run_cli(stage.name, *args, flag, value)
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"facegraft {stage.name}: error: "), lines
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
