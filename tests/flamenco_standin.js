// A small stand-in for Flamenco Manager's job authoring API, for tests/test_farm_jobs.py:
// loads a job type script the way Flamenco does (its settings' defaults filled in, then
// compileJob(job)), records the tasks, their type, commands and dependencies, and prints
// them as JSON. Usage: node flamenco_standin.js JOB_TYPE.js '{"setting": value, ...}'
"use strict";
const fs = require("fs");
const vm = require("vm");

const [scriptPath, settingsJson] = process.argv.slice(2);

class Task {
    constructor(name, type) {
        this.name = name;
        this.type = type;
        this.commands = [];
        this.dependencies = [];
    }
    addCommand(command) { this.commands.push(command); }
    addDependency(task) {
        if (!(task instanceof Task)) throw new Error(`${this.name}: dependency is not a task`);
        this.dependencies.push(task.name);
    }
}

// Flamenco's frameChunker: "1-10,15" split into chunks of at most chunkSize consecutive
// frames, each "FIRST-LAST" (or "FIRST" for one frame).
function frameChunker(frames, chunkSize) {
    const all = [];
    for (const part of String(frames).split(",")) {
        const [a, b] = part.trim().split("-").map(Number);
        for (let f = a; f <= (Number.isNaN(b) || b === undefined ? a : b); f++) all.push(f);
    }
    const chunks = [];
    let start = 0;
    for (let i = 1; i <= all.length; i++) {
        if (i === all.length || all[i] !== all[i - 1] + 1 || i - start === chunkSize) {
            const [first, last] = [all[start], all[i - 1]];
            chunks.push(first === last ? `${first}` : `${first}-${last}`);
            start = i;
        }
    }
    return chunks;
}

const tasks = [];
const job = { settings: JSON.parse(settingsJson), addTask: (task) => tasks.push(task) };
const author = {
    Task: (name, type) => new Task(name, type),
    Command: (type, parameters) => ({ type, parameters }),
};
const context = vm.createContext({ author, frameChunker, job, print: () => {} });
vm.runInContext(fs.readFileSync(scriptPath, "utf8") + "\nglobalThis.JOB_TYPE = JOB_TYPE;",
                context, { filename: scriptPath });
for (const setting of context.JOB_TYPE.settings) {
    if (!(setting.key in job.settings) && "default" in setting) {
        job.settings[setting.key] = setting.default;
    }
    if (setting.required && !(setting.key in job.settings)) {
        throw new Error(`setting ${setting.key} is required`);
    }
}
vm.runInContext("compileJob(job)", context);
console.log(JSON.stringify({ settings: context.JOB_TYPE.settings, tasks }));
