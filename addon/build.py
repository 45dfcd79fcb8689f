"""Build Scene: a track becomes a Blender scene (camera, plate, animated face mesh); one
call for the panel (into the open scene) and the command lines (into the footage's
scene.blend).

What is made, all inside the "FaceGraft" collection and tagged with the custom property
``facegraft_role`` so a rebuild replaces only what FaceGraft made:

- "FaceGraft Camera": the track's pinhole camera (focal length, principal point, plate
  resolution), looking along +Y with Z up, the plate as its background movie clip.
- "FaceGraft Face": the canonical face mesh (468 vertices, 898 triangles, UVs, region
  vertex groups) parented to the camera. Its transform is the head matrix (animated
  location + quaternion, one key per frame); the 52 blendshapes are animated custom
  properties with MediaPipe/ARKit names; frames without a face hide the mesh.
- "FaceGraft Performance": a hidden copy of the face mesh whose Mesh Cache modifier
  ("FaceGraft Shape") plays each frame's tracked shape (identity + expression) from a PC2
  point cache in the footage folder, so the .blend holds no per-vertex keyframes. The face's
  Geometry Nodes modifier ("FaceGraft Performance") adds that frame's offset from the rest
  shape on top of the face's own shape keys, so a shape key (the source identity, an
  artist's sculpt) carries through the whole performance. (The Mesh Cache's own
  INTEGRATE mode does this per polygon in tangent space and explodes on the degenerate
  triangles that close the mouth and eyes when they shut.)

Scene frame f shows video frame f - 1 (Blender counts from 1, the video from 0).
Units: metres (the track's centimetres / 100).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import bpy
import numpy as np

from ..common.canonical_mesh import NUM_MESH_VERTICES, load_canonical_mesh
from ..common.errors import FaceGraftError
from ..common.face_regions import region_vertices
from ..common.file_checks import blend_is_complete
from ..common.head_pose import matrix_to_quat_trans, neutral_shape
from ..common.point_cache import pc2_is_complete, write_pc2
from ..common.samples import sha256_of
from ..common.shot_layout import FootageFolder, ShotLayout
from ..common.stage_table import revision
from ..common.track_file import Track, load_track
from .blend_file import save_blend_atomic

COLLECTION = "FaceGraft"
CAMERA_NAME = "FaceGraft Camera"
FACE_NAME = "FaceGraft Face"
PERFORMANCE_NAME = "FaceGraft Performance"
REST_ATTRIBUTE = "facegraft_rest"
CM_TO_M = 0.01
SENSOR_HEIGHT_MM = 24.0
ROLE = "facegraft_role"
BUILD_KEY = "facegraft_build_key"  # scene property: build_key() of what was built


def _hold_absent(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Fill absent frames with the nearest earlier present frame (the first present one
    before it): Blender needs a value every frame; the mesh is hidden on those frames."""
    index = np.where(present, np.arange(len(present)), -1)
    index = np.maximum.accumulate(index)
    first = int(np.argmax(present))
    index[index < 0] = first
    return values[index]


def _fcurves(id_data: bpy.types.ID, name: str):
    """A fresh action on ``id_data`` and the collection its F-curves go in (slotted
    actions since Blender 4.4; ``action.fcurves`` before)."""
    anim = id_data.animation_data_create()
    action = bpy.data.actions.new(name)
    anim.action = action
    if hasattr(action, "slots"):
        slot = action.slots.new(id_type=id_data.id_type, name=id_data.name)
        anim.action_slot = slot
        layer = action.layers.new("Layer")
        strip = layer.strips.new(type="KEYFRAME")
        return strip.channelbag(slot, ensure=True).fcurves
    return action.fcurves


def _keys(fcurves, data_path: str, index: int, frames: np.ndarray, values: np.ndarray,
          interpolation: str = "LINEAR", group: str | None = None) -> None:
    curve = fcurves.new(data_path, index=index)
    if group:
        curve.group = curve.group or None
    points = curve.keyframe_points
    points.add(len(frames))
    points.foreach_set("co", np.column_stack([frames, values]).astype(np.float32).ravel())
    enum = {"CONSTANT": 0, "LINEAR": 1, "BEZIER": 2}[interpolation]
    points.foreach_set("interpolation", np.full(len(frames), enum, np.int32))
    curve.update()


