"""The zero-phase One Euro filter on synthetic signals with known answers."""

import numpy as np
from facegraft.ml.smoothing import OneEuroParams, filter_present, one_euro, present_runs

PARAMS = OneEuroParams(min_cutoff_hz=1.0, beta=0.5)


def test_zero_phase_has_no_delay_where_causal_does():
    t = np.arange(240) / 24.0
    signal = np.sin(2 * np.pi * 0.5 * t)[:, None]
    causal = one_euro(signal, 24.0, PARAMS)
    zero_phase = filter_present(signal, np.ones(240, bool), 24.0, PARAMS)

    def delay(y):
        shifts = np.arange(-5, 5.01, 0.05)
        costs = [np.mean((y[20:-20, 0] - np.interp(np.arange(240) - s, np.arange(240),
                                                   signal[:, 0])[20:-20]) ** 2) for s in shifts]
        return shifts[int(np.argmin(costs))]

    assert delay(causal) > 0.5
    assert abs(delay(zero_phase)) < 0.1


def test_noise_is_reduced_and_gaps_are_respected():
    rng = np.random.default_rng(0)
    signal = np.cumsum(rng.normal(0, 0.01, (200, 3)), axis=0) + rng.normal(0, 0.2, (200, 3))
    present = np.ones(200, bool)
    present[90:100] = False
    out = filter_present(signal, present, 24.0, PARAMS)
    assert np.isnan(out[90:100]).all()
    assert not np.isnan(out[present]).any()
    second_diff = lambda x: np.nanmean(np.abs(np.diff(x, 2, axis=0)))  # noqa: E731
    assert second_diff(out) < 0.3 * second_diff(np.where(present[:, None], signal, np.nan))
    assert present_runs(present) == [(0, 90), (100, 200)]
