"""Composite: the neural face on the face mesh and a compositor tree over the plate, set
up in the open scene (the panel) or in the shot's composite .blend and rendered frame by
frame (``facegraft composite``, ``blender -b -c facegraft composite``).

What is set up in the scene (all named "FaceGraft ..." so an artist finds and edits them):

- "FaceGraft Neural Face" material on the face mesh: the merged swap (``merge`` stage,
  plate space, colour matched) as an image sequence, projected from the plate camera
  (window coordinates), emitted as is. Rendered from the plate camera, the mesh shows the
  swap exactly where it belongs; anything placed in front of the face hides it, and the
  render's alpha is the mesh's coverage.
- Cycles at one sample with a pixel-sized filter (each pixel samples its centre: the
  texture comes through unfiltered), transparent film, Standard view transform, passes
  for the EXR (normal, depth, UV).
- "FaceGraft Composite" compositor tree: Plate (movie clip) + the render, laid over with
  the matte (merge's matte x the mesh's coverage -> "Matte Erode" -> "Edge Blend"),
  "Grain" (white noise per frame at the plate's measured noise level) and a neutral
  "Face Grade"; a File Output node writes the multilayer EXR (plate, swap RGBA, matte,
  final, normal, depth, uv) next to the final PNG frames.

Blender 5.0 keeps compositor trees in ``scene.compositing_node_group`` with a group output;
4.5 used ``scene.node_tree`` and a Composite node: both are handled.

Rendering: frames are rendered one by one; each final PNG is written under a temporary
name and renamed once its EXR is on disk, so a killed render resumes at the first missing
frame. ``final/render.json`` records what the frames were made from; a rerun with the
same inputs renders nothing. A composite .blend an artist has changed since FaceGraft
wrote it is never overwritten: its edits are rendered as they are.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import bpy

from ..common.atomic import atomic_path, write_bytes_atomic
from ..common.errors import FaceGraftError
from ..common.merge_file import SEQUENCES, frame_path, load_merge_meta
from ..common.profiles import get_profile
from ..common.progress import Progress
from ..common.samples import sha256_of
from ..common.shot_layout import ShotLayout
from .blend_file import save_blend_atomic
from .build import CAMERA_NAME, FACE_NAME, ROLE

MATERIAL_NAME = "FaceGraft Neural Face"
TREE_NAME = "FaceGraft Composite"
EXR_LAYERS = ("plate", "swap", "matte", "occlusion", "final", "normal", "depth", "uv")


def _sequence(path: Path, data: bool) -> bpy.types.Image:
    image = bpy.data.images.load(str(path), check_existing=False)
    image.source = "SEQUENCE"
    image[ROLE] = "merge"
    if data:
        image.colorspace_settings.name = "Non-Color"
    # The swap's alpha is its own layer: the colour must come through unmultiplied.
    image.alpha_mode = "CHANNEL_PACKED"
    return image


def image_user(user, first_frame: int, frames: int) -> None:
    # File number = scene frame: Blender reads frame f as number f - start + 1 + offset.
    user.frame_start = first_frame
    user.frame_offset = first_frame - 1
    user.frame_duration = frames
    user.use_auto_refresh = True


def merge_images(merge_folder: Path) -> tuple[dict, dict[str, bpy.types.Image]]:
    """The merge stage's meta and its swap, matte and occlusion sequences as Blender
    images."""
    meta = load_merge_meta(merge_folder)
    first = int(meta["first_scene_frame"])
    return meta, {kind: _sequence(frame_path(merge_folder, kind, first), data=kind != "swap")
                  for kind in SEQUENCES}


def _remove_previous(scene: bpy.types.Scene) -> None:
    for image in list(bpy.data.images):
        if image.get(ROLE) == "merge":
            bpy.data.images.remove(image)
    material = bpy.data.materials.get(MATERIAL_NAME)
    if material is not None:
        bpy.data.materials.remove(material)
    tree = bpy.data.node_groups.get(TREE_NAME)
    if tree is not None:
        bpy.data.node_groups.remove(tree)


def _face_material(swap: bpy.types.Image, meta: dict) -> bpy.types.Material:
    material = bpy.data.materials.new(MATERIAL_NAME)
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    coords = nodes.new("ShaderNodeTexCoord")
    texture = nodes.new("ShaderNodeTexImage")
    texture.name = texture.label = "Neural Face"
    texture.image = swap
    texture.interpolation = "Closest"  # one texel per pixel: the projection is exact
    texture.extension = "CLIP"
    image_user(texture.image_user, meta["first_scene_frame"], meta["frame_count"])
    emission = nodes.new("ShaderNodeEmission")
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(coords.outputs["Window"], texture.inputs["Vector"])
    links.new(texture.outputs["Color"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    for x, node in enumerate((coords, texture, emission, output)):
        node.location = (x * 300 - 600, 0)
    return material


def _render_settings(scene: bpy.types.Scene) -> None:
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 1
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = False
    scene.cycles.filter_width = 0.01  # sample the pixel centre: no texture filtering
    scene.cycles.seed = 0
    scene.cycles.max_bounces = 0
    scene.render.film_transparent = True
    scene.render.use_persistent_data = True
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.render.dither_intensity = 0.0
    scene.render.use_compositing = True
    settings = scene.render.image_settings
    settings.file_format = "PNG"
    settings.color_mode = "RGB"
    settings.color_depth = "8"
    layer = scene.view_layers[0]
    layer.use_pass_z = layer.use_pass_normal = layer.use_pass_uv = True


def _tree(scene: bpy.types.Scene):
    """A fresh compositor tree for the scene and the node its result goes into."""
    if hasattr(scene, "compositing_node_group"):  # Blender 5.0
        tree = bpy.data.node_groups.new(TREE_NAME, "CompositorNodeTree")
        tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        scene.compositing_node_group = tree
        return tree, tree.nodes.new("NodeGroupOutput")
    scene.use_nodes = True  # Blender 4.5
    tree = scene.node_tree
    tree.nodes.clear()
    return tree, tree.nodes.new("CompositorNodeComposite")


def _menu(node, socket: str, value: str) -> None:
    """Set a menu input (5.0) or the equivalent node property (4.5)."""
    if socket in node.inputs:
        node.inputs[socket].default_value = value
    else:
        setattr(node, socket.lower().replace(" ", "_"), value.upper().replace(" ", "_"))


def _compositor(scene: bpy.types.Scene, images: dict, meta: dict, exr_folder: Path) -> None:
    tree, output = _tree(scene)
    tree[ROLE] = "composite"
    nodes, links = tree.nodes, tree.links

    def node(kind: str, name: str, x: int, y: int):
        made = nodes.new(kind)
        made.name = made.label = name
        made.location = (x, y)
        return made

    plate = node("CompositorNodeMovieClip", "Plate", -900, 300)
    plate.clip = scene.active_clip
    render = node("CompositorNodeRLayers", "Render Layers", -900, 0)
    render.scene = scene
    swap_node = node("CompositorNodeImage", "Neural Face", -900, -400)
    matte_node = node("CompositorNodeImage", "Matte", -900, -650)
    occlusion_node = node("CompositorNodeImage", "Occlusion", -900, -900)
    for image_node, kind in ((swap_node, "swap"), (matte_node, "matte"),
                             (occlusion_node, "occlusion")):
        image_node.image = images[kind]
        image_user(image_node, meta["first_scene_frame"], meta["frame_count"])

    covered = node("ShaderNodeMath", "Matte x Coverage", -600, -300)
    covered.operation = "MULTIPLY"
    links.new(matte_node.outputs["Image"], covered.inputs[0])
    links.new(render.outputs["Alpha"], covered.inputs[1])
    erode = node("CompositorNodeDilateErode", "Matte Erode", -400, -300)
    erode.inputs["Size"].default_value = 0  # negative shrinks, positive grows (pixels)
    _menu(erode, "Type", "Distance")
    links.new(covered.outputs["Value"], erode.inputs["Mask"])
    blend = node("CompositorNodeBlur", "Edge Blend", -200, -300)
    blend.inputs["Size"].default_value = (0.0, 0.0)  # extra feather in pixels
    links.new(erode.outputs["Mask"], blend.inputs["Image"])

    grained = _grain(node, links, plate, render, float(meta.get("plate_grain", 0.0)))
    grade = node("CompositorNodeColorBalance", "Face Grade", -100, 0)
    grade.inputs["Factor"].default_value = 1.0
    links.new(grained.outputs["Vector"], grade.inputs["Image"])

    with_matte = node("CompositorNodeSetAlpha", "Face With Matte", 100, 0)
    _menu(with_matte, "Type", "Replace Alpha")
    links.new(grade.outputs["Image"], with_matte.inputs["Image"])
    links.new(blend.outputs["Image"], with_matte.inputs["Alpha"])
    over = node("CompositorNodeAlphaOver", "Face Over Plate", 300, 200)
    over.inputs["Straight Alpha"].default_value = True
    links.new(plate.outputs["Image"], over.inputs["Background"])
    links.new(with_matte.outputs["Image"], over.inputs["Foreground"])
    output.location = (550, 200)
    links.new(over.outputs["Image"], output.inputs[0])

    sources = {"plate": plate.outputs["Image"], "swap": swap_node.outputs["Image"],
               "matte": blend.outputs["Image"], "occlusion": occlusion_node.outputs["Image"],
               "final": over.outputs["Image"],
               "normal": render.outputs["Normal"], "depth": render.outputs["Depth"],
               "uv": render.outputs["UV"]}
    _exr_output(node("CompositorNodeOutputFile", "EXR Layers", 550, -200), links, sources,
                exr_folder)


def _grain(node, links, plate, render, level: float):
    """The render plus white noise per pixel and frame at the plate's measured noise level
    (the swap is smoother than the footage); returns the node that adds it."""
    coords = node("CompositorNodeImageCoordinates", "Pixel", -900, -150)
    links.new(plate.outputs["Image"], coords.inputs["Image"])
    time = node("CompositorNodeSceneTime", "Frame", -900, -250)
    noise = node("ShaderNodeTexWhiteNoise", "Grain Noise", -700, -150)
    noise.noise_dimensions = "4D"
    links.new(coords.outputs["Pixel"], noise.inputs["Vector"])
    links.new(time.outputs["Frame"], noise.inputs["W"])
    centred = node("ShaderNodeVectorMath", "Grain Centre", -500, -150)
    centred.operation = "SUBTRACT"
    centred.inputs[1].default_value = (0.5, 0.5, 0.5)
    links.new(noise.outputs["Color"], centred.inputs[0])
    grain = node("ShaderNodeVectorMath", "Grain", -300, -150)
    grain.operation = "SCALE"
    # Uniform noise in [-0.5, 0.5] has deviation 1/sqrt(12): scale to the plate's.
    grain.inputs["Scale"].default_value = level * 12 ** 0.5
    links.new(centred.outputs["Vector"], grain.inputs[0])
    grained = node("ShaderNodeVectorMath", "Add Grain", -300, 0)
    grained.operation = "ADD"
    links.new(render.outputs["Image"], grained.inputs[0])
    links.new(grain.outputs["Vector"], grained.inputs[1])
    return grained


def _exr_output(exr, links, sources: dict, exr_folder: Path) -> None:
    """The multilayer EXR beside the final frames: one layer per name of EXR_LAYERS."""
    exr.format.media_type = "MULTI_LAYER_IMAGE"
    exr.format.file_format = "OPEN_EXR_MULTILAYER"
    exr.format.color_depth = "16"
    exr.format.exr_codec = "ZIP"
    exr.directory = str(exr_folder) + "/"
    exr.file_name = "facegraft_######"
    kinds = {"matte": "FLOAT", "occlusion": "FLOAT", "depth": "FLOAT", "normal": "VECTOR",
             "uv": "VECTOR"}
    for name in EXR_LAYERS:
        exr.file_output_items.new(kinds.get(name, "RGBA"), name)
        links.new(sources[name], exr.inputs[name])


def setup_composite(scene: bpy.types.Scene, merge_folder: Path, exr_folder: Path) -> dict:
    """Set up the material, render settings and compositor tree of a built scene."""
    face = bpy.data.objects.get(FACE_NAME)
    if face is None or bpy.data.objects.get(CAMERA_NAME) is None:
        raise FaceGraftError(f"{bpy.data.filepath or 'this scene'}: no FaceGraft scene "
                             f"(run build first)")
    if scene.active_clip is None:
        raise FaceGraftError(f"{bpy.data.filepath or 'this scene'}: the scene has no plate clip")
    _remove_previous(scene)
    meta, images = merge_images(merge_folder)
    if (meta["width"], meta["height"]) != (scene.render.resolution_x, scene.render.resolution_y):
        raise FaceGraftError(f"{merge_folder}: merged at {meta['width']}x{meta['height']}, the "
                             f"scene renders {scene.render.resolution_x}x"
                             f"{scene.render.resolution_y}")
    face.data.materials.clear()
    face.data.materials.append(_face_material(images["swap"], meta))
    _render_settings(scene)
    _compositor(scene, images, meta, Path(exr_folder))
    return meta


def _read_state(layout: ShotLayout) -> dict:
    try:
        return json.loads(layout.render_state.read_text())
    except (OSError, ValueError):
        return {}


def _prepare_blend(layout: ShotLayout, merge_folder: Path, state: dict,
                   setup_key: str) -> str:
    """Open the shot's composite .blend: made afresh from the plate's built scene when it
    is missing or FaceGraft's own from other inputs, kept when an artist edited it.
    Returns which ("made", "kept" or "edited")."""
    blend = layout.composite_blend
    if blend.exists():
        if not state.get("blend_sha256"):
            raise FaceGraftError(f"{blend}: exists and was not written by FaceGraft; move it "
                                 f"or use another shot folder")
        # Once edited, always the artist's: a later run renders it and never replaces it.
        edited = (sha256_of(blend) != state["blend_sha256"]
                  or state.get("blend_origin") == "edited")
        if edited or state.get("setup_key") == setup_key:
            bpy.ops.wm.open_mainfile(filepath=str(blend), load_ui=False)
            return "edited" if edited else "kept"
    bpy.ops.wm.open_mainfile(filepath=str(layout.plate.scene), load_ui=False)
    scene = bpy.context.scene
    setup_composite(scene, merge_folder.resolve(), layout.exr.resolve())
    scene.render.filepath = "//final/final_######"
    save_blend_atomic(blend)
    bpy.ops.wm.open_mainfile(filepath=str(blend), load_ui=False)  # render what was saved
    return "made"


def _writes_exr(scene: bpy.types.Scene) -> bool:
    tree = getattr(scene, "compositing_node_group", None) or scene.node_tree
    node = tree.nodes.get("EXR Layers") if tree else None
    return node is not None and not node.mute


def composite_shot(shot: Path, profile: str = "cpu", frames: tuple[int, int] | None = None,
                   progress_mode: str = "bar") -> Path:
    """Render the composite of scene frames ``frames`` (first, last; default all) into the
    shot's final/ and exr/. Returns the final frames' folder."""
    layout = ShotLayout(shot)
    merge_folder = layout.merge(get_profile(profile).name)
    state = _read_state(layout)
    if not layout.plate.scene.is_file():
        raise FaceGraftError(f"{layout.plate.scene}: no built scene (run Build Scene)")
    merge_key = load_merge_meta(merge_folder).get("inputs_key")
    setup_key = hashlib.sha256(json.dumps([sha256_of(layout.plate.scene), merge_key]).encode()
                               ).hexdigest()
    how = _prepare_blend(layout, merge_folder, state, setup_key)
    blend_sha = sha256_of(layout.composite_blend)
    scene = bpy.context.scene
    first, last = frames or (scene.frame_start, scene.frame_end)
    key = hashlib.sha256(json.dumps([blend_sha, merge_key]).encode()).hexdigest()
    # With the same inputs, a frame whose PNG is on disk is finished: the PNG is renamed
    # into place only after its EXR was written.
    same_inputs = state.get("key") == key
    todo = [f for f in range(first, last + 1)
            if not (same_inputs and layout.final_frame(f).is_file())]
    layout.final.mkdir(exist_ok=True)
    layout.exr.mkdir(exist_ok=True)
    for stale in layout.final.glob(".final_*.partial.png"):  # a frame being saved when killed
        stale.unlink()
    write_bytes_atomic(layout.render_state, json.dumps({
        "key": key, "setup_key": setup_key if how != "edited" else state.get("setup_key"),
        "blend": layout.composite_blend.name, "blend_sha256": blend_sha, "blend_origin": how,
        "merge": str(merge_folder)}, indent=1).encode())
    progress = Progress("composite", max(len(todo), 1), progress_mode)
    _render_frames(scene, layout, todo, progress)
    progress.finish(output=str(layout.final), frames=len(todo), blend=how)
    return layout.final


def _render_frames(scene: bpy.types.Scene, layout: ShotLayout, frames: list[int],
                   progress: Progress) -> None:
    writes_exr = _writes_exr(scene)
    for count, frame in enumerate(frames, 1):
        scene.frame_set(frame)
        bpy.ops.render.render(write_still=False)
        if writes_exr and not layout.exr_frame(frame).is_file():
            raise FaceGraftError(f"{layout.exr_frame(frame)}: the EXR was not written "
                                 f"(disk full or not writable?)")
        target = layout.final_frame(frame)
        try:
            with atomic_path(target) as tmp:
                bpy.data.images["Render Result"].save_render(str(tmp), scene=scene)
        except RuntimeError as exc:  # Blender's own write error
            raise FaceGraftError(f"{target}: could not write the frame ({exc})") from exc
        progress.update(count)
