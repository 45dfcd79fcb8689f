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
found["installed"] = hasattr(bpy.types, "FACEGRAFT_OT_track")
found["panels"] = all(hasattr(bpy.types, name)
                      for name in ("VIEW3D_PT_facegraft", "CLIP_PT_facegraft"))

# Unregister, register again, and twice in a row each way.
addon_utils.disable(module, default_set=True)
found["unregistered"] = not hasattr(bpy.types, "FACEGRAFT_OT_track")
addon_utils.disable(module, default_set=True)
addon_utils.enable(module, default_set=True)
found["reregistered"] = hasattr(bpy.types, "FACEGRAFT_OT_track")
sys.modules[module].register()  # a second register is harmless
found["double_register"] = hasattr(bpy.types, "FACEGRAFT_OT_track")

prefs = bpy.context.preferences.addons[module].preferences
scene = bpy.context.scene
scene.facegraft.plate = str(plate)
scene.facegraft.shot_folder = str(shot)

# A missing worker Python: a clear report, nothing written.
prefs.worker_python = "/nonexistent/bin/python3"
try:
    result = bpy.ops.facegraft.track()
except RuntimeError as exc:  # operator reports of type ERROR raise in background mode
    result = {"CANCELLED"}
    found["missing_worker_report"] = str(exc)
found["missing_worker_result"] = sorted(result)
found["missing_worker_status"] = scene.facegraft.track.status
found["missing_worker_message"] = scene.facegraft.track.message
found["shot_untouched"] = not shot.exists() or not any(shot.iterdir())

# The real thing: track in the worker, then build the scene.
prefs.worker_python = sys.executable
found["track_result"] = sorted(bpy.ops.facegraft.track())
found["track_status"] = scene.facegraft.track.status
found["track_file"] = (shot / "track.npz").is_file()
status = sys.modules[module + ".addon.stage_status"].stage_status
found["status_after_track"] = [status(scene, "track"), status(scene, "build")]
found["build_result"] = sorted(bpy.ops.facegraft.build_scene())
found["status_after_build"] = [status(scene, "track"), status(scene, "build")]
scene.facegraft.plate = str(plate.with_name("another_plate.mp4"))
found["status_other_plate"] = status(scene, "track")
scene.facegraft.plate = str(plate)
face = bpy.data.objects.get("FaceGraft Face")
found["face_vertices"] = len(face.data.vertices) if face else 0
found["frame_end"] = scene.frame_end

# The rest of the panel's stages, in order.
scene.facegraft.source = str(source)
scene.facegraft.profile = "tiny"  # 64 px guides, dataset and model: seconds, not minutes
scene.facegraft.train_minutes = 0.1
found["track_source"] = sorted(bpy.ops.facegraft.track_source())
found["transfer"] = sorted(bpy.ops.facegraft.transfer())
found["guides"] = sorted(bpy.ops.facegraft.guides())
found["dataset"] = sorted(bpy.ops.facegraft.dataset())
found["prepare_source"] = sorted(bpy.ops.facegraft.prepare_source())
found["train"] = sorted(bpy.ops.facegraft.train())
found["swap"] = sorted(bpy.ops.facegraft.swap())
found["merge"] = sorted(bpy.ops.facegraft.merge())
found["composite"] = sorted(bpy.ops.facegraft.composite())
tree = scene.compositing_node_group
found["compositor"] = tree.name if tree else None
scene.frame_set(30)
bpy.ops.render.render(write_still=False)  # the artist's F12
found["exr_written"] = [p.name for p in (shot / "exr").glob("*.exr")]
found["outputs"] = sorted(p.name for p in shot.iterdir() if not p.name.startswith("."))
found["statuses"] = [status(scene, stage) for stage in
                     ("track", "build", "source_track", "transfer", "guides", "dataset",
                      "source_prepare", "train", "swap", "merge", "composite")]
# Run All: the whole pipeline from the footage, results loaded for scrubbing.
found["run_all"] = sorted(bpy.ops.facegraft.run_all())
found["run_all_status"] = status(scene, "run_all")
found["run_all_frames"] = len(list((shot / "run_all" / "final").glob("final_*.png")))
found["final_image"] = bpy.data.images.get("FaceGraft Final") is not None
camera = bpy.data.objects["FaceGraft Camera"]
found["backgrounds"] = [b.source for b in camera.data.background_images]

# The command registered for 'blender -b -c facegraft ...'.
cli = sys.modules[module + ".addon.cli_command"]
found["cli_build"] = cli.handle_cli(["build", "--shot", str(shot),
                                     "--blend", str(shot / "cli.blend")])
found["cli_blend"] = (shot / "cli.blend").is_file()
found["cli_bad"] = cli.handle_cli(["build", "--shot", str(shot / "nope"),
                                   "--blend", str(shot / "x.blend")])
# A worker stage through the Blender command: forwarded to the worker Python.
found["cli_merge"] = cli.handle_cli(["merge", "--target", str(shot), "--swap",
                                     str(shot / "swap_64_run_tiny"), "--progress", "bar"])
print("FINDINGS " + json.dumps(found))
