"""The composite set up in a scene: the neural face joins the artist's scene instead of
taking it over. Used by the panel (the open scene) and the composite stage (shot.blend).

What is made, all named "FaceGraft ..." so an artist finds them, and made again (never
added twice) on a rerun:

- "FaceGraft Neural Face": a copy of the face object (sharing its mesh, animation and
  modifiers) in its own collection, with the material "FaceGraft Neural Face": the merged
  swap (``merge`` stage, plate space) as an image sequence projected from the plate camera
  (window coordinates, one texel per pixel), emitted as is. The artist's face object and
  its materials are left alone.
- "FaceGraft Face": a scene of its own that renders the neural face and its passes (Cycles
  at one sample with a pixel-sized filter, so each pixel is exactly the swap's; Standard
  view transform; normal, depth and UV passes). It links the artist's collections as
  holdouts, so the artist's objects in front of the face cut it out. Its render settings
  are FaceGraft's; the artist's scene keeps its engine, samples, colour management, film
  and output.
- In the artist's scene: the face mesh's collection is a holdout in the scene's view
  layers, so the artist's objects behind the face are hidden by it.
- In the artist's compositor: the node group "FaceGraft Composite" (a group node they can
  move or mute) between their result and the output, the face scene's Render Layers node
  feeding it, and "FaceGraft EXR Layers" writing the multilayer EXR (plate, swap, matte,
  occlusion, final, normal, depth, uv) with paths relative to the .blend. Inside the group:
  Plate, the merge's image sequences, "Matte x Coverage", "Matte Erode", "Edge Blend",
  "Grain" (the plate's measured noise; not on Blender 4.2, which lacks the nodes), "Face
  Grade", then the face laid over the plate and the artist's render over both.
"""

from __future__ import annotations

import os
from pathlib import Path

import bpy

from ..common.errors import FaceGraftError
from ..common.merge_file import SEQUENCES, frame_path, load_merge_meta
from . import blender_compat as compat
from .build import CAMERA_NAME, COLLECTION, FACE_NAME, ROLE

FACE_SCENE = "FaceGraft Face"
NEURAL_FACE = "FaceGraft Neural Face"  # the object, its collection and its material
MATERIAL_NAME = NEURAL_FACE
TREE_NAME = "FaceGraft Composite"  # the node group
GROUP_NODE = "FaceGraft Composite"
FACE_RENDER_NODE = "FaceGraft Face Render"
EXR_NODE = "FaceGraft EXR Layers"
EXR_LAYERS = ("plate", "swap", "matte", "occlusion", "final", "normal", "depth", "uv")
EXR_KINDS = {"matte": "FLOAT", "occlusion": "FLOAT", "depth": "FLOAT", "normal": "VECTOR",
             "uv": "VECTOR"}
GROUP_INPUTS = (("Image", "NodeSocketColor"), ("Face", "NodeSocketColor"),
                ("Face Alpha", "NodeSocketFloat"))
GROUP_OUTPUTS = (("Image", "NodeSocketColor"), ("Plate", "NodeSocketColor"),
                 ("Swap", "NodeSocketColor"), ("Matte", "NodeSocketFloat"),
                 ("Occlusion", "NodeSocketFloat"))


def image_user(user, first_frame: int, frames: int) -> None:
    # File number = scene frame: Blender reads frame f as number f - start + 1 + offset.
    user.frame_start = first_frame
    user.frame_offset = first_frame - 1
    user.frame_duration = frames
    user.use_auto_refresh = True


def _sequence(path: Path, data: bool) -> bpy.types.Image:
    image = bpy.data.images.load(str(path), check_existing=False)
    image.source = "SEQUENCE"
    image[ROLE] = "merge"
    if data:
        image.colorspace_settings.name = "Non-Color"
    # The swap's alpha is its own layer: the colour must come through unmultiplied.
    image.alpha_mode = "CHANNEL_PACKED"
    return image


def merge_images(merge_folder: Path) -> tuple[dict, dict[str, bpy.types.Image]]:
    """The merge's meta and its swap, matte and occlusion sequences as Blender images (the
    previous ones FaceGraft loaded are removed)."""
    meta = load_merge_meta(merge_folder)
    for image in list(bpy.data.images):
        if image.get(ROLE) == "merge":
            bpy.data.images.remove(image)
    first = int(meta["first_scene_frame"])
    return meta, {kind: _sequence(frame_path(merge_folder, kind, first), data=kind != "swap")
                  for kind in SEQUENCES}


