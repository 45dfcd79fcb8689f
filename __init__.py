"""FaceGraft: the extension entry point.

Blender imports this package as ``bl_ext.<repository>.facegraft``; the worker and the tests
import it as ``facegraft``. Nothing here may import bpy at module level, so that the worker
can import the package without Blender.
"""


def register() -> None:
    from .addon import register as register_addon

    register_addon()


def unregister() -> None:
    from .addon import unregister as unregister_addon

    unregister_addon()
