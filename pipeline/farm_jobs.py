"""Farm jobs of a shot, made from the stage table's plan: an Open Job Description template
(what AWS Deadline Cloud runs; ``openjd run`` runs it locally) and a Flamenco job type (the
JavaScript job compiler Flamenco loads from its ``scripts/`` folder).

Each step of ``facegraft run``'s plan is one task running ``blender -b -c facegraft
<stage> ...`` (the command that runs worker stages in the node's worker Python and Blender
stages in that Blender). The plate's tracking, guides, dataset, swap and merge are one task
per chunk of frames (``--chunk``), the source's tracking, guides and dataset one task per
part (``--chunk K/N``, ``SourceParts`` equal parts), each then one joining task (the same
command without a chunk). Composite is a set-up task then one task per chunk of frames.
Train asks for a GPU worker. ``facegraft farm-jobs FOLDER`` writes both files; the copies
in the repository's ``farm/`` folder are these, and a test keeps them so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..common.atomic import write_bytes_atomic
from ..common.profiles import PROFILE_NAMES
from ..common.stage_table import STAGES_BY_NAME, ShotSettings, shot_plan

OPENJD_FILE = "openjd/facegraft.json"
FLAMENCO_FILE = "flamenco/facegraft.js"
_FLAMENCO_TEMPLATE = Path(__file__).with_name("flamenco_job_type.js")
_PROFILE_TOKEN = "{profile}"  # the plan is made for a stand-in profile, named here

# The job's settings: (name, the plan's stand-in value, OpenJD definition).
SETTINGS = {
    "shot": ("{shot}", {"type": "PATH", "objectType": "DIRECTORY", "dataFlow": "INOUT",
                        "description": "the shot folder (shared storage every node sees)"}),
    "plate": ("{plate}", {"type": "PATH", "dataFlow": "IN", "description":
                          "the plate: a video or a folder of numbered images"}),
    "source": ("{source}", {"type": "PATH", "dataFlow": "IN", "description":
                            "footage of the person whose face goes in"}),
    "plate_start": ("{plate_start}", {"type": "INT", "default": 0, "minValue": 0,
                                      "description": "the plate's first frame (0: its start)"}),
    "plate_end": ("{plate_end}", {"type": "INT", "default": 0, "minValue": 0, "description":
                                  "the plate's frame after the last (0: to its end)"}),
    "source_start": ("{source_start}", {"type": "INT", "default": 0, "minValue": 0,
                                        "description": "the source's first frame"}),
    "source_end": ("{source_end}", {"type": "INT", "default": 0, "minValue": 0, "description":
                                    "the source's frame after the last (0: to its end)"}),
    "profile": (_PROFILE_TOKEN, {"type": "STRING", "allowedValues": list(PROFILE_NAMES),
                                 "default": "gpu", "description": "the model profile"}),
    "train_minutes": ("{train_minutes}", {"type": "FLOAT", "default": 20.0, "minValue": 0.01,
                                          "description": "training time on the GPU worker"}),
    "train_steps": ("{train_steps}", {"type": "INT", "default": 1000000, "minValue": 1,
                                      "description": "training stops at this many steps if "
                                      "it gets there before its time"}),
    "frames": ("{frames}", {"type": "STRING", "description": "the shot's scene frames, "
                            "FIRST-LAST (the built scene's range: plate frames + 1)"}),
    "source_parts": ("{source_parts}", {"type": "INT", "default": 4, "minValue": 1,
                                        "description": "tasks the source's tracking, guides "
                                        "and dataset each split into (equal parts of its "
                                        "frames)"}),
    "chunk_size": ("{chunk_size}", {"type": "INT", "default": 100, "minValue": 1,
                                    "description": "frames per task of the plate's chunked "
                                    "steps (tracking, guides, dataset, swap, merge, "
                                    "composite)"}),
}
CHUNK = "{chunk}"  # a chunked task's frames, FIRST-LAST
PART = "{part}/" + "{source_parts}"  # a source task's part of its footage, K/N
# The stages whose plate work splits by frames (with --chunk; composite with --frames).
CHUNKED_STAGES = ("track", "guides", "dataset", "swap", "merge")


@dataclass(frozen=True)
class FarmStep:
    """One step of the job: its task name, the arguments after ``blender -b -c
    facegraft`` (with ``{setting}`` stand-ins), the steps it waits for, and how it runs."""

    name: str
    args: tuple[str, ...]
    after: tuple[str, ...]
    gpu: bool = False
    chunked: bool = False  # one task per chunk of the shot's Frames
    parts: bool = False  # one task per part of the source's frames (SourceParts of them)


def _task_name(step_name: str) -> str:
    return step_name.replace(" ", "-")


def farm_steps() -> list[FarmStep]:
    """The plan's steps as farm steps, Composite as set-up then chunks."""
    stand_in = {name: value for name, (value, _) in SETTINGS.items()}
    settings = ShotSettings(
        Path(stand_in["plate"]), Path(stand_in["source"]), profile=PROFILE_NAMES[0],
        minutes=stand_in["train_minutes"], steps=stand_in["train_steps"],
        plate_frames=f"{stand_in['plate_start']}:{stand_in['plate_end']}",
        source_frames=f"{stand_in['source_start']}:{stand_in['source_end']}")
    steps = []
    for step in shot_plan(Path(stand_in["shot"]), settings):
        args = _with_profile_token(step.argv, PROFILE_NAMES[0])
        if step.stage == "train":  # the time budget and the step cap both apply
            args = _train_limits(args)
        after = tuple(_task_name(name) for name in step.after)
        name = _task_name(step.name)
        if step.stage == "composite":
            steps.append(FarmStep("composite-setup", (*args, "--prepare"), after))
            steps.append(FarmStep("composite", (*args, "--frames", CHUNK, "--progress",
                                                "json"), ("composite-setup",), chunked=True))
            continue
        if step.stage in CHUNKED_STAGES:
            # The plate's frames in chunks of the shot's frames, the source's in equal
            # parts (the job does not know its length); then the same command without a
            # chunk joins them (tracking: selects the face and filters the whole shot).
            source = "source" in args
            steps.append(FarmStep(f"{name}-{'parts' if source else 'chunks'}",
                                  (*args, "--chunk", PART if source else CHUNK,
                                   *_progress(step.stage)), after,
                                  chunked=not source, parts=source))
            after = (steps[-1].name,)
        steps.append(FarmStep(name, (*args, *_progress(step.stage)), after,
                              gpu=step.stage == "train"))
    return steps


