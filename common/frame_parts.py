"""A stage's output made in frame chunks (farm tasks), then joined into exactly what one
run makes.

A chunk is a range of the shot's scene frames, FIRST-LAST both included (a farm's chunk;
scene frame = plate frame + 1, as in the built scene). A stage run with ``--chunk`` writes
only that chunk's rows, as a part: ``<output>.parts/<FIRST>-<LAST>/`` with its own
``meta.json`` naming the inputs key of the whole output. A chunk whose part is there,
whole and made from the same inputs, is skipped; a failed chunk leaves no part and reruns
alone. The same stage run without ``--chunk`` joins the parts when they cover every row
(their arrays concatenated, their frame files moved) instead of doing the work again, and
removes them once the joined output is in place.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import FaceGraftError
from .shot_layout import part_folder, parts_folder
from .stage_folders import partial_folder, replace_folder
from .stage_table import Part

PART_FORMAT = "facegraft.part"


def resolve_chunk(chunk: tuple[int, int] | Part, start: int, count: int,
                  where: Path) -> tuple[int, int]:
    """A chunk as scene frames: part K of N becomes its share of the footage's ``count``
    frames from ``start`` (about equal; together the N parts hold every frame once)."""
    if not isinstance(chunk, Part):
        return chunk
    first, end = count * (chunk.index - 1) // chunk.count, count * chunk.index // chunk.count
    if end <= first:
        raise FaceGraftError(f"{where}: part {chunk.index}/{chunk.count} of {count} frames is "
                             f"empty; use fewer parts")
    return start + first + 1, start + end


def chunk_span(chunk: tuple[int, int] | Part | None, start: int, count: int, where: Path
               ) -> tuple[tuple[int, int] | None, tuple[int, int]]:
    """A stage's chunk as scene frames (None: no chunk, the whole footage) and the footage
    rows it covers, FIRST:END (``start``: the footage's first frame, ``count``: its
    frames); refused when outside them."""
    if chunk is None:
        return None, (0, count)
    chunk = resolve_chunk(chunk, start, count, where)
    first, end = chunk[0] - 1 - start, chunk[1] - start
    if first < 0 or end > count:
        raise FaceGraftError(f"{where}: chunk {chunk[0]}-{chunk[1]} is outside the shot's "
                             f"scene frames {start + 1}-{start + count}")
    return chunk, (first, end)


def _part_meta(folder: Path) -> dict | None:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == PART_FORMAT else None


def part_is_done(output: Path, chunk: tuple[int, int], inputs_key: str,
                 complete: Callable[[Path], bool]) -> bool:
    folder = part_folder(output, chunk)
    meta = _part_meta(folder)
    return meta is not None and meta.get("inputs_key") == inputs_key and complete(folder)


def new_part(output: Path, chunk: tuple[int, int]) -> Path:
    """A fresh partial folder to write a chunk's part into."""
    parts_folder(output).mkdir(parents=True, exist_ok=True)
    return partial_folder(part_folder(output, chunk))


def write_part_meta(partial: Path, chunk: tuple[int, int], rows: tuple[int, int],
                    inputs_key: str, extra: dict | None = None) -> None:
    """What a part holds: the chunk, its rows, the whole output's inputs key and what the
    stage keeps for the join (``extra``)."""
    meta = {**(extra or {}), "format": PART_FORMAT, "inputs_key": inputs_key,
            "chunk": list(chunk), "rows": list(rows)}
    (partial / "meta.json").write_text(json.dumps(meta, indent=1))


def finish_part(partial: Path, output: Path, chunk: tuple[int, int], rows: tuple[int, int],
                inputs_key: str) -> Path:
    """Record what the part holds, then rename it into place."""
    write_part_meta(partial, chunk, rows, inputs_key)
    return replace_folder(partial, part_folder(output, chunk))


def covering_parts(output: Path, inputs_key: str, count: int,
                   complete: Callable[[Path], bool]) -> list[tuple[Path, dict]] | None:
    """The parts (folder, meta) made from ``inputs_key`` that together hold rows 0..count-1
    exactly once, in row order; None when they do not (then the stage does the work)."""
    folder = parts_folder(output)
    if not folder.is_dir():
        return None
    found = []
    for part in sorted(folder.iterdir()):
        meta = _part_meta(part)
        if meta is not None and meta.get("inputs_key") == inputs_key and complete(part):
            found.append((part, meta))
    found.sort(key=lambda item: item[1]["rows"][0])
    at, chosen = 0, []
    for part, meta in found:
        first, end = meta["rows"]
        if first == at:
            chosen.append((part, meta))
            at = end
    return chosen if chosen and at == count else None


def join_arrays(parts: list[tuple[Path, dict]], partial: Path, names: tuple[str, ...]) -> None:
    """Each array ``names`` of the parts, concatenated in row order into ``partial``."""
    for name in names:
        pieces = [np.load(part / f"{name}.npy", mmap_mode="r") for part, _ in parts]
        rows = sum(len(piece) for piece in pieces)
        out = np.lib.format.open_memmap(partial / f"{name}.npy", mode="w+",
                                        dtype=pieces[0].dtype, shape=(rows, *pieces[0].shape[1:]))
        at = 0
        for piece in pieces:
            out[at:at + len(piece)] = piece
            at += len(piece)
        out.flush()
        del out


def remove_parts(output: Path) -> None:
    """The parts, once the joined output is in place (or made whole another way)."""
    shutil.rmtree(parts_folder(output), ignore_errors=True)
