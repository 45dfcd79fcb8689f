"""Silencing native libraries that write straight to file descriptor 2."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence native chatter for the duration: MediaPipe's C++ start-up logs (absl and
    TFLite, which no environment variable turns off) and FFmpeg's complaints while OpenCV
    probes a file that is not a video. Failures still surface as Python exceptions or
    return values, which FaceGraft turns into one clear line."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
