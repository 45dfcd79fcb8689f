"""What the artist reads when something goes wrong, and the shot's log for support.

The worker's errors are written for a terminal: absolute paths and advice such as "run
'facegraft guides --size 128'". In the panel they name buttons and files of the shot
instead; the full text, the command and everything the worker printed go to the shot's
``facegraft.log`` (the panel's Open Log button).
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from ..common.shot_layout import ShotLayout
from ..common.stage_table import STAGES_BY_NAME, Step

# "run 'facegraft guides --size 128'", "run guides again", "(run Build Scene first)"
_COMMAND = re.compile(r"(?:run )?'facegraft ([a-z-]+)[^']*'")
_RUN_AGAIN = re.compile(r"\brun ([A-Za-z][A-Za-z -]*?) (again|first)\b")


def _label(stage_or_label: str, plan: list[Step], message: str) -> str:
    """The button that runs a stage: when one runs it for each footage, the one of the
    footage the message's file belongs to."""
    name = stage_or_label.strip().lower()
    rows = [step for step in plan if name in (step.stage, step.label.lower())]
    if len(rows) > 1:
        rows = [step for step in rows if f"/{step.name.split()[-1]}/" in message] or rows
    if len(rows) == 1:
        return rows[0].label
    stage = STAGES_BY_NAME.get(name)
    return stage.label if stage else stage_or_label


def for_artist(message: str, folder: Path | None, plan: list[Step]) -> str:
    """``message`` with the buttons to click instead of commands, and the shot's files
    named from the shot folder instead of the disk's root."""
    text = _COMMAND.sub(lambda m: f"click {_label(m.group(1), plan, message)}", message)
    text = _RUN_AGAIN.sub(
        lambda m: f"click {_label(m.group(1), plan, message)} {m.group(2)}", text)
    if folder is not None:
        text = text.replace(str(folder) + "/", "").replace(str(folder), "the shot folder")
    text = re.sub(r"(/[^\s:;,()']+)+/([^\s/:;,()']+)", r"\2", text)  # other paths: the name
    return sentence(text)


def sentence(text: str) -> str:
    """``text`` with a capital first letter (str.capitalize() would lower the rest)."""
    return text[:1].upper() + text[1:]


def append_log(folder: Path, title: str, command: list[str], output: list[str],
               result: str) -> Path | None:
    """Add one run's record to the shot's log; returns the log (None when it cannot be
    written: the panel still shows the message)."""
    log = ShotLayout(folder).log
    if not log.parent.is_dir():  # never made just for a log
        return None
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    record = [f"== {stamp} {title}", "$ " + " ".join(command), *output, f"-> {result}", ""]
    try:
        with open(log, "a", encoding="utf-8") as f:
            f.write("\n".join(record) + "\n")
    except OSError:
        return None
    return log
