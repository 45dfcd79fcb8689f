"""The process split of DESIGN.md, kept by scanning imports: addon/ never imports the ML
stack, ml/ and common/ never import bpy, and common/ imports nothing heavy at all."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ML_STACK = {"torch", "mediapipe", "cv2", "safetensors"}


def _imports(folder: str) -> dict[str, set[str]]:
    found = {}
    for path in (REPO / folder).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names
    return found


def test_addon_never_imports_the_ml_stack():
    for path, names in _imports("addon").items():
        assert not names & ML_STACK, f"{path} imports {names & ML_STACK}"


def test_worker_and_common_never_import_bpy():
    for folder in ("ml", "common"):
        for path, names in _imports(folder).items():
            assert "bpy" not in names, path


def test_common_is_light():
    for path, names in _imports("common").items():
        assert not names & ML_STACK, f"{path} imports {names & ML_STACK}"


def test_root_package_imports_without_blender():
    import sys

    import facegraft  # noqa: F401  (must not pull in bpy)

    assert "bpy" not in sys.modules or "facegraft.addon" in sys.modules
