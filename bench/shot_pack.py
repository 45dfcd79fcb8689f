"""Pack a shot's training data at one crop size into a small tar, and unpack it into a shot
folder elsewhere: the GPU machine ``bench/gpu.sh`` runs on has torch but no Blender, and
takes at most 64 MiB along, so the datasets are made here and travel compressed.

What travels: every ``--source-every``-th row of the source dataset and every
``--plate-every``-th of the plate's (a short split), the plate's source-shaped guides of
those rows (what the swap reads), and both textures (albedo, coverage, meta, the lighting
of those rows). Crops travel as JPEG (quality 95); every guide array is lossless: its
differences along rows and columns (wrapping, in its own integer type) compressed with
LZMA, a third of the raw size for the UV and normals. The mask is not carried: the dataset
stage writes it as the region's alpha, and so does unpack. Depth is not carried either:
neither training nor the model reads it (only the swap's consistency cue, which the
time-to-SSIM bench leaves out); unpacked, it holds zeros.

    python bench/shot_pack.py pack SHOT PACK.tar --size 256 [--source-every 7] [--plate-every 4]
    python bench/shot_pack.py unpack PACK.tar SHOT
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import shutil
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np

PER_FRAME = {"normals": ((3,), np.uint8), "uv": ((2,), np.uint16),
             "region": ((), np.uint8), "iris": ((), np.uint8)}
TEXTURE_FILES = ("albedo.png", "coverage.png")


def folders(size: int) -> dict[str, str]:
    """Each packed folder (relative to the shot) and which rows it takes."""
    return {f"source/dataset_{size}": "source", f"plate/dataset_{size}": "plate",
            f"plate/guides_{size}_source_identity": "plate",
            "source/texture": "source", "plate/texture": "plate"}


def differences(array: np.ndarray) -> np.ndarray:
    """Lossless: differences along rows and columns, wrapping in the array's own type."""
    zero = np.zeros((), array.dtype)
    return np.diff(np.diff(array, axis=1, prepend=zero), axis=2, prepend=zero)


def undone(diffs: np.ndarray) -> np.ndarray:
    return np.cumsum(np.cumsum(diffs, axis=2, dtype=diffs.dtype), axis=1, dtype=diffs.dtype)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def pack_frames(tar: tarfile.TarFile, folder: Path, name: str, rows: np.ndarray) -> None:
    """A dataset or guides folder's rows: crops as JPEG, guide arrays lossless."""
    meta = json.loads((folder / "meta.json").read_text())
    meta.update(frame_count=int(len(rows)), packed_from=meta["frame_count"],
                packed_every=int(rows[1] - rows[0]) if len(rows) > 1 else 1)
    _add(tar, f"{name}/meta.json", json.dumps(meta, indent=1).encode())
    for array in PER_FRAME:
        values = np.asarray(np.load(folder / f"{array}.npy", mmap_mode="r")[rows])
        _add(tar, f"{name}/{array}.xz", lzma.compress(differences(values).tobytes()))
    for array in ("crops", "present"):
        _add(tar, f"{name}/{array}.npy", _npy_bytes(np.load(folder / f"{array}.npy")[rows]))
    if (folder / "rgb.npy").is_file():
        rgb = np.load(folder / "rgb.npy", mmap_mode="r")
        for i, row in enumerate(rows):
            ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(rgb[row][..., ::-1]),
                                    [cv2.IMWRITE_JPEG_QUALITY, 95])
            _add(tar, f"{name}/rgb/{i:06d}.jpg", jpeg.tobytes())


def pack_texture(tar: tarfile.TarFile, folder: Path, name: str, rows: np.ndarray) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    meta.update(frame_count=int(len(rows)))
    _add(tar, f"{name}/meta.json", json.dumps(meta, indent=1).encode())
    for file in TEXTURE_FILES:
        _add(tar, f"{name}/{file}", (folder / file).read_bytes())
    _add(tar, f"{name}/lighting.npy", _npy_bytes(np.load(folder / "lighting.npy")[rows]))


