"""The seeds' first example: convolution as a weighted average of a noisy 1-D signal.

A laser sensor reports the position ``x(t)`` of a spaceship with noise. A weighted average that
favours recent measurements,

    s(t) = Σ_a x(t − a) · w(a),      w(a) = e^{−λa} / Σ_b e^{−λb},  a = 0 … L−1 (the age),

is a less noisy estimate. It is a (true) convolution ``s = x ∗ w`` on a 1-D grid of time steps,
causal because ``w`` only looks at the past (the input is padded on the left only). Deep
learning's "convolution" (``conv1d``) is cross-correlation, ``Σ_j x(t + j) k(j)``, which does not
flip the kernel, so ``s`` is ``conv1d`` with the flipped kernel ``k = w[::-1]``; the two agree when
the kernel is symmetric. A fixed filter can also be applied as FFT → multiply → inverse FFT, whose
cost does not grow with the kernel length.

Everything here is computed by cnnlab (``cnnlab.functional.conv1d``, its ``gemm`` and ``fft``
algorithms) and checked against the sum formula written out by hand.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..functional import conv1d

__all__ = [
    "SignalReport",
    "causal_smooth",
    "decay_kernel",
    "fft_crossover",
    "fft_timings",
    "format_signal_report",
    "signal_report",
    "smooth_by_hand",
    "trajectory",
    "write_signal_figure",
]


def trajectory(steps: int = 500, noise: float = 1.0, seed: int = 0) -> tuple[Tensor, Tensor]:
    """The true position of a spaceship (an accelerating, wobbling path) at ``steps`` time steps,
    and the laser sensor's reading of it with Gaussian noise of standard deviation ``noise``."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(steps, dtype=torch.float64) / steps
    true = 40 * t**2 + 5 * torch.sin(2 * math.pi * 3 * t)
    return true, true + noise * torch.randn(steps, generator=generator, dtype=torch.float64)


def decay_kernel(length: int, decay: float) -> Tensor:
    """``w(a) ∝ exp(−decay · a)`` for ages ``a = 0 … length−1``, summing to 1 (``w[0]``: the newest)."""
    weights = torch.exp(-decay * torch.arange(length, dtype=torch.float64))
    return weights / weights.sum()


def causal_smooth(x: Tensor, w: Tensor, algorithm: str = "auto") -> Tensor:
    """``s(t) = Σ_a x(t − a) w(a)`` with cnnlab's ``conv1d``: the cross-correlation of ``x`` with the
    flipped kernel, ``x`` padded on the left by ``len(w) − 1`` copies of its first value (so the
    first estimates average real readings, not zeros)."""
    padded = F.pad(x.view(1, 1, -1), (len(w) - 1, 0), mode="replicate")
    return conv1d(padded, w.flip(0).view(1, 1, -1), algorithm=algorithm).view(-1)


def smooth_by_hand(x: Tensor, w: Tensor) -> Tensor:
    """The sum formula, one term at a time (ages before the first reading read ``x[0]``)."""
    out = torch.zeros_like(x)
    for t in range(len(x)):
        for a in range(len(w)):
            out[t] += x[max(t - a, 0)] * w[a]
    return out


def rmse(estimate: Tensor, true: Tensor) -> float:
    return float((estimate - true).pow(2).mean().sqrt())


@dataclass
class SignalReport:
    """What :func:`signal_report` measured."""

    noisy_rmse: float
    smoothing: list[tuple[int, float, float]]  # (kernel length, decay, RMSE after smoothing)
    by_hand_error: float  # max |conv1d − sum formula|
    asymmetric_flip_difference: float  # max |correlation − convolution| for the decay kernel
    symmetric_flip_difference: float  # the same for the symmetric kernel [1, 2, 1] / 4
    fft_error: float  # max |fft − gemm| over the timed kernel lengths
    timings: list[tuple[int, float, float]]  # (kernel length, direct ms, fft ms)