def _face_material(swap: bpy.types.Image, meta: dict) -> bpy.types.Material:
    material = bpy.data.materials.get(MATERIAL_NAME) or bpy.data.materials.new(MATERIAL_NAME)
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


def _neural_face(face: bpy.types.Object, material: bpy.types.Material) -> bpy.types.Object:
    """The copy of the face that wears the neural face, in its own collection."""
    collection = bpy.data.collections.get(NEURAL_FACE) or bpy.data.collections.new(NEURAL_FACE)
    old = bpy.data.objects.get(NEURAL_FACE)
    if old is not None:
        bpy.data.objects.remove(old)
    neural = face.copy()  # shares the mesh, the animation and the modifiers' settings
    neural.name = NEURAL_FACE
    neural[ROLE] = "neural_face"
    collection.objects.link(neural)
    if not neural.material_slots:
        neural.data.materials.append(None)  # a slot on the shared mesh, left empty
    neural.material_slots[0].link = "OBJECT"  # the artist's face keeps its own material
    neural.material_slots[0].material = material
    return neural


HOLDOUTS = "FaceGraft Holdouts"  # the artist's loose objects, as holdouts in the face scene


def _face_scene(scene: bpy.types.Scene) -> bpy.types.Scene:
    """The scene that renders the neural face: the camera, the neural face, and the artist's
    collections and loose objects as holdouts; FaceGraft's render settings."""
    face_scene = bpy.data.scenes.get(FACE_SCENE) or bpy.data.scenes.new(FACE_SCENE)
    face_scene[ROLE] = "face_scene"
    link_artist_objects(scene, face_scene)
    _face_render_settings(face_scene, scene)
    return face_scene


def link_artist_objects(scene: bpy.types.Scene, face_scene: bpy.types.Scene | None = None
                        ) -> None:
    """Give the face scene what the artist's scene holds now, as holdouts (objects added
    since the composite was set up too): run before every render."""
    face_scene = face_scene or bpy.data.scenes.get(FACE_SCENE)
    if face_scene is None or scene == face_scene:
        return
    root = face_scene.collection
    loose = bpy.data.collections.get(HOLDOUTS) or bpy.data.collections.new(HOLDOUTS)
    wanted = [c for c in scene.collection.children if c.name != COLLECTION]
    wanted += [loose, bpy.data.collections[NEURAL_FACE]]
    for child in list(root.children):
        if child not in wanted:
            root.children.unlink(child)
    for child in wanted:
        if child.name not in root.children:
            root.children.link(child)
    for obj in list(loose.objects):
        if obj.name not in scene.collection.objects:
            loose.objects.unlink(obj)
    for obj in scene.collection.objects:
        if obj.name not in loose.objects:
            loose.objects.link(obj)
    camera = bpy.data.objects[CAMERA_NAME]
    if camera.name not in root.objects:
        root.objects.link(camera)
    for child in face_scene.view_layers[0].layer_collection.children:
        child.holdout = child.name != NEURAL_FACE


def _face_render_settings(face_scene: bpy.types.Scene, scene: bpy.types.Scene) -> None:
    render = face_scene.render
    render.engine = "CYCLES"
    face_scene.cycles.device = "CPU"
    face_scene.cycles.samples = 1
    face_scene.cycles.use_adaptive_sampling = False
    face_scene.cycles.use_denoising = False
    face_scene.cycles.filter_width = 0.01  # sample the pixel centre: no texture filtering
    face_scene.cycles.seed = 0
    face_scene.cycles.max_bounces = 0
    render.film_transparent = True
    render.use_persistent_data = True
    face_scene.view_settings.view_transform = "Standard"
    face_scene.view_settings.look = "None"
    render.dither_intensity = 0.0
    render.resolution_x, render.resolution_y = scene.render.resolution_x, \
        scene.render.resolution_y
    render.resolution_percentage = scene.render.resolution_percentage
    render.fps, render.fps_base = scene.render.fps, scene.render.fps_base
    face_scene.frame_start, face_scene.frame_end = scene.frame_start, scene.frame_end
    face_scene.camera = bpy.data.objects[CAMERA_NAME]
    layer = face_scene.view_layers[0]
    layer.use_pass_z = layer.use_pass_normal = layer.use_pass_uv = True


