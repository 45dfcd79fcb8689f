"""``facegraft <stage> ...``: the command line over the worker library.

Every stage takes its inputs and a shot folder, writes atomically, and exits non-zero
with one line ``facegraft: error: <file>: <cause>`` when something is wrong.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from .common.errors import FaceGraftError
from .common.merge_modes import COLOR_MODES, MOUTH_MODES
from .common.progress import MODES


def _pick(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y in pixels, got {text!r}") from None
    return x, y


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facegraft", description=__doc__.splitlines()[0])
    stages = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")

    samples = stages.add_parser("samples", help="fetch the sample footage and models (DATA.md)")
    samples.add_argument("--identity-model", action="store_true",
                         help="also fetch dlib's face recognition models (100 MB, for eval)")

    track = stages.add_parser("track", help="track the face in a video into SHOT/track.npz")
    track.add_argument("video", type=Path, help="video file or folder of numbered images")
    track.add_argument("--shot", type=Path, required=True, help="shot folder to write into")
    track.add_argument("--start", type=int, default=0, help="first frame (default 0)")
    track.add_argument("--end", type=int, default=None, help="frame after the last (default: all)")
    track.add_argument("--pick", type=_pick, default=None, metavar="X,Y",
                       help="follow the face at this pixel of the first frame")
    track.add_argument("--faces", type=int, default=None,
                       help="how many faces MediaPipe looks for (default 1, or 4 with --pick)")
    track.add_argument("--workers", type=int, default=None,
                       help="tracking processes (default: 2, one per core)")
    track.add_argument("--force", action="store_true", help="track again even if up to date")
    track.add_argument("--progress", choices=MODES, default="bar",
                       help="bar (terminal), json (JSON lines on stdout) or none")

    build = stages.add_parser("build", help="build the Blender scene of a tracked shot")
    build.add_argument("--shot", type=Path, required=True, help="shot folder with track.npz")
    build.add_argument("--blend", type=Path, required=True, help="the .blend to write")
    build.add_argument("--plate", type=Path, default=None,
                       help="the plate footage (default: the video the track was made from)")

    transfer = stages.add_parser("transfer",
                                 help="give the plate's face mesh the source's face shape")
    transfer.add_argument("--source", type=Path, required=True, help="the source's shot folder")
    transfer.add_argument("--blend", type=Path, required=True, help="the plate's built .blend")

    guides = stages.add_parser("guides", help="render the guide passes of a built shot")
    guides.add_argument("--shot", type=Path, required=True, help="shot folder with track.npz")
    guides.add_argument("--blend", type=Path, required=True, help="the shot's .blend")
    guides.add_argument("--size", type=int, default=256, help="crop resolution (multiple of 64)")
    guides.add_argument("--shape-key", action="append", default=[], metavar="NAME",
                        help="also render with this shape key on, into guides_<R>_<name> "
                             "(e.g. 'Source Identity'); repeatable")
    guides.add_argument("--no-plate", action="store_true",
                        help="skip the plate's own shape (only the --shape-key variants)")
    guides.add_argument("--workers", type=int, default=None, help="Blender processes")
    guides.add_argument("--force", action="store_true")
    guides.add_argument("--progress", choices=MODES, default="bar")

    dataset = stages.add_parser("dataset", help="aligned crops, masks and guides for training")
    dataset.add_argument("--shot", type=Path, required=True)
    dataset.add_argument("--size", type=int, default=256)
    dataset.add_argument("--video", type=Path, default=None,
                         help="the footage (default: the video the track was made from)")
    dataset.add_argument("--force", action="store_true")
    dataset.add_argument("--progress", choices=MODES, default="bar")

    prepare = stages.add_parser("prepare",
                                help="build, guides and dataset of a tracked shot in one go")
    prepare.add_argument("--shot", type=Path, required=True)
    prepare.add_argument("--size", type=int, default=256)
    prepare.add_argument("--progress", choices=MODES, default="bar")

    train = stages.add_parser("train", help="train the swap model on a source and a target shot")
    train.add_argument("--source", type=Path, required=True, help="source shot folder")
    train.add_argument("--target", type=Path, required=True, help="target (plate) shot folder")
    train.add_argument("--run", type=Path, required=True, help="run folder for checkpoints")
    train.add_argument("--profile", default="cpu", help="tiny, cpu, gpu or hq")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=None,
                        help="train until the run has trained this long in all")
    length.add_argument("--steps", type=int, default=None,
                        help="train until the run has made this many steps in all")
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--checkpoint-every", type=int, default=200)
    train.add_argument("--preview-every", type=int, default=200)
    train.add_argument("--seed", type=int, default=1)
    train.add_argument("--source-frames", default=None, metavar="FIRST:END")
    train.add_argument("--target-frames", default=None, metavar="FIRST:END")
    train.add_argument("--no-guides", action="store_true",
                       help="the same network without CG guidance (the ablation)")
    train.add_argument("--resume", action="store_true",
                       help="continue from the run's last checkpoint")
    train.add_argument("--progress", choices=MODES, default="bar")

    swap = stages.add_parser("swap", help="render the target's frames as the source person")
    swap.add_argument("--run", type=Path, required=True)
    swap.add_argument("--target", type=Path, required=True, help="target (plate) shot folder")
    swap.add_argument("--frames", default=None, metavar="FIRST:END")
    swap.add_argument("--guides", default=None, metavar="SHAPE_KEY",
                      help="guides variant (default: 'Source Identity' when it exists)")
    swap.add_argument("--progress", choices=MODES, default="bar")

    merge = stages.add_parser("merge", help="swapped faces back in plate space with a matte")
    merge.add_argument("--target", type=Path, required=True, help="target (plate) shot folder")
    merge.add_argument("--swap", type=Path, required=True, help="the swap folder to merge")
    merge.add_argument("--color", choices=COLOR_MODES, default="meanstd",
                       help="colour matching in Lab (default meanstd: mean and deviation)")
    merge.add_argument("--erode", type=float, default=0.015,
                       help="matte erosion, fraction of the crop width")
    merge.add_argument("--feather", type=float, default=0.03,
                       help="matte feather, fraction of the crop width")
    merge.add_argument("--mouth", choices=MOUTH_MODES, default="swap",
                       help="the mouth interior from the swap or the plate")
    merge.add_argument("--force", action="store_true")
    merge.add_argument("--progress", choices=MODES, default="bar")

    composite = stages.add_parser("composite",
                                  help="composite the merged face over the plate in Blender")
    composite.add_argument("--plate-blend", type=Path, required=True,
                           help="the plate's built (and transferred) .blend")
    composite.add_argument("--merge", type=Path, required=True, help="the merge folder")
    composite.add_argument("--blend", type=Path, required=True,
                           help="the composite .blend to write; frames go beside it")
    composite.add_argument("--frames", default=None, metavar="FIRST:LAST",
                           help="scene frames to render (default: the whole shot)")
    composite.add_argument("--progress", choices=MODES, default="bar")

    run_all = stages.add_parser("run", help="every stage, from footage to the final shot")
    run_all.add_argument("--source", type=Path, required=True,
                         help="footage of the person whose face goes in")
    run_all.add_argument("--target", type=Path, required=True,
                         help="the plate: footage of the performer whose face is replaced")
    run_all.add_argument("--out", type=Path, required=True, help="the run's folder")
    run_all.add_argument("--profile", default="cpu", choices=("tiny", "cpu", "gpu", "hq"))
    run_length = run_all.add_mutually_exclusive_group()
    run_length.add_argument("--minutes", type=float, default=None,
                            help="training time (default: the profile's)")
    run_length.add_argument("--steps", type=int, default=None, help="training steps")
    run_all.add_argument("--frames", default=None, metavar="FIRST:END",
                         help="plate frames (default: all)")
    run_all.add_argument("--source-frames", default=None, metavar="FIRST:END",
                         help="source frames (default: all)")
    run_all.add_argument("--color", choices=COLOR_MODES, default="meanstd")
    run_all.add_argument("--mouth", choices=MOUTH_MODES, default="swap")
    run_all.add_argument("--progress", choices=MODES, default="bar")

    evaluation = stages.add_parser("eval", help="metrics of swapped faces as JSON")
    evaluation.add_argument("--target", type=Path, required=True)
    evaluation.add_argument("--swap", action="append", required=True, metavar="NAME=FOLDER",
                            help="a swap folder to score, named (repeatable)")
    evaluation.add_argument("--source", type=Path, default=None,
                            help="source shot (for the identity distances)")
    evaluation.add_argument("--self-reenactment", action="store_true",
                            help="the target is the source person: score SSIM/PSNR")
    evaluation.add_argument("--out", type=Path, required=True)

    preview = stages.add_parser("preview", help="draw a shot's track over its video")
    preview.add_argument("--shot", type=Path, required=True)
    preview.add_argument("--out", type=Path, required=True, help="output .mp4")
    preview.add_argument("--video", type=Path, default=None,
                         help="the footage (default: the path recorded in the track)")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.stage == "samples":
        from .common.samples import fetch_samples

        fetch_samples(include_optional=args.identity_model)
    elif args.stage == "track":
        from .ml.tracking import track_video

        path = track_video(args.video, args.shot, start=args.start, end=args.end,
                           pick=args.pick, num_faces=args.faces, workers=args.workers,
                           progress_mode=args.progress, force=args.force)
        if args.progress != "json":
            print(path)
    elif args.stage == "build":
        # Blender as a Python module: the same code the add-on's Build Scene runs.
        from .addon.build_stage import build_blend

        print(build_blend(args.shot, args.blend, plate=args.plate))
    elif args.stage == "transfer":
        from .addon.build_stage import transfer_blend

        print(transfer_blend(args.source, args.blend))
    elif args.stage == "guides":
        from .ml.guides import make_guides

        variants = ([] if args.no_plate else [None]) + args.shape_key
        for shape_key in variants:
            path = make_guides(args.shot, args.blend, size=args.size, shape_key=shape_key,
                               workers=args.workers, progress_mode=args.progress,
                               force=args.force)
            if args.progress != "json":
                print(path)
    elif args.stage == "dataset":
        from .ml.dataset import make_dataset

        path = make_dataset(args.shot, size=args.size, video=args.video,
                            progress_mode=args.progress, force=args.force)
        if args.progress != "json":
            print(path)
    elif args.stage == "prepare":
        from .addon.build_stage import build_blend
        from .ml.dataset import make_dataset
        from .ml.guides import make_guides

        blend = args.shot / "scene.blend"
        if not blend.is_file():
            build_blend(args.shot, blend)
        make_guides(args.shot, blend, size=args.size, progress_mode=args.progress)
        path = make_dataset(args.shot, size=args.size, progress_mode=args.progress)
        if args.progress != "json":
            print(path)
    elif args.stage == "train":
        from .ml.train import TrainOptions, train

        options = TrainOptions(
            profile=args.profile, batch_size=args.batch_size, steps=args.steps,
            minutes=args.minutes, checkpoint_every=args.checkpoint_every,
            preview_every=args.preview_every, seed=args.seed,
            source_frames=args.source_frames, target_frames=args.target_frames)
        path = train(args.source, args.target, args.run, options, resume=args.resume,
                     progress_mode=args.progress, use_guides=not args.no_guides)
        if args.progress != "json":
            print(path)
    elif args.stage == "swap":
        from .ml.swap import swap

        path = swap(args.run, args.target, frames=args.frames, variant=args.guides,
                    progress_mode=args.progress)
        if args.progress != "json":
            print(path)
    elif args.stage == "merge":
        from .ml.merge import MergeOptions, merge

        options = MergeOptions(color=args.color, erode=args.erode, feather=args.feather,
                               mouth=args.mouth)
        path = merge(args.target, args.swap, options, progress_mode=args.progress,
                     force=args.force)
        if args.progress != "json":
            print(path)
    elif args.stage == "composite":
        from .addon.composite_stage import composite, parse_scene_frames

        path = composite(args.plate_blend, args.merge, args.blend,
                         frames=parse_scene_frames(args.frames),
                         progress_mode=args.progress)
        if args.progress != "json":
            print(path)
    elif args.stage == "run":
        from .ml.pipeline import RunOptions, run_pipeline

        options = RunOptions(profile=args.profile, minutes=args.minutes, steps=args.steps,
                             frames=args.frames, source_frames=args.source_frames,
                             color=args.color, mouth=args.mouth)
        path = run_pipeline(args.source, args.target, args.out, options,
                            progress_mode=args.progress)
        if args.progress != "json":
            print(path)
    elif args.stage == "eval":
        from .ml.evaluate import evaluate

        swaps = {}
        for item in args.swap:
            name, _, folder = item.rpartition("=")
            swaps[name or Path(folder).name] = Path(folder)
        print(evaluate(args.target, swaps, args.out, args.self_reenactment, args.source))
    elif args.stage == "preview":
        from .ml.preview import write_track_preview

        print(write_track_preview(args.shot, args.out, video=args.video))
    return 0


def _terminate(signum, frame):  # noqa: ARG001
    # The add-on stops a worker with SIGTERM: unwind like Ctrl-C so that worker processes
    # are stopped and temporary files removed.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["guides-chunk"]:  # internal: one Blender process of 'guides'
        from .addon.guides_stage import run_chunk

        return _guarded(lambda: run_chunk(argv[1:]))
    args = build_parser().parse_args(argv)
    return _guarded(lambda: run(args))


def _guarded(work) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return work()
    except FaceGraftError as exc:
        print(f"facegraft: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("facegraft: interrupted; no partial output was left behind", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk, a read-only folder: say which file and why
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"facegraft: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
