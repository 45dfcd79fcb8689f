"""The swap judged on the dev pairs: the figures of every pair and model variant, per frame
(in each shot's eval.json) and as a table (``out/quality/table.md``, printed).

    .venv/bin/python bench/quality.py [--steps 1500] [--pairs a,b] [--variants a,b]
                                      [--out out/quality]

Pairs (sample footage, see ``facegraft samples``):

- ``self``: self-reenactment, man A learnt from franck.mp4 frames 0-3999 and swapped onto
  his own frames 4000-4799 (the truth is the footage itself: SSIM);
- ``a_to_b``: man A onto man B (single_face.mp4: talking, smiling);
- ``a_to_c``: man A onto man C (carphone_pristine.mp4: tiny, low quality);
- ``a_to_b_hd``: man A onto man B at 960x540 (face_noface.mov frames 0-71: the face is
  larger than the model's crop: sharpness);
- ``occluded``: ``a_to_b_hd`` with synthetic occluders of known shape moving in front of
  the face (hands, bars and discs cut from man C's footage, a different clip than any the
  model learns from): the occlusion matte against the truth, and the plate's track against
  the same frames' track without the occluders (``track_error``, in inter-ocular distances).

Variants (``--variants``): the model's guide sets, the ablation: ``none``, ``mesh``,
``mesh+texture``, ``full`` (mesh, texture, eyes). Every variant of a pair shares the pair's
tracks, scenes, guides, datasets and textures (linked folders) and trains its own model.
The last line printed is the table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from facegraft.common.samples import sample_path
from facegraft.common.shot_layout import ShotLayout
from facegraft.common.track_file import Track, load_track
from facegraft.ml.evaluate import landmark_nme
from facegraft.ml.occluders import occluder_mask

VARIANTS = {"none": "none", "mesh": "mesh", "mesh+texture": "mesh,texture",
            "full": "mesh,texture,eyes"}
PAIRS = ("self", "a_to_b", "a_to_c", "a_to_b_hd", "occluded")
HD_FRAMES = 72  # face_noface.mov shows man B in frames 0-71, then a cartoon


def facegraft(*args, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "facegraft", *map(str, args)],
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SystemExit(f"facegraft {args[0]} failed: {result.stderr.strip()[-2000:]}")
    return result


def occluded_plate(out: Path) -> tuple[Path, Path]:
    """face_noface.mov frames 0-71 with occluders moving in front of the face in 60 % of
    the frames; the occluders' masks as truth (truth.npz, (N, H, W) uint8)."""
    out = out if out.name == "footage" else out / "footage"  # never inside a shot's folder
    video, truth_path = out / "occluded_plate.mp4", out / "occluded_truth.npz"
    if video.is_file() and truth_path.is_file():
        return video, truth_path
    out.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(str(sample_path("face_noface.mov")))
    donor = cv2.VideoCapture(str(sample_path("carphone_pristine.mp4")))
    rng = np.random.default_rng(2026)
    frames, masks = [], []
    shapes = [occluder_mask(rng, 540, kind) for kind in ("hand", "bar", "disc", "hand")]
    for index in range(HD_FRAMES):
        ok, frame = capture.read()
        ok_donor, texture = donor.read()
        if not ok or not ok_donor:
            raise SystemExit("could not read the sample footage")
        mask = np.zeros(frame.shape[:2], np.float32)
        if index % 5 != 0 and index % 5 != 3:  # 60 % of the frames
            shape = shapes[(index // 18) % len(shapes)]
            shift = int(240 + 120 * np.sin(index / 9))  # moves across the face
            mask[:, shift:shift + 540] = shape[:, :min(540, 960 - shift)]
        fill = cv2.resize(texture, (960, 540), interpolation=cv2.INTER_CUBIC)
        frames.append((frame * (1 - mask[..., None]) + fill * mask[..., None]).round()
                      .astype(np.uint8))
        masks.append((mask * 255).round().astype(np.uint8))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 24, (960, 540))
    for frame in frames:
        writer.write(frame)
    writer.release()
    np.savez_compressed(truth_path, masks=np.asarray(masks))
    return video, truth_path


def plate_of(pair: str, out: Path) -> tuple[Path, list[str]]:
    """The plate footage of a cross-identity pair and its frame range arguments."""
    if pair == "a_to_b":
        return sample_path("single_face.mp4"), []
    if pair == "a_to_c":
        return sample_path("carphone_pristine.mp4"), []
    if pair == "a_to_b_hd":
        return sample_path("face_noface.mov"), ["--plate-frames", f"0:{HD_FRAMES}"]
    return occluded_plate(out)[0], []


def prepare_self(shot: Path, steps: int, guides: str) -> None:
    """Self-reenactment: the source and the plate are two parts of franck.mp4."""
    franck = sample_path("franck.mp4")
    for role, frames in (("source", ("--end", "4000")), ("plate", ("--start", "4000"))):
        facegraft("track", franck, "--shot", shot, "--role", role, *frames, "--progress",
                  "none")
        facegraft("build", "--shot", shot, "--role", role)
    facegraft("transfer", "--shot", shot)
    for role in ("source", "plate"):
        for stage in ("guides", "dataset", "texture"):
            facegraft(stage, "--shot", shot, "--role", role, "--size", 128, "--progress",
                      "none")
    train_and_judge(shot, steps, guides, self_reenactment=True)


def train_and_judge(shot: Path, steps: int, guides: str, self_reenactment: bool) -> None:
    facegraft("train", "--shot", shot, "--profile", "cpu", "--steps", steps, "--guides",
              guides, "--resume", "--progress", "none")
    for stage in ("swap", "merge", "composite"):
        facegraft(stage, "--shot", shot, "--profile", "cpu", "--progress", "none")
    facegraft("eval", "--shot", shot, "--profile", "cpu",
              *(["--self-reenactment"] if self_reenactment else []))


def run_variant(pair: str, variant: str, first: Path | None, out: Path, steps: int) -> Path:
    """One model of one pair; footage folders linked from the pair's first variant."""
    shot = out / pair / variant
    guides = VARIANTS[variant]
    if first is not None and not shot.exists():
        shot.mkdir(parents=True)
        for role in ("plate", "source"):
            (shot / role).symlink_to(ShotLayout(first).footage(role).path.resolve())
    if first is None and pair == "self":
        prepare_self(shot, steps, guides)
    elif first is None:
        plate, frames = plate_of(pair, out)
        facegraft("run", "--source", sample_path("franck.mp4"), "--plate", plate, "--shot",
                  shot, "--profile", "cpu", "--steps", steps, "--guides", guides, *frames,
                  "--progress", "none")
    else:
        train_and_judge(shot, steps, guides, pair == "self")
    return shot


def occlusion_figures(shot: Path, truth_path: Path) -> dict:
    """IoU of the occlusion matte with the pasted occluders, on the face, and how much the
    merged frames changed the occluders' pixels."""
    truth = np.load(truth_path)["masks"] > 127
    merge = ShotLayout(shot).merge("cpu")
    ious, changed = [], []
    capture = cv2.VideoCapture(str(occluded_plate(truth_path.parent)[0]))
    for row in range(len(truth)):
        ok, plate = capture.read()
        name = f"{row + 1:06d}.png"
        occlusion = cv2.imread(str(merge / "occlusion" / f"occlusion_{name}"), 0)
        swap = cv2.imread(str(merge / "swap" / f"swap_{name}"), cv2.IMREAD_UNCHANGED)
        matte = cv2.imread(str(merge / "matte" / f"matte_{name}"), 0)
        if not ok or occlusion is None or swap is None or matte is None:
            continue
        face = cv2.dilate((swap[..., 3] > 0).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        predicted, true = (occlusion > 127) & face, truth[row] & face
        if true.sum() > 200:
            ious.append((predicted & true).sum() / max((predicted | true).sum(), 1))
            m = matte[..., None].astype(np.float32) / 255
            merged = plate * (1 - m) + swap[..., :3] * m
            changed.append(float(np.abs(merged - plate).max(axis=2)[true].mean()))
    return {"occlusion_iou": float(np.mean(ious)) if ious else None,
            "occluder_change": float(np.mean(changed)) if changed else None,
            "occluded_frames": len(ious)}


def clean_plate_track(out: Path) -> Track:
    """face_noface.mov frames 0-71 (the occluded plate's frames before the occluders) tracked
    as a plate of their own."""
    shot = out / "footage" / "clean_plate"
    facegraft("track", sample_path("face_noface.mov"), "--shot", shot, "--role", "plate",
              "--end", HD_FRAMES, "--progress", "none")
    return load_track(ShotLayout(shot).plate.track)


def track_error(track: Track, truth: Track) -> np.ndarray:
    """Per frame, the mean distance of the filtered mesh landmarks from the truth's, over the
    truth's inter-ocular distance (NaN where either lacks the face)."""
    rows = min(len(track.present), len(truth.present))
    return landmark_nme(track.landmarks[:rows], truth.landmarks[:rows])


def figures(shot: Path, pair: str, out: Path) -> dict:
    metrics = json.loads(ShotLayout(shot).eval_report.read_text())["metrics"]
    if pair == "occluded":
        metrics.update(occlusion_figures(shot, occluded_plate(out)[1]))
        # The occluders bend the plate's track too: how far, against the clean frames'.
        error = track_error(load_track(ShotLayout(shot).plate.track), clean_plate_track(out))
        metrics["track_error"] = float(np.nanmean(error))
    return metrics


COLUMNS = (("recognised", "recognised", "{:.0%}"), ("closer_to_source", "closer", "{:.0%}"),
           ("identity_distance_to_source", "dist A", "{:.3f}"),
           ("landmark_nme", "NME", "{:.4f}"), ("jitter_ratio", "jitter", "{:.2f}"),
           ("eye_openness_error", "eyes", "{:.3f}"),
           ("eye_openness_correlation", "eyes corr.", "{:.2f}"), ("gaze_error", "gaze", "{:.3f}"),
           ("mouth_openness_error", "mouth", "{:.3f}"),
           ("ssim", "SSIM", "{:.3f}"), ("ssim_model", "SSIM model", "{:.3f}"),
           ("sharpness_ratio", "sharpness", "{:.2f}"),
           ("sharpness_ratio_merged", "sharpness w/o grain", "{:.2f}"),
           ("occlusion_iou", "occl. IoU", "{:.2f}"),
           ("occluder_change", "occluder diff", "{:.1f}"),
           ("track_error", "track err.", "{:.4f}"))


def table(results: dict) -> str:
    lines = ["| pair | variant | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for (pair, variant), metrics in results.items():
        cells = [fmt.format(metrics[key]) if metrics.get(key) is not None else "-"
                 for key, _, fmt in COLUMNS]
        lines.append(f"| {pair} | {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--pairs", default=",".join(PAIRS))
    parser.add_argument("--variants", default="full,mesh+texture,mesh,none")
    parser.add_argument("--ablate", default="self,a_to_b",
                        help="pairs that run every variant (the others run only the first)")
    parser.add_argument("--out", type=Path, default=Path("out/quality"))
    args = parser.parse_args()
    results = {}
    for pair in args.pairs.split(","):
        variants = args.variants.split(",")
        if pair not in args.ablate.split(","):
            variants = variants[:1]
        first = None
        for variant in variants:
            shot = run_variant(pair, variant, first, args.out, args.steps)
            first = first or shot
            results[(pair, variant)] = figures(shot, pair, args.out)
            print(f"{pair} {variant}: {json.dumps(results[(pair, variant)])}", flush=True)
    text = table(results)
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