class _Nodes:
    """Adds named, placed nodes to a tree."""

    def __init__(self, tree):
        self.tree, self.links = tree, tree.links

    def add(self, kind: str, name: str, x: int, y: int):
        return self._placed(self.tree.nodes.new(kind), name, x, y)

    def math(self, operation: str, name: str, x: int, y: int):
        return self._placed(compat.math_node(self.tree.nodes, operation), name, x, y)

    @staticmethod
    def _placed(node, name: str, x: int, y: int):
        node.name = node.label = name
        node.location = (x, y)
        return node


def _group_tree(images: dict, meta: dict, clip) -> bpy.types.NodeTree:
    """The node group "FaceGraft Composite": the face over the plate, the artist's render
    over both; every node named for an artist to find and tweak."""
    group = bpy.data.node_groups.get(TREE_NAME) or bpy.data.node_groups.new(
        TREE_NAME, "CompositorNodeTree")
    group[ROLE] = "composite"
    group.nodes.clear()
    # The sockets stay from one run to the next: the links of the artist's tree to the
    # group node hang on them.
    present = {(item.name, item.in_out) for item in group.interface.items_tree
               if item.item_type == "SOCKET"}
    for side, sockets in (("INPUT", GROUP_INPUTS), ("OUTPUT", GROUP_OUTPUTS)):
        for name, kind in sockets:
            if (name, side) not in present:
                group.interface.new_socket(name, in_out=side, socket_type=kind)
    add, links = _Nodes(group), group.links
    inputs = add.add("NodeGroupInput", "Inputs", -1100, 0)
    plate = add.add("CompositorNodeMovieClip", "Plate", -900, 300)
    plate.clip = clip
    sequences = {}
    for y, (kind, name) in zip((-400, -650, -900), (("swap", "Neural Face"), ("matte", "Matte"),
                                                    ("occlusion", "Occlusion")), strict=True):
        sequences[kind] = add.add("CompositorNodeImage", name, -900, y)
        sequences[kind].image = images[kind]
        image_user(sequences[kind], meta["first_scene_frame"], meta["frame_count"])
    matte = _matte_nodes(add, sequences["matte"], inputs.outputs["Face Alpha"])
    face = _grain(add, plate, inputs.outputs["Face"], float(meta.get("plate_grain", 0.0)))
    grade = add.add("CompositorNodeColorBalance", "Face Grade", -100, 0)
    compat.factor(grade).default_value = 1.0
    links.new(face, grade.inputs["Image"])
    with_matte = add.add("CompositorNodeSetAlpha", "Face With Matte", 100, 0)
    compat.set_replace_alpha(with_matte)
    links.new(grade.outputs["Image"], with_matte.inputs["Image"])
    links.new(matte, with_matte.inputs["Alpha"])
    over = add.add("CompositorNodeAlphaOver", "Face Over Plate", 300, 200)
    background, foreground = compat.alpha_over_inputs(over)
    links.new(plate.outputs["Image"], background)
    links.new(with_matte.outputs["Image"], foreground)
    render_over = add.add("CompositorNodeAlphaOver", "Render Over Face", 500, 200)
    background, foreground = compat.alpha_over_inputs(render_over, straight=False)
    links.new(over.outputs["Image"], background)
    links.new(inputs.outputs["Image"], foreground)  # the artist's render: premultiplied
    outputs = add.add("NodeGroupOutput", "Outputs", 750, 0)
    for name, socket in (("Image", render_over.outputs["Image"]),
                         ("Plate", plate.outputs["Image"]),
                         ("Swap", sequences["swap"].outputs["Image"]), ("Matte", matte),
                         ("Occlusion", _as_value(add, sequences["occlusion"].outputs["Image"],
                                                 "Occlusion Value", -700, -900))):
        links.new(socket, outputs.inputs[name])
    return group