def _remove_previous_build(scene: bpy.types.Scene) -> bpy.types.Collection:
    collection = bpy.data.collections.get(COLLECTION)
    if collection is None:
        collection = bpy.data.collections.new(COLLECTION)
    if collection.name not in scene.collection.children:
        scene.collection.children.link(collection)
    for obj in list(collection.objects):
        if ROLE in obj:  # only what FaceGraft made; an artist's own objects stay
            data = obj.data
            bpy.data.objects.remove(obj)
            if data is not None and data.users == 0:
                if isinstance(data, bpy.types.Mesh):
                    bpy.data.meshes.remove(data)
                elif isinstance(data, bpy.types.Camera):
                    bpy.data.cameras.remove(data)
    for group in list(bpy.data.node_groups):
        if ROLE in group and group.users == 0:
            bpy.data.node_groups.remove(group)
    return collection


def _setup_scene(scene: bpy.types.Scene, track: Track) -> None:
    meta = track.meta
    scene.render.resolution_x = int(meta["width"])
    scene.render.resolution_y = int(meta["height"])
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    fps = float(meta["fps"])
    scene.render.fps = max(1, round(fps))
    scene.render.fps_base = scene.render.fps / fps
    start = int(meta["start"])
    scene.frame_start = start + 1
    scene.frame_end = start + track.frame_count
    scene.frame_current = scene.frame_start
    # The plate is the camera's background, not part of the render: what the scene renders
    # is laid over the plate in the compositor.
    scene.render.film_transparent = True


def _make_camera(scene, collection, track: Track, plate: Path | None) -> bpy.types.Object:
    intr = track.intrinsics
    data = bpy.data.cameras.new(CAMERA_NAME)
    data.sensor_fit = "VERTICAL"
    data.sensor_height = SENSOR_HEIGHT_MM
    data.lens = intr.focal_px * SENSOR_HEIGHT_MM / intr.height
    largest = max(intr.width, intr.height)
    data.shift_x = (intr.width / 2 - intr.cx) / largest
    data.shift_y = (intr.cy - intr.height / 2) / largest
    data.clip_start = 0.01
    data.clip_end = 100.0
    camera = bpy.data.objects.new(CAMERA_NAME, data)
    camera[ROLE] = "camera"
    camera.rotation_euler = (math.pi / 2, 0.0, 0.0)  # camera space -> Z-up world, looking +Y
    collection.objects.link(camera)
    scene.camera = camera
    if plate is not None:
        clip = bpy.data.movieclips.load(str(plate), check_existing=True)
        clip.frame_start = 1
        scene.active_clip = clip
        background = data.background_images.new()
        background.source = "MOVIE_CLIP"
        background.clip = clip
        background.alpha = 1.0
        data.show_background_images = True
    return camera


def _make_face_mesh(track: Track, neutral_m: np.ndarray) -> bpy.types.Mesh:
    canonical = load_canonical_mesh()
    mesh = bpy.data.meshes.new(FACE_NAME)
    mesh.vertices.add(NUM_MESH_VERTICES)
    mesh.vertices.foreach_set("co", neutral_m.astype(np.float32).ravel())
    triangles = canonical.triangles
    mesh.loops.add(triangles.size)
    mesh.loops.foreach_set("vertex_index", triangles.astype(np.int32).ravel())
    mesh.polygons.add(len(triangles))
    mesh.polygons.foreach_set("loop_start", np.arange(0, triangles.size, 3, dtype=np.int32))
    mesh.update(calc_edges=True)
    uv_layer = mesh.uv_layers.new(name="UVMap")
    uv_layer.data.foreach_set("uv", canonical.uvs[triangles.ravel()].astype(np.float32).ravel())
    mesh.validate()
    return mesh


def checked_inputs(footage: FootageFolder, video: Path | None) -> tuple[Track, Path]:
    """Load the footage's track and make sure ``video`` is the video it was made from.
    Nothing is touched before this has passed."""
    track = load_track(footage.track)
    video = Path(video) if video else Path(track.meta["video"])
    if not video.exists():
        raise FaceGraftError(f"{video}: footage not found")
    if video.is_file() and sha256_of(video) != track.meta.get("video_sha256"):
        raise FaceGraftError(f"{video}: not the video {footage.track} was tracked from; "
                             f"track it again")
    return track, video