def fft_timings(
    lengths=(3, 9, 33, 129, 513), signal_length: int = 16384, batch: int = 16, repeats: int = 3
) -> tuple[list[tuple[int, float, float]], float]:
    """Median milliseconds of ``conv1d`` through ``gemm`` (direct) and ``fft`` as the kernel grows,
    on a ``(batch, 1, signal_length)`` float32 signal, and the largest difference between them."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, signal_length, generator=generator)
    rows, error = [], 0.0
    for length in lengths:
        w = torch.randn(1, 1, length, generator=generator) / length
        times = {}
        for algorithm in ("gemm", "fft"):
            samples = []
            for _ in range(repeats + 1):  # the first call warms up
                start = time.perf_counter()
                out = conv1d(x, w, algorithm=algorithm)
                samples.append(time.perf_counter() - start)
            times[algorithm] = sorted(samples[1:])[len(samples[1:]) // 2] * 1e3
            if algorithm == "gemm":
                direct = out
        error = max(error, float((out - direct).abs().max() / direct.abs().max()))
        rows.append((length, times["gemm"], times["fft"]))
    return rows, error


def signal_report(
    steps: int = 500,
    noise: float = 1.0,
    kernels=((4, 0.3), (8, 0.3), (16, 0.15), (32, 0.05)),
    fft_lengths=(3, 9, 33, 129, 513),
    seed: int = 0,
) -> tuple[SignalReport, Tensor, Tensor, Tensor]:
    """Measure every claim of the module docstring; also returns (true, noisy, smoothed) of the
    first kernel for the figure."""
    true, noisy = trajectory(steps, noise, seed)
    smoothing = []
    for length, decay in kernels:
        smoothing.append((length, decay, rmse(causal_smooth(noisy, decay_kernel(length, decay)), true)))
    w = decay_kernel(*kernels[1])
    by_hand = float((causal_smooth(noisy, w) - smooth_by_hand(noisy, w)).abs().max())
    x = noisy.view(1, 1, -1)

    def flip_difference(kernel: Tensor) -> float:
        correlation = conv1d(x, kernel.view(1, 1, -1))
        convolution = conv1d(x, kernel.flip(0).view(1, 1, -1))
        return float((correlation - convolution).abs().max())

    symmetric = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64) / 4
    timings, fft_error = fft_timings(fft_lengths)
    report = SignalReport(
        noisy_rmse=rmse(noisy, true),
        smoothing=smoothing,
        by_hand_error=by_hand,
        asymmetric_flip_difference=flip_difference(w),
        symmetric_flip_difference=flip_difference(symmetric),
        fft_error=fft_error,
        timings=timings,
    )
    return report, true, noisy, causal_smooth(noisy, decay_kernel(*kernels[1]))


def fft_crossover(timings: list[tuple[int, float, float]]) -> int | None:
    """The kernel length from which the FFT path stays faster than the direct one for every longer
    timed length (``(length, direct ms, fft ms)`` rows in increasing length); None if it is not
    faster at the longest. A single length where FFT happens to win before direct wins again is
    not a crossover."""
    crossover = None
    for length, direct, fft in reversed(timings):
        if fft >= direct:
            break
        crossover = length
    return crossover


def format_signal_report(report: SignalReport) -> str:
    lines = [
        "Convolution as a weighted average: a noisy laser sensor tracking a spaceship",
        "s(t) = sum_a x(t-a) w(a),  w(a) ~ exp(-decay * a)  (causal: the past only, left padding)",
        "",
        f"noise before smoothing: RMSE {report.noisy_rmse:.3f}",
        "kernel length   decay   RMSE after   (longer windows average more noise away, but lag behind the",
        "                                      accelerating ship: the error is noise plus lag)",
    ]
    lines += [f"{length:>13}   {decay:>5.2f}   {error:>10.3f}" for length, decay, error in report.smoothing]
    crossover = fft_crossover(report.timings)
    lines += [
        "",
        f"conv1d vs the sum formula by hand: max difference {report.by_hand_error:.1e}",
        "cross-correlation (conv1d) vs true convolution (kernel flipped):",
        f"  decay kernel (asymmetric):  max difference {report.asymmetric_flip_difference:.3f}",
        f"  [1, 2, 1]/4 (symmetric):    max difference {report.symmetric_flip_difference:.1e}",
        "",
        f"FFT -> multiply -> inverse FFT (algorithm='fft') vs direct (gemm): max relative difference "
        f"{report.fft_error:.1e}",
        "kernel length   direct ms   fft ms",
    ]
    lines += [f"{length:>13}   {direct:>9.2f}   {fft:>6.2f}" for length, direct, fft in report.timings]
    lines.append(
        f"FFT is faster from kernel length {crossover} on (this machine)"
        if crossover
        else "FFT was not faster at the longest timed kernel length on this machine"
    )
    return "\n".join(lines)


def write_signal_figure(path: Path, true: Tensor, noisy: Tensor, smoothed: Tensor) -> Path:
    """Plot true, noisy and smoothed positions to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 3.2))
    axis.plot(noisy.numpy(), ".", markersize=2, color="0.6", label="sensor reading x(t)")
    axis.plot(true.numpy(), color="black", linewidth=1.2, label="true position")
    axis.plot(smoothed.numpy(), color="tab:red", linewidth=1.2, label="weighted average s(t)")
    axis.set_xlabel("time step t")
    axis.set_ylabel("position")
    axis.legend(frameon=False)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