def _with_profile_token(argv: tuple[str, ...], profile: str) -> tuple[str, ...]:
    out = list(argv)
    for i in range(1, len(out)):
        if out[i - 1] in ("--profile", "--size") and out[i] == profile:
            out[i] = _PROFILE_TOKEN
    return tuple(out)


def _train_limits(argv: tuple[str, ...]) -> tuple[str, ...]:
    limits = ("--minutes", "--steps")
    out = [a for i, a in enumerate(argv)
           if a not in limits and not (i > 0 and argv[i - 1] in limits)]
    return (*out, "--minutes", SETTINGS["train_minutes"][0], "--steps",
            SETTINGS["train_steps"][0])


def _progress(stage: str) -> tuple[str, ...]:
    return ("--progress", "json") if STAGES_BY_NAME[stage].progress else ()


# ---- Open Job Description ----

def _openjd_name(setting: str) -> str:
    return "".join(part.capitalize() for part in setting.split("_"))


def _openjd_args(args: tuple[str, ...]) -> list[str]:
    out = []
    for arg in args:
        for name, (value, _) in SETTINGS.items():
            arg = arg.replace(value, "{{Param." + _openjd_name(name) + "}}")
        out.append(arg.replace(CHUNK, "{{Task.Param.Frame}}")
                   .replace("{part}", "{{Task.Param.Part}}"))
    return out


def _openjd_step(step: FarmStep) -> dict:
    run = {"command": "{{Param.Blender}}",
           "args": ["-b", "-c", "facegraft", *_openjd_args(step.args)]}
    out: dict = {"name": step.name, "script": {"actions": {"onRun": run}}}
    if step.chunked:
        out["parameterSpace"] = {"taskParameterDefinitions": [{
            "name": "Frame", "type": "CHUNK[INT]", "range": "{{Param.Frames}}",
            "chunks": {"defaultTaskCount": "{{Param.ChunkSize}}",
                       "rangeConstraint": "CONTIGUOUS"}}]}
    if step.parts:
        out["parameterSpace"] = {"taskParameterDefinitions": [{
            "name": "Part", "type": "INT", "range": "1-{{Param.SourceParts}}"}]}
    if step.after:
        out["dependencies"] = [{"dependsOn": name} for name in step.after]
    if step.gpu:
        out["hostRequirements"] = {"amounts": [{"name": "amount.worker.gpu", "min": 1}]}
    return out


def openjd_template() -> dict:
    """The job template (specification 2023-09 with task chunking)."""
    parameters = [{"name": _openjd_name(name), **definition}
                  for name, (_, definition) in SETTINGS.items()]
    parameters.append({"name": "Blender", "type": "STRING", "default": "blender",
                       "description": "the Blender command on the nodes (FaceGraft "
                       "installed, its worker Python set in the preferences)"})
    return {"specificationVersion": "jobtemplate-2023-09", "extensions": ["TASK_CHUNKING"],
            "name": "FaceGraft", "description": "One FaceGraft shot, from the footage to the "
            "final frames (made by 'facegraft farm-jobs')",
            "parameterDefinitions": parameters,
            "steps": [_openjd_step(step) for step in farm_steps()]}


# ---- Flamenco ----

def flamenco_job_type() -> str:
    """The job compiler: the hand-written script with the plan's steps filled in."""
    steps = [{"name": s.name, "args": list(s.args), "after": list(s.after),
              "worker": "gpu" if s.gpu else "cpu", "chunked": s.chunked, "parts": s.parts}
             for s in farm_steps()]
    script = _FLAMENCO_TEMPLATE.read_text()
    return (script.replace("/*@STEPS@*/[]", json.dumps(steps, indent=1))
            .replace("/*@PROFILES@*/[]", json.dumps(list(PROFILE_NAMES))))


def write_farm_jobs(folder: Path) -> Path:
    """Write the OpenJD template and the Flamenco job type under ``folder``."""
    folder = Path(folder)
    for name, text in ((OPENJD_FILE, json.dumps(openjd_template(), indent=1) + "\n"),
                       (FLAMENCO_FILE, flamenco_job_type())):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(folder / name, text.encode())
    return folder
