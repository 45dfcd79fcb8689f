"""Temporal filtering of a track: jitter out, no lag.

The filter is the One Euro filter (Casiez et al., CHI 2012): a first-order low-pass whose
cutoff rises with the signal's speed, so slow drifts are smoothed hard and fast motion
passes through. A causal One Euro still lags on fast motion; a track is filtered offline,
so we run it forward and then backward over its own output (as ``filtfilt`` does for
linear filters): the backward pass undoes the forward pass's delay, leaving no lag.

Filtering never crosses a gap: each run of consecutive present frames is filtered on its
own, and absent frames stay NaN.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroParams:
    min_cutoff_hz: float  # cutoff at rest: lower smooths more
    beta: float  # how fast the cutoff rises with speed (per unit of the signal per second)
    d_cutoff_hz: float = 1.0  # cutoff of the speed estimate

    def to_dict(self) -> dict:
        return asdict(self)


def one_euro(signal: np.ndarray, fps: float, params: OneEuroParams) -> np.ndarray:
    """Causal One Euro over axis 0 of ``signal`` (T, C); each channel on its own."""
    x = np.asarray(signal, np.float64)
    out = np.empty_like(x)
    out[0] = x[0]
    # alpha(cutoff) = 1 / (1 + fps / (2 pi cutoff)), computed in place on preallocated
    # buffers: this loop runs once per frame over every channel of a track.
    a_d = 1.0 / (1.0 + fps / (2 * math.pi * params.d_cutoff_hz))
    speed = np.zeros_like(x[0])
    step = np.empty_like(x[0])
    alpha = np.empty_like(x[0])
    k_speed = 2 * math.pi * params.beta / fps
    k_rest = 2 * math.pi * params.min_cutoff_hz / fps
    for t in range(1, len(x)):
        np.subtract(x[t], out[t - 1], out=step)
        # speed = a_d * step * fps + (1 - a_d) * speed
        speed *= 1 - a_d
        speed += (a_d * fps) * step
        # alpha = c / (1 + c) with c = 2 pi (min_cutoff + beta |speed|) / fps
        np.abs(speed, out=alpha)
        alpha *= k_speed
        alpha += k_rest
        np.divide(alpha, alpha + 1, out=alpha)
        # out[t] = out[t-1] + alpha * (x[t] - out[t-1])
        np.multiply(alpha, step, out=step)
        np.add(out[t - 1], step, out=out[t])
    return out


def one_euro_zero_phase(signal: np.ndarray, fps: float, params: OneEuroParams) -> np.ndarray:
    """One Euro forward, then backward over the result: smoothing with no delay."""
    forward = one_euro(signal, fps, params)
    return one_euro(forward[::-1], fps, params)[::-1]


def present_runs(present: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of consecutive True values."""
    runs = []
    start = None
    for i, flag in enumerate(present):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(present)))
    return runs


def filter_present(
    signal: np.ndarray, present: np.ndarray, fps: float, params: OneEuroParams
) -> np.ndarray:
    """Zero-phase One Euro over each present run; absent frames come out NaN."""
    out = np.full(signal.shape, np.nan, dtype=np.float64)
    flat = signal.reshape(len(signal), -1)
    for start, end in present_runs(present):
        smoothed = one_euro_zero_phase(flat[start:end], fps, params)
        out[start:end] = smoothed.reshape((end - start,) + signal.shape[1:])
    return out
