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
        print("facegraft: interrupted; nothing was written", file=sys.stderr)
        return 130
