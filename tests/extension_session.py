"""Run by tests/test_extension.py in a fresh Python with BLENDER_USER_RESOURCES set to a
throwaway folder: installs the built extension zip into that isolated user folder through
the bpy module and drives it as an artist would. Prints one JSON object of findings."""

import json
import sys
from pathlib import Path

# isort: off
import bpy  # must come first: it puts Blender's own modules (addon_utils) on the path
import addon_utils
# isort: on

zip_path, plate, shot, source = (Path(arg) for arg in sys.argv[1:5])
found = {}

bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default",
                                         enable_on_install=True)
module = "bl_ext.user_default.facegraft"
found["installed"] = hasattr(bpy.types, "FACEGRAFT_OT_run_step")
found["panels"] = all(hasattr(bpy.types, name)
                      for name in ("VIEW3D_PT_facegraft", "CLIP_PT_facegraft"))

# Unregister, register again, and twice in a row each way.
addon_utils.disable(module, default_set=True)
found["unregistered"] = not hasattr(bpy.types, "FACEGRAFT_OT_run_step")
addon_utils.disable(module, default_set=True)
addon_utils.enable(module, default_set=True)
found["reregistered"] = hasattr(bpy.types, "FACEGRAFT_OT_run_step")
sys.modules[module].register()  # a second register is harmless
found["double_register"] = hasattr(bpy.types, "FACEGRAFT_OT_run_step")

prefs = bpy.context.preferences.addons[module].preferences


def artist_render_settings(scene):
    """The artist's render engine: Cycles at one sample without the denoiser, as on a
    machine without a GPU (EEVEE there renders in software, about a minute a frame; the
    denoiser takes seconds a frame)."""
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False


scene = bpy.context.scene
artist_render_settings(scene)
scene.facegraft.plate = str(plate)
scene.facegraft.source = str(source)
scene.facegraft.shot_folder = str(shot)
scene.facegraft.profile = "tiny"  # 64 px guides, dataset and model: seconds, not minutes
scene.facegraft.train_minutes = 0.1
run_state = sys.modules[module + ".addon.run_state"]
status_module = sys.modules[module + ".addon.step_status"]
plan_of = sys.modules[module + ".addon.operators"].plan_of


def statuses():
    folder, plan = plan_of(bpy.context)
    return {step.name: status_module.step_status(scene, folder, step) for step in plan}


def run_step(name):
    try:
        return sorted(bpy.ops.facegraft.run_step(step=name))
    except RuntimeError as exc:  # operator reports of type ERROR raise in background mode
        found.setdefault("errors", {})[name] = str(exc)
        return ["CANCELLED"]


# A missing worker Python: the buttons are greyed saying why, nothing written.
prefs.worker_python = "/nonexistent/bin/python3"
found["missing_worker_result"] = run_step("track plate")
found["missing_worker_status"] = statuses()["track plate"]
found["missing_worker_message"] = found.get("errors", {}).pop("track plate", "")
found["shot_untouched"] = not shot.exists() or not any(shot.iterdir())

# Check Worker: the worker runs this installed extension's code, not another copy.
prefs.worker_python = sys.executable
found["check_worker"] = sorted(bpy.ops.facegraft.check_worker())
found["worker_report"] = sys.modules[module + ".addon.worker_setup"].STATE.report

# The real thing: track in the worker, then build the scene.
found["track_result"] = run_step("track plate")
found["track_file"] = (shot / "plate" / "track.npz").is_file()
found["status_after_track"] = [statuses()[s] for s in ("track plate", "build plate")]
found["build_result"] = run_step("build plate")
found["status_after_build"] = [statuses()[s] for s in ("track plate", "build plate")]
scene.facegraft.plate = str(plate.with_name("another_plate.mp4"))
found["status_other_plate"] = statuses()["track plate"]
scene.facegraft.plate = str(plate)
face = bpy.data.objects.get("FaceGraft Face")
found["face_vertices"] = len(face.data.vertices) if face else 0
found["frame_end"] = scene.frame_end

# Every other step of the plan, in order, from the panel's rows.
folder, plan = plan_of(bpy.context)
found["steps"] = {step.name: run_step(step.name) for step in plan
                  if step.name not in ("track plate", "build plate")}
tree = getattr(scene, "compositing_node_group", None) or getattr(scene, "node_tree", None)
found["compositor"] = sorted(node.name for node in tree.nodes) if tree else None
scene.frame_set(30)
bpy.ops.render.render(write_still=False)  # the artist's F12
found["exr_written"] = [p.name for p in (shot / "exr").glob("*.exr")]
found["outputs"] = sorted(p.name for p in shot.iterdir() if not p.name.startswith("."))
found["plate_outputs"] = sorted(p.name for p in (shot / "plate").iterdir()
                                if not p.name.startswith("."))
found["statuses"] = statuses()
found["beside_source"] = sorted(p.name for p in source.parent.iterdir())

# Run All in a fresh scene: the same shot folder, every step already done by the panel.
bpy.ops.wm.read_homefile(use_empty=True)
scene = bpy.context.scene
artist_render_settings(scene)
scene.facegraft.plate = str(plate)
scene.facegraft.source = str(source)
scene.facegraft.shot_folder = str(shot)
scene.facegraft.profile = "tiny"
scene.facegraft.train_minutes = 0.1
found["run_all"] = sorted(bpy.ops.facegraft.run_all())
found["statuses_after_run_all"] = statuses()
found["run_all_frames"] = len(list((shot / "final").glob("final_*.png")))
found["final_image"] = bpy.data.images.get("FaceGraft Final") is not None
camera = bpy.data.objects["FaceGraft Camera"]
found["backgrounds"] = [b.source for b in camera.data.background_images]

# The command registered for 'blender -b -c facegraft ...'.
cli = sys.modules[module + ".addon.blender_command"]
found["cli_build"] = cli.handle_cli(["build", "--shot", str(shot)])
found["cli_blend"] = (shot / "plate" / "scene.blend").is_file()
found["cli_bad"] = cli.handle_cli(["build", "--shot", str(shot / "nope")])
# A worker stage through the Blender command: forwarded to the worker Python.
found["cli_merge"] = cli.handle_cli(["merge", "--shot", str(shot), "--profile", "tiny",
                                     "--force", "--progress", "bar"])
print("FINDINGS " + json.dumps(found))