def _matte_nodes(add: _Nodes, matte_image, coverage):
    """merge's matte x the face render's coverage (what the artist's objects leave of the
    face) -> "Matte Erode" -> "Edge Blend"; returns the matte socket."""
    covered = add.math("MULTIPLY", "Matte x Coverage", -600, -300)
    add.links.new(matte_image.outputs["Image"], covered.inputs[0])
    add.links.new(coverage, covered.inputs[1])
    erode = add.add("CompositorNodeDilateErode", "Matte Erode", -400, -300)
    compat.set_erode(erode, 0)  # negative shrinks, positive grows (pixels)
    add.links.new(covered.outputs["Value"], erode.inputs["Mask"])
    blend = add.add("CompositorNodeBlur", "Edge Blend", -200, -300)
    compat.set_blur(blend, 0.0)  # extra feather in pixels
    add.links.new(erode.outputs["Mask"], blend.inputs["Image"])
    return _as_value(add, blend.outputs["Image"], "Matte Value", -50, -300)


def _as_value(add: _Nodes, socket, name: str, x: int, y: int):
    """A single-channel copy of ``socket`` (Blender 4.x writes a colour socket into the
    EXR as RGBA even where the group's output is a value: a value the same everywhere)."""
    value = add.math("MAXIMUM", name, x, y)
    value.inputs[1].default_value = 0.0
    add.links.new(socket, value.inputs[0])
    return value.outputs["Value"]


def _grain(add: _Nodes, plate, face, level: float):
    """The face plus white noise per pixel and frame at the plate's measured noise level
    (the swap is smoother than the footage); returns the grained face's socket. Blender
    4.2's compositor has no noise nodes: there the face goes through as it is."""
    if not compat.HAS_NOISE_NODES:
        return face
    coords = add.add("CompositorNodeImageCoordinates", "Pixel", -900, -150)
    add.links.new(plate.outputs["Image"], coords.inputs["Image"])
    time = add.add("CompositorNodeSceneTime", "Frame", -900, -250)
    noise = add.add("ShaderNodeTexWhiteNoise", "Grain Noise", -700, -150)
    noise.noise_dimensions = "4D"
    add.links.new(coords.outputs["Pixel"], noise.inputs["Vector"])
    add.links.new(time.outputs["Frame"], noise.inputs["W"])
    centred = add.add("ShaderNodeVectorMath", "Grain Centre", -500, -150)
    centred.operation = "SUBTRACT"
    centred.inputs[1].default_value = (0.5, 0.5, 0.5)
    add.links.new(noise.outputs["Color"], centred.inputs[0])
    grain = add.add("ShaderNodeVectorMath", "Grain", -300, -150)
    grain.operation = "SCALE"
    # Uniform noise in [-0.5, 0.5] has deviation 1/sqrt(12): scale to the plate's.
    grain.inputs["Scale"].default_value = level * 12 ** 0.5
    add.links.new(centred.outputs["Vector"], grain.inputs[0])
    grained = add.add("ShaderNodeVectorMath", "Add Grain", -300, 0)
    grained.operation = "ADD"
    add.links.new(face, grained.inputs[0])
    add.links.new(grain.outputs["Vector"], grained.inputs[1])
    return grained.outputs["Vector"]


def _install(scene: bpy.types.Scene, group, face_scene, exr_directory: str) -> None:
    """The group node between the compositor's result and its output (once: later runs
    only update it), the face scene's Render Layers feeding it, the EXR layers node."""
    tree = compat.compositor_tree(scene)
    add = _Nodes(tree)
    output = compat.final_output(tree)
    group_node = tree.nodes.get(GROUP_NODE)
    if group_node is None:
        group_node = add.add("CompositorNodeGroup", GROUP_NODE, output.node.location.x,
                             output.node.location.y - 300)
        group_node.node_tree = group
        source = (output.links[0].from_socket if output.is_linked
                  else _artist_render(add, scene))
        add.links.new(source, group_node.inputs["Image"])
        add.links.new(group_node.outputs["Image"], output)
    group_node.node_tree = group
    face = tree.nodes.get(FACE_RENDER_NODE) or add.add(
        "CompositorNodeRLayers", FACE_RENDER_NODE, group_node.location.x - 300,
        group_node.location.y - 250)
    face.scene = face_scene
    add.links.new(face.outputs["Image"], group_node.inputs["Face"])
    add.links.new(face.outputs["Alpha"], group_node.inputs["Face Alpha"])
    exr = tree.nodes.get(EXR_NODE) or add.add("CompositorNodeOutputFile", EXR_NODE,
                                              group_node.location.x + 300,
                                              group_node.location.y - 250)
    layers = compat.exr_output(exr, exr_directory, "facegraft_######",
                               {name: EXR_KINDS.get(name, "RGBA") for name in EXR_LAYERS})
    sources = {"plate": group_node.outputs["Plate"], "swap": group_node.outputs["Swap"],
               "matte": group_node.outputs["Matte"],
               "occlusion": group_node.outputs["Occlusion"],
               "final": group_node.outputs["Image"], "normal": face.outputs["Normal"],
               "depth": face.outputs["Depth"], "uv": face.outputs["UV"]}
    for name, socket in layers.items():
        add.links.new(sources[name], socket)


