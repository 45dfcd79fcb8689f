"""One child process of FaceGraft (a worker stage, a Blender guides process, a step of
``facegraft run``): start it, read its JSON-lines progress, keep the tail of its stderr,
say in one line why it failed, and stop it (SIGTERM, then SIGKILL).

The child prints ``common/progress.py``'s JSON lines on stdout (``--progress json``).
Two threads read its pipes into a queue, so the caller polls without blocking (the
add-on's modal timer) or iterates until the child ends (the pipeline, farm wrappers).
Nothing here touches Blender data or imports anything heavy.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .errors import FaceGraftError

ERROR_PREFIX = "facegraft: error: "
STDERR_TAIL_LINES = 50


@dataclass
class ChildEvent:
    kind: str  # "progress", "done", "error", "output" (a non-JSON stdout line), "exit"
    fraction: float = 0.0
    message: str = ""
    data: dict = field(default_factory=dict)  # the JSON line as the child sent it
    returncode: int | None = None


class ChildProcess:
    """A child process speaking FaceGraft's JSON-lines progress on stdout."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None,
                 on_stderr: Callable[[str], None] | None = None):
        self.argv = [str(a) for a in argv]
        self.env = env
        self.on_stderr = on_stderr
        self.events: queue.Queue[ChildEvent] = queue.Queue()
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self.error_message = ""
        self.process: subprocess.Popen | None = None
        self._stderr_done = threading.Event()

    def start(self) -> ChildProcess:
        try:
            self.process = subprocess.Popen(
                self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                stdin=subprocess.DEVNULL, env=self.env, bufsize=1)
        except OSError as exc:
            raise FaceGraftError(f"{self.argv[0]}: cannot start ({exc.strerror})") from exc
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        return self

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            self._parse(line.rstrip("\n"))
        returncode = self.process.wait()
        self._stderr_done.wait(timeout=5)  # the error line may still be in the pipe
        self.events.put(ChildEvent("exit", returncode=returncode,
                                   message=self.failure(returncode)))

    def _parse(self, line: str) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            if line.strip():
                self.events.put(ChildEvent("output", message=line))
            return
        event = message.get("event")
        if event == "progress":
            self.events.put(ChildEvent("progress", float(message.get("fraction", 0.0)),
                                       data=message))
        elif event == "done":
            self.events.put(ChildEvent("done", 1.0, str(message.get("output", "")),
                                       data=message))
        elif event == "error":
            self.error_message = str(message.get("message", ""))
            self.events.put(ChildEvent("error", message=self.error_message, data=message))
        else:  # a JSON line that is not progress: the child's output (a report)
            self.events.put(ChildEvent("output", message=line, data=message))

    def _read_stderr(self) -> None:
        try:
            for line in self.process.stderr:
                line = line.rstrip("\n")
                if line.strip():
                    self.stderr_tail.append(line)
                if self.on_stderr is not None:
                    self.on_stderr(line)
        finally:
            self._stderr_done.set()

    def failure(self, returncode: int) -> str:
        """One line saying why the child failed ('' when it did not)."""
        if returncode == 0:
            return ""
        if self.error_message:
            return self.error_message
        errors = [ln for ln in self.stderr_tail if ln.startswith(ERROR_PREFIX)]
        if errors:
            return errors[-1].removeprefix(ERROR_PREFIX)
        if returncode == 130:
            return "interrupted"
        if returncode < 0:
            return f"{os.path.basename(self.argv[0])} was killed by signal {-returncode}"
        last = self.stderr_tail[-1] if self.stderr_tail else "no output"
        return f"{os.path.basename(self.argv[0])} exited with status {returncode} ({last})"

    def poll(self) -> list[ChildEvent]:
        """The events that came since the last call, without waiting."""
        events = []
        while True:
            try:
                events.append(self.events.get_nowait())
            except queue.Empty:
                return events

    def iter_events(self) -> Iterator[ChildEvent]:
        """Every event, waiting for each, up to and including "exit"."""
        while True:
            event = self.events.get()
            yield event
            if event.kind == "exit":
                return

    def wait(self, timeout: float | None = None) -> int:
        return self.process.wait(timeout=timeout)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cancel(self, timeout: float = 10.0) -> None:
        """Stop the child: SIGTERM lets it remove its temporary files, then make sure."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_to_end(child: ChildProcess, on_event: Callable[[ChildEvent], None] | None = None,
               ) -> ChildEvent:
    """Start ``child`` if needed, pass every event to ``on_event`` and return the exit
    event. Any exception here (Ctrl-C, SIGTERM) stops the child before it propagates."""
    if child.process is None:
        child.start()
    event = ChildEvent("exit")
    try:
        for event in child.iter_events():
            if on_event is not None:
                on_event(event)
    except BaseException:
        child.cancel(timeout=30)
        raise
    return event
