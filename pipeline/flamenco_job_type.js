// SPDX-License-Identifier: GPL-3.0-or-later
// FaceGraft shot: a Flamenco job type. Copy this file into the Flamenco Manager's
// scripts/ folder (see docs/FARM.md). Made by 'facegraft farm-jobs' from the FaceGraft
// stage table: edit pipeline/flamenco_job_type.js in FaceGraft's sources, not the copy.
//
// Every task runs 'blender -b -c facegraft <stage> ...': worker stages run in the node's
// FaceGraft worker Python, Blender stages in that Blender. Train runs as the task type
// "facegraft-gpu": list it in the task_types of the Workers that have a GPU.

const PROFILES = /*@PROFILES@*/[];
const STEPS = /*@STEPS@*/[];

const JOB_TYPE = {
    label: "FaceGraft Shot",
    description: "Track, train, swap, merge and composite one FaceGraft shot",
    settings: [
        { key: "blender", type: "string", default: "{blender}", visible: "hidden" },
        { key: "shot", type: "string", subtype: "dir_path", required: true,
          eval: "bpy.path.abspath(C.scene.facegraft.shot_folder)",
          description: "The shot folder, on storage every Worker sees" },
        { key: "plate", type: "string", subtype: "file_path", required: true,
          eval: "bpy.path.abspath(C.scene.facegraft.plate)",
          description: "The plate: a video or a folder of numbered images" },
        { key: "source", type: "string", subtype: "file_path", required: true,
          eval: "bpy.path.abspath(C.scene.facegraft.source)",
          description: "Footage of the person whose face goes in" },
        { key: "plate_start", type: "int32", default: 0, visible: "submission",
          description: "The plate's first frame (0: its start)" },
        { key: "plate_end", type: "int32", default: 0, visible: "submission",
          description: "The plate's frame after the last (0: to its end)" },
        { key: "source_start", type: "int32", default: 0, visible: "submission",
          description: "The source's first frame" },
        { key: "source_end", type: "int32", default: 0, visible: "submission",
          description: "The source's frame after the last (0: to its end)" },
        { key: "profile", type: "string", required: true, choices: PROFILES,
          eval: "C.scene.facegraft.profile", description: "The model profile" },
        { key: "train_minutes", type: "float", required: true,
          eval: "C.scene.facegraft.train_minutes", description: "Training time on the GPU Worker" },
        { key: "train_steps", type: "int32", default: 1000000, visible: "submission",
          description: "Training stops at this many steps if it gets there first" },
        { key: "frames", type: "string", required: true,
          eval: "f'{C.scene.frame_start}-{C.scene.frame_end}'",
          description: "The shot's scene frames, FIRST-LAST" },
        { key: "source_parts", type: "int32", default: 4, visible: "submission",
          description: "Tasks the source's tracking, guides and dataset each split into" },
        { key: "chunk_size", type: "int32", default: 100,
          description: "Frames per task of the plate's chunked steps" },
    ],
};

function compileJob(job) {
    const settings = job.settings;
    const made = {};
    for (const step of STEPS) {
        const tasks = step.chunked
            ? frameChunker(settings.frames, settings.chunk_size).map(
                (chunk) => facegraftTask(`${step.name}-${chunk}`, step, settings, chunk))
            : step.parts
            ? Array.from({ length: settings.source_parts }, (_, i) => i + 1).map(
                (part) => facegraftTask(`${step.name}-${part}`, step, settings, "", part))
            : [facegraftTask(step.name, step, settings, "")];
        for (const task of tasks) {
            for (const name of step.after) {
                for (const before of made[name]) {
                    task.addDependency(before);
                }
            }
            job.addTask(task);
        }
        made[step.name] = tasks;
    }
}

function facegraftTask(name, step, settings, chunk, part) {
    const task = author.Task(name, step.worker === "gpu" ? "facegraft-gpu" : "blender");
    const args = step.args.map((arg) => arg.replace(/\{(\w+)\}/g, (whole, key) =>
        key === "chunk" ? chunk : key === "part" ? String(part) : String(settings[key])));
    task.addCommand(author.Command("exec", {
        exe: settings.blender,
        args: ["-b", "-c", "facegraft"].concat(args),
    }));
    return task;
}
