"""The Blender side of FaceGraft. The only package that imports bpy."""

import bpy  # noqa: F401  (Blender-only package: importing it outside Blender is an error)


def register() -> None:
    pass


def unregister() -> None:
    pass
