"""The Blender side of FaceGraft: the only package that imports bpy.

Modules register in order and unregister in reverse; registering twice, unregistering
twice and reloading all work.
"""

from __future__ import annotations

from . import (
    blender_command,
    composite_scene,
    operators,
    panels,
    preferences,
    properties,
    run_state,
    worker_setup,
)

MODULES = (preferences, properties, run_state, worker_setup, composite_scene, operators,
           panels, blender_command)
_registered = False


def register() -> None:
    global _registered
    if _registered:
        return
    for module in MODULES:
        module.register()
    _registered = True


def unregister() -> None:
    global _registered
    if not _registered:
        return
    for module in reversed(MODULES):
        module.unregister()
    _registered = False