def _artist_render(add: _Nodes, scene: bpy.types.Scene):
    """The artist scene's own render, for a compositor that had no result yet."""
    node = next((n for n in add.tree.nodes if n.bl_idname == "CompositorNodeRLayers"
                 and n.name != FACE_RENDER_NODE), None)
    if node is None:
        node = add.add("CompositorNodeRLayers", "Render Layers", -300, 0)
        node.scene = scene
    return node.outputs["Image"]


def blend_relative(folder: Path, blend_folder: Path | None) -> str:
    """A folder as Blender stores it: relative to the .blend's folder ("//...") when the
    .blend has one, so the shot folder can move or be mounted elsewhere."""
    if blend_folder is None:
        return str(Path(folder).resolve()) + "/"
    return "//" + os.path.relpath(Path(folder).resolve(), Path(blend_folder).resolve()) + "/"


def setup_composite(scene: bpy.types.Scene, merge_folder: Path, exr_folder: Path,
                    blend_folder: Path | None = None) -> dict:
    """Set the composite up in ``scene`` (see the module's docstring) for a .blend saved in
    ``blend_folder`` (None: not saved yet); returns the merge's meta. Only FaceGraft's own
    objects, scene and nodes are made or changed."""
    face = bpy.data.objects.get(FACE_NAME)
    where = bpy.data.filepath or "this scene"
    if face is None or bpy.data.objects.get(CAMERA_NAME) is None:
        raise FaceGraftError(f"{where}: no FaceGraft scene (run Build Scene first)")
    if scene.active_clip is None:
        raise FaceGraftError(f"{where}: the scene has no plate clip")
    # Blender renders a clip whose file is gone as black, without a word: the face would
    # be composited over nothing.
    video = Path(bpy.path.abspath(scene.active_clip.filepath))
    if not video.is_file():
        raise FaceGraftError(f"{video}: the plate's video, which {where} shows, is missing "
                             f"(moved or deleted?): put it back or run Build Scene again")
    if os.path.normpath(video) != str(video.resolve()):
        # The plate's folder is reached through a link (into another shot, say): Blender
        # rebases relative paths on save by collapsing ".." before the link, so the saved
        # shot would show a clip beside the link's folder, black. Its real place is kept.
        scene.active_clip.filepath = str(video.resolve())
    meta, images = merge_images(merge_folder)
    if (meta["width"], meta["height"]) != (scene.render.resolution_x, scene.render.resolution_y):
        raise FaceGraftError(f"{merge_folder}: merged at {meta['width']}x{meta['height']}, the "
                             f"scene renders {scene.render.resolution_x}x"
                             f"{scene.render.resolution_y}")
    _neural_face(face, _face_material(images["swap"], meta))
    face_scene = _face_scene(scene)
    for layer in scene.view_layers:  # the artist's objects behind the face are hidden by it
        graft = layer.layer_collection.children.get(COLLECTION)
        if graft is not None:
            graft.holdout = True
    _install(scene, _group_tree(images, meta, scene.active_clip), face_scene,
             blend_relative(exr_folder, blend_folder))
    return meta


@bpy.app.handlers.persistent
def _before_render(scene, *_args) -> None:
    # Objects the artist added since Composite was set up cut the face too.
    if bpy.data.scenes.get(FACE_SCENE) is not None:
        link_artist_objects(scene)


def register() -> None:
    if _before_render not in bpy.app.handlers.render_init:
        bpy.app.handlers.render_init.append(_before_render)


def unregister() -> None:
    if _before_render in bpy.app.handlers.render_init:
        bpy.app.handlers.render_init.remove(_before_render)
