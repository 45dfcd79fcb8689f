"""Training steps prepared ahead on worker threads while the device trains.

A step's inputs (its crops read from the memory-mapped datasets, the texture guide
rendered for each crop, occluders pasted, the encoder's input warped) are CPU work. Done
between the device's steps, they left one H100 idle most of the time at 256 px: 4.4 steps
a second, where the network alone runs about 19. Every random draw of a step comes from
that step's own generator (seeded by the step), so a step prepared early on another thread
is the very step prepared in turn: training with prefetching is training without it.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import torch

MAX_THREADS = 4  # NumPy, OpenCV and torch release the GIL; more threads wait on it


def prefetch_threads(device: torch.device, processes: int) -> int:
    """Worker threads for a training process: none on a CPU (its cores already run the
    network's arithmetic; preparing ahead there only competes for them), else up to
    MAX_THREADS from half of the machine's cores shared by the training ``processes``
    (every machine's counted: on several machines, fewer threads than would fit)."""
    if device.type == "cpu":
        return 0
    cores = os.cpu_count() or 2
    return max(1, min(MAX_THREADS, cores // (2 * max(1, processes))))


class StepPrefetch:
    """``prepare(step)`` for ``first``, ``first + 1``, ... run ``threads`` steps ahead;
    ``next()`` returns each in turn (raising what its preparation raised). With no threads,
    ``next()`` prepares the step itself."""

    def __init__(self, prepare: Callable[[int], tuple], first: int, threads: int):
        self._prepare = prepare
        self._next_step = first
        self._pool = ThreadPoolExecutor(threads, "facegraft-step") if threads else None
        self._pending: deque[Future] = deque()
        for _ in range(threads):
            self._submit()

    def _submit(self) -> None:
        self._pending.append(self._pool.submit(self._prepare, self._next_step))
        self._next_step += 1

    def next(self) -> tuple:
        if self._pool is None:
            self._next_step += 1
            return self._prepare(self._next_step - 1)
        future = self._pending.popleft()
        self._submit()
        return future.result()

    def close(self) -> None:
        """Drop the steps prepared beyond the last one taken (waits for those running)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> StepPrefetch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
