"""Pure helpers shared by the Blender add-on and the worker: no bpy, torch or mediapipe."""
