"""Run by tests/test_worker_environment.py in a fresh Python with BLENDER_USER_RESOURCES
set to a throwaway folder: installs the built extension zip, then as an artist without
internet would: sets the folder of wheels, clicks Install Worker, then Check Worker, then
tracks the plate with that worker. Prints one JSON object of findings."""

import json
import sys
import time
from pathlib import Path

import bpy

zip_path, wheels, plate, shot = (Path(arg) for arg in sys.argv[1:5])
found = {}
bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default",
                                         enable_on_install=True)
module = "bl_ext.user_default.facegraft"
prefs = bpy.context.preferences.addons[module].preferences
setup = sys.modules[module + ".addon.worker_setup"]
worker = sys.modules[module + ".addon.worker"]

prefs.wheels_folder = str(wheels)
started = time.monotonic()
found["install"] = sorted(bpy.ops.facegraft.install_worker())
found["install_s"] = round(time.monotonic() - started, 1)
found["installed_in"] = str(worker.installed_worker_folder())
found["worker_python"] = str(worker.resolve_worker_python(""))
found["install_report"] = setup.STATE.report
setup.STATE.report = None  # Check Worker again, by hand
found["check"] = sorted(bpy.ops.facegraft.check_worker())
found["check_report"] = setup.STATE.report
found["ready"] = setup.worker_ready(bpy.context)[0]

scene = bpy.context.scene
scene.facegraft.plate = str(plate)
scene.facegraft.source = str(plate)
scene.facegraft.shot_folder = str(shot)
started = time.monotonic()
found["track"] = sorted(bpy.ops.facegraft.run_step(step="track plate"))
found["track_s"] = round(time.monotonic() - started, 1)
found["track_file"] = (shot / "plate" / "track.npz").is_file()
print("FINDINGS " + json.dumps(found))
