"""The 1-D weighted-average example: every number it prints has the property it claims."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from cnnlab.analysis.signal import (
    causal_smooth,
    decay_kernel,
    fft_crossover,
    fft_timings,
    rmse,
    signal_report,
    smooth_by_hand,
    trajectory,
)
from cnnlab.functional import conv1d


def test_decay_kernel_sums_to_one_and_favours_recent_readings():
    w = decay_kernel(8, 0.3)
    assert float(w.sum()) == pytest.approx(1.0)
    assert bool((w[1:] < w[:-1]).all())


@pytest.mark.parametrize(("length", "decay"), [(4, 0.3), (8, 0.3), (16, 0.15), (32, 0.05)])
def test_smoothing_lowers_the_error_for_white_noise(length, decay):
    """Around a still target the error is the noise alone: σ·sqrt(Σ w²) < σ after smoothing."""
    noise = torch.randn(20000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w = decay_kernel(length, decay)
    after = rmse(causal_smooth(noise, w), torch.zeros_like(noise))
    assert after == pytest.approx(float(w.square().sum().sqrt()), rel=0.05)
    assert after < rmse(noise, torch.zeros_like(noise))


def test_a_short_window_helps_on_the_moving_spaceship_a_long_one_lags():
    true, noisy = trajectory(steps=500, noise=1.0, seed=1)
    assert rmse(causal_smooth(noisy, decay_kernel(8, 0.3)), true) < rmse(noisy, true)
    assert rmse(causal_smooth(true, decay_kernel(32, 0.05)), true) > rmse(
        causal_smooth(true, decay_kernel(8, 0.3)), true
    )


def test_conv1d_equals_the_sum_formula_by_hand():
    _, noisy = trajectory(steps=60, seed=2)
    w = decay_kernel(7, 0.4)
    torch.testing.assert_close(causal_smooth(noisy, w), smooth_by_hand(noisy, w))


def test_smoothing_is_causal_the_future_does_not_change_the_past():
    _, noisy = trajectory(steps=80, seed=3)
    w = decay_kernel(6, 0.2)
    changed = noisy.clone()
    changed[50:] += 100
    torch.testing.assert_close(causal_smooth(changed, w)[:50], causal_smooth(noisy, w)[:50])


def test_correlation_and_convolution_agree_exactly_for_symmetric_kernels():
    x = torch.randn(1, 1, 100, dtype=torch.float64)
    symmetric = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64).view(1, 1, -1) / 16
    asymmetric = decay_kernel(5, 0.5).view(1, 1, -1)
    assert torch.equal(conv1d(x, symmetric), conv1d(x, symmetric.flip(-1)))
    assert float((conv1d(x, asymmetric) - conv1d(x, asymmetric.flip(-1))).abs().max()) > 0.1


def test_fft_path_equals_the_direct_path():
    rows, error = fft_timings(lengths=(3, 33), signal_length=512, batch=2, repeats=1)
    assert error < 1e-5
    assert [length for length, _, _ in rows] == [3, 33] and all(d > 0 and f > 0 for _, d, f in rows)


def test_the_crossover_is_where_fft_stays_faster():
    # (length, direct ms, fft ms): FFT wins at 3 by noise, loses at 9, wins from 33 on
    assert fft_crossover([(3, 1.0, 0.9), (9, 2.0, 2.5), (33, 8.0, 3.0), (129, 30.0, 4.0)]) == 33
    assert fft_crossover([(3, 1.0, 2.0), (9, 2.0, 1.0), (33, 8.0, 9.0)]) is None
    assert fft_crossover([(3, 1.0, 0.5), (9, 2.0, 1.0)]) == 3


def test_report_numbers_have_their_properties():
    report, true, noisy, smoothed = signal_report(steps=300, fft_lengths=(3, 17))
    assert min(after for _, _, after in report.smoothing) < report.noisy_rmse
    assert report.by_hand_error < 1e-12
    assert report.symmetric_flip_difference < 1e-12 < report.asymmetric_flip_difference
    assert report.fft_error < 1e-5
    assert true.shape == noisy.shape == smoothed.shape == (300,)


@pytest.mark.slow
def test_command_prints_the_report_and_writes_the_figure(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cnnlab.analyze", "signal", f"--out={tmp_path}", "--fft-lengths", "3", "65"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "noise before smoothing: RMSE" in result.stdout and "conv1d vs the sum formula" in result.stdout
    assert (tmp_path / "signal.png").stat().st_size > 10_000