def pack(shot: Path, out: Path, size: int, every: dict[str, int]) -> None:
    counts = {role: json.loads((shot / role / f"dataset_{size}" / "meta.json").read_text()
                               )["frame_count"] for role in every}
    rows = {role: np.arange(0, counts[role], every[role]) for role in every}
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w") as tar:
        for name, role in folders(size).items():
            if not (shot / name).is_dir():
                raise SystemExit(f"{shot / name}: missing; make the shot's {size} px data first")
            packer = pack_texture if name.endswith("texture") else pack_frames
            packer(tar, shot / name, name, rows[role])
    partial.replace(out)


def unpack_frames(members: dict[str, bytes], name: str, target: Path) -> None:
    meta = json.loads(members[f"{name}/meta.json"])
    n, size = meta["frame_count"], meta["resolution"]
    target.mkdir(parents=True, exist_ok=True)
    for array, (channels, dtype) in PER_FRAME.items():
        diffs = np.frombuffer(lzma.decompress(members[f"{name}/{array}.xz"]), dtype)
        np.save(target / f"{array}.npy", undone(diffs.reshape(n, size, size, *channels)))
    np.save(target / "depth.npy", np.zeros((n, size, size), np.float16))
    for array in ("crops", "present"):
        (target / f"{array}.npy").write_bytes(members[f"{name}/{array}.npy"])
    if f"{name}/rgb/000000.jpg" in members:
        rgb = np.stack([cv2.imdecode(np.frombuffer(members[f"{name}/rgb/{i:06d}.jpg"], np.uint8),
                                     cv2.IMREAD_COLOR)[..., ::-1] for i in range(n)])
        np.save(target / "rgb.npy", rgb)
        region = np.load(target / "region.npy")
        np.save(target / "mask.npy", np.where(region > 0, 255, 0).astype(np.uint8))
    (target / "meta.json").write_bytes(members[f"{name}/meta.json"])


def unpack(pack_file: Path, shot: Path) -> None:
    """Into ``SHOT.partial`` first, then each footage folder moved into ``shot``: a pack
    that fails half-way leaves nothing in the shot."""
    partial = shot.with_name(shot.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        _unpack_into(pack_file, partial)
        shot.mkdir(parents=True, exist_ok=True)
        for role in ("source", "plate"):
            (partial / role).replace(shot / role)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _unpack_into(pack_file: Path, shot: Path) -> None:
    with tarfile.open(pack_file, "r") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    size = json.loads(next(v for k, v in members.items() if k.startswith("source/dataset_")
                           and k.endswith("/meta.json")))["resolution"]
    for name in folders(size):  # only the names the pack's format has: no path from the tar
        target = shot / name
        if name.endswith("texture"):
            target.mkdir(parents=True, exist_ok=True)
            for file in (*TEXTURE_FILES, "lighting.npy", "meta.json"):
                (target / file).write_bytes(members[f"{name}/{file}"])
        else:
            unpack_frames(members, name, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    packing = verbs.add_parser("pack")
    packing.add_argument("shot", type=Path)
    packing.add_argument("pack", type=Path)
    packing.add_argument("--size", type=int, default=256)
    packing.add_argument("--source-every", type=int, default=7)
    packing.add_argument("--plate-every", type=int, default=4)
    unpacking = verbs.add_parser("unpack")
    unpacking.add_argument("pack", type=Path)
    unpacking.add_argument("shot", type=Path)
    args = parser.parse_args()
    if args.verb == "pack":
        pack(args.shot, args.pack, args.size,
             {"source": args.source_every, "plate": args.plate_every})
        print(f"packed {args.pack}: {args.pack.stat().st_size / 2**20:.1f} MiB")
    else:
        if any((args.shot / role).exists() for role in ("source", "plate")):
            sys.exit(f"{args.shot}: already holds footage folders; unpack into an empty one")
        try:
            unpack(args.pack, args.shot)
        except (OSError, tarfile.TarError, KeyError, StopIteration, ValueError) as error:
            sys.exit(f"{args.pack}: not a whole shot pack ({' '.join(str(error).split())})")
        print(f"unpacked {args.shot}")


if __name__ == "__main__":
    main()
