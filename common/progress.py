"""Progress reporting for long stages: a terminal bar, or JSON lines for the add-on.

JSON-lines mode prints one object per line on stdout, flushed at once:
``{"event": "progress", "stage": "track", "done": 120, "total": 4800, "fraction": 0.025,
"fps": 97.1, "eta_s": 48.2}``, then ``{"event": "done", "stage": ..., "seconds": ...,
"output": ...}`` or ``{"event": "error", "stage": ..., "message": ...}``. The add-on and
farm wrappers read these; nothing else is printed on stdout in that mode.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

MODES = ("bar", "json", "none")


class Progress:
    def __init__(self, stage: str, total: int, mode: str = "bar", stream: TextIO | None = None):
        if mode not in MODES:
            raise ValueError(f"progress mode must be one of {MODES}, not {mode!r}")
        self.stage = stage
        self.total = max(int(total), 1)
        self.mode = mode
        self.done = 0
        self.started = time.perf_counter()
        self._last_emit = 0.0
        self._last_decile = -1
        if stream is None:
            stream = sys.stdout if mode == "json" else sys.stderr
        self.stream = stream
        self._tty = self.stream.isatty()

    def update(self, done: int) -> None:
        self.done = min(int(done), self.total)
        now = time.perf_counter()
        finished = self.done >= self.total
        if not finished and now - self._last_emit < 0.25:
            return
        self._last_emit = now
        elapsed = now - self.started
        fps = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / fps if fps > 0 else None
        fraction = self.done / self.total
        if self.mode == "json":
            self._json(event="progress", done=self.done, total=self.total,
                       fraction=round(fraction, 4), fps=round(fps, 2),
                       eta_s=None if eta is None else round(eta, 1))
        elif self.mode == "bar":
            if self._tty:
                filled = int(30 * fraction)
                bar = "#" * filled + "-" * (30 - filled)
                eta_text = "?" if eta is None else f"{eta:.0f}s"
                self.stream.write(
                    f"\r{self.stage} [{bar}] {self.done}/{self.total} {fps:.0f} fps eta {eta_text}"
                )
                self.stream.flush()
            else:
                decile = int(fraction * 10)
                if decile != self._last_decile:
                    self._last_decile = decile
                    self.stream.write(f"{self.stage}: {self.done}/{self.total} ({fps:.0f} fps)\n")
                    self.stream.flush()

    def finish(self, **info) -> None:
        seconds = time.perf_counter() - self.started
        if self.mode == "json":
            self._json(event="done", seconds=round(seconds, 3), **info)
        elif self.mode == "bar" and self._tty:
            self.stream.write("\n")
            self.stream.flush()

    def error(self, message: str) -> None:
        if self.mode == "json":
            self._json(event="error", message=message)
        elif self.mode == "bar" and self._tty and self.done:
            self.stream.write("\n")

    def _json(self, **fields) -> None:
        self.stream.write(json.dumps({"stage": self.stage, **fields}) + "\n")
        self.stream.flush()
