"""The differences between the Blender releases FaceGraft supports (4.2 LTS, 4.5 LTS, 5.0)
that the compositor set-up meets, in one place.

- The scene's compositor: 5.0 keeps it in ``scene.compositing_node_group`` (a node group
  ending in a Group Output); 4.x in ``scene.node_tree`` (``use_nodes``, a Composite node).
- Node options: 5.0 turned many into input sockets (menus: "Type"; "Size"), 4.x has them
  as node properties (``mode``, ``distance``, ``size_x``). Inputs were renamed ("Fac" to
  "Factor"; Alpha Over's "Image"/"Image" to "Background"/"Foreground").
- Math: 4.2's compositor has its own Math node; 4.5 and 5.0 use the shader Math node.
  4.2 has no Vector Math, White Noise or Image Coordinates node: no procedural grain.
- The File Output node: 5.0 has ``directory``, ``file_name`` and ``file_output_items``;
  4.x has ``base_path`` and ``layer_slots``.
- Render Layers nodes may sit inside node groups in 5.0 only.

Every function takes what the caller has (a node, a tree) and hides which release it is.
"""

from __future__ import annotations

import bpy

BLENDER_5 = bpy.app.version >= (5, 0, 0)
BLENDER_42 = bpy.app.version < (4, 3, 0)
HAS_NOISE_NODES = not BLENDER_42  # White Noise, Vector Math, Image Coordinates
OUTPUT_SOCKET = "Image"


def compositor_tree(scene: bpy.types.Scene, create: bool = True):
    """The scene's compositor node tree (made, with an output, when ``create``)."""
    if BLENDER_5:
        tree = scene.compositing_node_group
        if tree is None and create:
            tree = bpy.data.node_groups.new(f"{scene.name} Compositing", "CompositorNodeTree")
            tree.interface.new_socket(OUTPUT_SOCKET, in_out="OUTPUT",
                                      socket_type="NodeSocketColor")
            scene.compositing_node_group = tree
        return tree
    if create and not scene.use_nodes:
        scene.use_nodes = True  # 4.x makes its default Render Layers -> Composite tree
    return scene.node_tree


def final_output(tree):
    """The input socket the compositor's result goes into (made when missing)."""
    if BLENDER_5:
        node = next((n for n in tree.nodes if n.bl_idname == "NodeGroupOutput"), None)
        if node is None:
            node = tree.nodes.new("NodeGroupOutput")
        if not node.inputs or node.inputs[0].bl_idname == "NodeSocketVirtual":
            tree.interface.new_socket(OUTPUT_SOCKET, in_out="OUTPUT",
                                      socket_type="NodeSocketColor")
        return node.inputs[0]
    node = next((n for n in tree.nodes if n.bl_idname == "CompositorNodeComposite"), None)
    if node is None:
        node = tree.nodes.new("CompositorNodeComposite")
    return node.inputs["Image"]


def math_node(nodes, operation: str):
    node = nodes.new("CompositorNodeMath" if BLENDER_42 else "ShaderNodeMath")
    node.operation = operation
    return node


def _option(node, socket: str, prop: str, value, prop_value=None) -> None:
    """Set an option that 5.0 has as an input socket and 4.x as a property."""
    if socket in node.inputs and not node.inputs[socket].is_linked and \
            node.inputs[socket].type in ("MENU", "INT", "VALUE", "VECTOR", "BOOLEAN"):
        node.inputs[socket].default_value = value
    else:
        setattr(node, prop, value if prop_value is None else prop_value)


def set_erode(node, pixels: int) -> None:
    """A Dilate/Erode node in distance mode; negative pixels shrink, positive grow."""
    _option(node, "Type", "mode", "Distance", "DISTANCE")
    _option(node, "Size", "distance", int(pixels))


def set_blur(node, pixels: float) -> None:
    if "Size" in node.inputs and node.inputs["Size"].type == "VECTOR":
        node.inputs["Size"].default_value = (pixels, pixels)
    else:
        node.size_x = node.size_y = int(round(pixels))


def set_replace_alpha(node) -> None:
    _option(node, "Type", "mode", "Replace Alpha", "REPLACE_ALPHA")


def factor(node):
    """The Factor input of a node ("Fac" before 5.0)."""
    return node.inputs["Factor"] if "Factor" in node.inputs else node.inputs["Fac"]


def alpha_over_inputs(node, straight: bool = True) -> tuple:
    """(background, foreground) inputs of an Alpha Over node, set for a straight (or
    premultiplied) foreground."""
    if "Straight Alpha" in node.inputs:
        node.inputs["Straight Alpha"].default_value = straight
    else:
        node.use_premultiply = straight  # 4.2: convert a straight foreground first
    if "Background" in node.inputs:
        return node.inputs["Background"], node.inputs["Foreground"]
    return node.inputs[1], node.inputs[2]


def exr_output(node, directory: str, file_name: str, layers: dict[str, str]) -> dict:
    """Make a File Output node write one multilayer EXR per frame into ``directory`` as
    ``file_name`` (with #### for the frame), one layer per name of ``layers`` (name ->
    "RGBA", "FLOAT" or "VECTOR"); returns the layers' input sockets by name."""
    node.format.file_format = "OPEN_EXR_MULTILAYER"
    if hasattr(node.format, "media_type"):  # 5.0: the media type comes first
        node.format.media_type = "MULTI_LAYER_IMAGE"
        node.format.file_format = "OPEN_EXR_MULTILAYER"
    node.format.color_depth = "16"
    node.format.exr_codec = "ZIP"
    if BLENDER_5:
        node.directory = directory
        node.file_name = file_name
        node.file_output_items.clear()
        for name, kind in layers.items():
            node.file_output_items.new(kind, name)
        return {name: node.inputs[name] for name in layers}
    node.base_path = directory + file_name
    node.layer_slots.clear()
    for name in layers:
        node.layer_slots.new(name)
    return {name: node.inputs[name] for name in layers}