def build_into_scene(scene: bpy.types.Scene, shot: Path, role: str = "plate",
                     video: Path | None = None) -> dict[str, bpy.types.Object]:
    """Build Scene in an open Blender file (the panel)."""
    footage = ShotLayout(shot).footage(role)
    track, video = checked_inputs(footage, video)
    built = build_scene(scene, track, footage, video)
    scene[BUILD_KEY] = build_key(footage, video)
    return built


def build_key(footage: FootageFolder, video: Path) -> str:
    """What a built scene is made from: the track file and the footage."""
    return hashlib.sha256(json.dumps([sha256_of(footage.track), str(Path(video).resolve()),
                                      revision("build")]).encode()).hexdigest()


def build_blend(shot: Path, role: str = "plate", video: Path | None = None) -> Path:
    """Build Scene into the footage's scene.blend, written atomically (the command lines).
    A scene.blend built from the same track and footage is left as it is (an artist's
    sculpt of it too)."""
    footage = ShotLayout(shot).footage(role)
    track, video = checked_inputs(footage, video)
    key = build_key(footage, video)
    if blend_is_complete(footage.scene) and pc2_is_complete(footage.point_cache):
        bpy.ops.wm.open_mainfile(filepath=str(footage.scene), load_ui=False)
        if bpy.context.scene.get(BUILD_KEY) == key:
            return footage.scene
    bpy.ops.wm.read_homefile(use_empty=True)  # keeps preferences and add-ons enabled
    build_scene(bpy.context.scene, track, footage, video)
    _new_scene_render_settings(bpy.context.scene)
    bpy.context.scene[BUILD_KEY] = key
    return save_blend_atomic(footage.scene)


def _new_scene_render_settings(scene: bpy.types.Scene) -> None:
    """A scene FaceGraft makes from nothing renders the plate's look: no view transform,
    8-bit PNG frames, and little to render itself (the face has its own scene, see
    composite_scene.py): Cycles at one sample. An artist may change any of it."""
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.cycles.device = "CPU"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.render.dither_intensity = 0.0
    settings = scene.render.image_settings
    settings.file_format = "PNG"
    settings.color_mode = "RGB"
    settings.color_depth = "8"


def build_scene(scene: bpy.types.Scene, track: Track, footage: FootageFolder,
                plate: Path | None = None) -> dict[str, bpy.types.Object]:
    """Build (or rebuild) the FaceGraft objects of ``scene`` from ``track``.

    Writes the footage's point cache; the Mesh Cache modifier points at it with an
    absolute path, which saving with ``relative_remap`` makes relative to the .blend.
    """
    present = track.present
    if not present.any():
        raise FaceGraftError(f"{footage.track}: the track has no frame with a face")
    frames = np.arange(track.frame_count, dtype=np.float64) + int(track.meta["start"]) + 1

    shapes_m = _hold_absent(track.metric_landmarks[:, :NUM_MESH_VERTICES], present) * CM_TO_M
    neutral_m = neutral_shape(shapes_m, track.blendshapes, track.meta["blendshape_names"],
                              present)
    write_pc2(footage.point_cache, shapes_m)

    _setup_scene(scene, track)
    collection = _remove_previous_build(scene)
    camera = _make_camera(scene, collection, track, plate)

    face = bpy.data.objects.new(FACE_NAME, _make_face_mesh(track, neutral_m))
    face[ROLE] = "face"
    collection.objects.link(face)
    face.parent = camera
    face.rotation_mode = "QUATERNION"
    for name, indices in region_vertices(load_canonical_mesh().uvs).items():
        face.vertex_groups.new(name=name).add(indices.tolist(), 1.0, "REPLACE")
    performance = _make_performance(face, collection, footage.point_cache, float(frames[0]))

    quats, trans = matrix_to_quat_trans(_hold_absent(track.head_matrix, present))
    curves = _fcurves(face, "FaceGraft Face Action")
    for axis in range(3):
        _keys(curves, "location", axis, frames, trans[:, axis] * CM_TO_M)
    for axis in range(4):
        _keys(curves, "rotation_quaternion", axis, frames, quats[:, axis])
    shapes = _hold_absent(track.blendshapes, present)
    for k, name in enumerate(track.meta["blendshape_names"]):
        face[name] = 0.0
        _keys(curves, f'["{name}"]', 0, frames, shapes[:, k])
    # Hide the mesh where there is no face: keys only where presence changes.
    changes = np.flatnonzero(np.diff(present.astype(np.int8))) + 1
    key_rows = np.concatenate([[0], changes])
    for path in ("hide_viewport", "hide_render"):
        _keys(curves, path, 0, frames[key_rows], (~present[key_rows]).astype(np.float64),
              interpolation="CONSTANT")
    scene["facegraft_track_sha256"] = track.meta.get("video_sha256", "")
    return {"camera": camera, "face": face, "performance": performance}


def _make_performance(face: bpy.types.Object, collection: bpy.types.Collection,
                      cache_path: Path, first_frame: float) -> bpy.types.Object:
    """The hidden object playing the point cache and the face's modifier adding its
    per-frame offset from the rest shape (see the module's docstring)."""
    rest = face.data.attributes.new(REST_ATTRIBUTE, "FLOAT_VECTOR", "POINT")
    coordinates = np.empty(len(face.data.vertices) * 3, np.float32)
    face.data.vertices.foreach_get("co", coordinates)
    rest.data.foreach_set("vector", coordinates)
    mesh = face.data.copy()
    mesh.name = PERFORMANCE_NAME
    performance = bpy.data.objects.new(PERFORMANCE_NAME, mesh)
    performance[ROLE] = "performance"
    collection.objects.link(performance)
    performance.parent = face
    performance.hide_viewport = performance.hide_render = True
    performance.hide_select = True
    cache = performance.modifiers.new("FaceGraft Shape", "MESH_CACHE")
    cache.cache_format = "PC2"
    cache.filepath = str(Path(cache_path).resolve())
    cache.time_mode = "FRAME"
    cache.play_mode = "SCENE"
    cache.frame_start = first_frame
    cache.interpolation = "LINEAR"
    cache.deform_mode = "OVERWRITE"
    modifier = face.modifiers.new(PERFORMANCE_NAME, "NODES")
    modifier.node_group = _performance_nodes(performance)
    return performance


def _performance_nodes(performance: bpy.types.Object) -> bpy.types.NodeTree:
    """position += cached position of the same vertex - rest position."""
    group = bpy.data.node_groups.new(PERFORMANCE_NAME, "GeometryNodeTree")
    group.is_modifier = True
    group[ROLE] = "performance"
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = group.nodes, group.links
    group_in = nodes.new("NodeGroupInput")
    group_out = nodes.new("NodeGroupOutput")
    info = nodes.new("GeometryNodeObjectInfo")
    info.transform_space = "ORIGINAL"
    info.inputs["Object"].default_value = performance
    sample = nodes.new("GeometryNodeSampleIndex")
    sample.data_type = "FLOAT_VECTOR"
    sample.domain = "POINT"
    rest = nodes.new("GeometryNodeInputNamedAttribute")
    rest.data_type = "FLOAT_VECTOR"
    rest.inputs["Name"].default_value = REST_ATTRIBUTE
    offset = nodes.new("ShaderNodeVectorMath")
    offset.operation = "SUBTRACT"
    set_position = nodes.new("GeometryNodeSetPosition")
    links.new(info.outputs["Geometry"], sample.inputs["Geometry"])
    links.new(nodes.new("GeometryNodeInputPosition").outputs["Position"], sample.inputs["Value"])
    links.new(nodes.new("GeometryNodeInputIndex").outputs["Index"], sample.inputs["Index"])
    links.new(sample.outputs["Value"], offset.inputs[0])
    links.new(rest.outputs["Attribute"], offset.inputs[1])
    links.new(group_in.outputs["Geometry"], set_position.inputs["Geometry"])
    links.new(offset.outputs["Vector"], set_position.inputs["Offset"])
    links.new(set_position.outputs["Geometry"], group_out.inputs["Geometry"])
    for x, node in enumerate((info, sample, offset, set_position, group_out)):
        node.location = (x * 220, 0)
    return group
