"""Time cnnlab layers against torch's native ones in the same run, and print ratios.

Usage:
    python benchmarks/layers.py                      # every case, CPU, batch 128
    python benchmarks/layers.py --group conv --repeats 5
    python benchmarks/layers.py --device cuda
    python benchmarks/layers.py --group pool --channels-last   # channels-last inputs and layers

For each case it reports the median time of forward (no grad) and forward+backward for torch and
cnnlab, their ratio (cnnlab / torch: below 1 means cnnlab is faster), and peak memory of one
forward+backward, measured as the rise of the process's peak RSS (CPU; every allocation,
including oneDNN's scratch space, in a fresh subprocess per layer) or ``max_memory_allocated``
(CUDA). Results go to stdout as a Markdown table (``--output`` writes it to a file too).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from machine import describe
from rss import peak_rss_increase
from torch import nn

import cnnlab.nn as cnn


@dataclass(frozen=True)
class Case:
    name: str
    group: str
    make_torch: Callable[[], nn.Module]
    make_cnnlab: Callable[[], nn.Module]
    shape: tuple[int, ...]  # input shape without the batch dimension


def conv_cases() -> list[Case]:
    def conv(c_in, c_out, size, k=3, **kw):
        pad = kw.pop("padding", k // 2)
        return (
            lambda: nn.Conv2d(c_in, c_out, k, padding=pad, **kw),
            lambda: cnn.Conv2d(c_in, c_out, k, padding=pad, **kw),
            (c_in, size, size),
        )

    cases = [
        ("conv 3→64 3×3 @32²", *conv(3, 64, 32)),
        ("conv 64→64 3×3 @32²", *conv(64, 64, 32)),
        ("conv 128→128 3×3 @16²", *conv(128, 128, 16)),
        ("conv 256→256 3×3 @8²", *conv(256, 256, 8)),
        ("conv 512→512 3×3 @4²", *conv(512, 512, 4)),
        ("depthwise 128 3×3 @16²", *conv(128, 128, 16, groups=128)),
        ("depthwise 64 3×3 s2 @32²", *conv(64, 64, 32, groups=64, stride=2)),
        (
            "transposed 128→64 2×2 s2 @16²",
            lambda: nn.ConvTranspose2d(128, 64, 2, stride=2),
            lambda: cnn.ConvTranspose2d(128, 64, 2, stride=2),
            (128, 16, 16),
        ),
        (
            "fft 64→64 7×7 @32²",
            lambda: nn.Conv2d(64, 64, 7, padding=3),
            lambda: cnn.FFTConv2d(64, 64, 7, padding=3),
            (64, 32, 32),
        ),
    ]
    return [Case(name, "conv", make_t, make_c, shape) for name, make_t, make_c, shape in cases]


class _FilterByConv(nn.Module):
    """torch reference for the pools torch lacks: the same fixed filter through ``F.conv2d``."""

    def __init__(self, channels: int, weights: torch.Tensor, stride: int, padding: int, mode: str):
        super().__init__()
        self.register_buffer("weight", weights.expand(channels, 1, *weights.shape).clone())
        self.stride, self.padding, self.mode, self.channels = stride, padding, mode, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding
        x = torch.nn.functional.pad(x, [p, p, p, p], mode=self.mode)
        return torch.nn.functional.conv2d(x, self.weight, stride=self.stride, groups=self.channels)


def pool_cases() -> list[Case]:
    import cnnlab.functional as CF

    blur = torch.outer(CF.binomial_filter(3), CF.binomial_filter(3))
    gaussian = CF.distance_weights((3, 3), "gaussian", 1.0)
    cases = [
        ("max 2×2 64ch @32²", lambda: nn.MaxPool2d(2), lambda: cnn.MaxPool2d(2), (64, 32, 32)),
        ("max 3×3/2 128ch @16²", lambda: nn.MaxPool2d(3, 2, 1), lambda: cnn.MaxPool2d(3, 2, 1), (128, 16, 16)),
        ("avg 2×2 64ch @32²", lambda: nn.AvgPool2d(2), lambda: cnn.AvgPool2d(2), (64, 32, 32)),
        ("avg 3×3/2 128ch @16²", lambda: nn.AvgPool2d(3, 2, 1), lambda: cnn.AvgPool2d(3, 2, 1), (128, 16, 16)),
        ("LP2 2×2 128ch @16²", lambda: nn.LPPool2d(2, 2), lambda: cnn.LPPool2d(2, 2), (128, 16, 16)),
        (
            "adaptive avg →3×3 256ch @8²",
            lambda: nn.AdaptiveAvgPool2d(3),
            lambda: cnn.AdaptiveAvgPool2d(3),
            (256, 8, 8),
        ),
        (
            "adaptive max →3×3 256ch @8²",
            lambda: nn.AdaptiveMaxPool2d(3),
            lambda: cnn.AdaptiveMaxPool2d(3),
            (256, 8, 8),
        ),
        ("global avg 256ch @8²", lambda: nn.AdaptiveAvgPool2d(1), lambda: cnn.GlobalAvgPool2d(), (256, 8, 8)),
        (
            "blur 3 s2 64ch @32² (vs F.conv2d)",
            lambda: _FilterByConv(64, blur, 2, 1, "reflect"),
            lambda: cnn.BlurPool2d(3, 2),
            (64, 32, 32),
        ),
        (
            "gaussian 3×3/2 64ch @32² (vs F.conv2d)",
            lambda: _FilterByConv(64, gaussian, 2, 1, "constant"),
            lambda: cnn.DistanceWeightedPool2d(3, 2, 1),
            (64, 32, 32),
        ),
    ]
    return [Case(name, "pool", make_t, make_c, shape) for name, make_t, make_c, shape in cases]


def three_d_cases() -> list[Case]:
    """The 3-D layers (video/volume models such as torchvision's r3d_18), batch = clips."""

    def pair(name, make, shape, *args, **kwargs):
        return (name, lambda: getattr(nn, make)(*args, **kwargs), lambda: getattr(cnn, make)(*args, **kwargs), shape)

    cases = [
        pair("conv3d 3→32 3×3×3 @8×32²", "Conv3d", (3, 8, 32, 32), 3, 32, 3, padding=1),
        pair("conv3d 32→32 3×3×3 @8×16²", "Conv3d", (32, 8, 16, 16), 32, 32, 3, padding=1),
        pair("conv3d 64→64 3×3×3 s2 @8×16²", "Conv3d", (64, 8, 16, 16), 64, 64, 3, stride=2, padding=1),
        pair("transposed3d 32→16 2×2×2 s2 @4×8²", "ConvTranspose3d", (32, 4, 8, 8), 32, 16, 2, stride=2),
        pair("max3d 2×2×2 32ch @8×16²", "MaxPool3d", (32, 8, 16, 16), 2),
        pair("avg3d 3×3×3/2 32ch @8×16²", "AvgPool3d", (32, 8, 16, 16), 3, 2, 1),
        pair("adaptive avg3d →1 64ch @4×8²", "AdaptiveAvgPool3d", (64, 4, 8, 8), 1),
        pair("adaptive max3d →2×3×3 64ch @4×8²", "AdaptiveMaxPool3d", (64, 4, 8, 8), (2, 3, 3)),
    ]
    return [Case(name, "3d", make_t, make_c, shape) for name, make_t, make_c, shape in cases]


class _TimmSame(nn.Module):
    """timm's ``Conv2dSame``: TensorFlow's SAME padding computed per input, then ``F.conv2d``."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[2:], self.conv.kernel_size, self.conv.stride):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads = [total // 2, total - total // 2, *pads]
        return self.conv(torch.nn.functional.pad(x, pads))


class _WithOffsets(nn.Module):
    """A deformable convolution fed fixed offsets of up to ±1.5 pixels (drawn once per input shape)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer, self.offsets = layer, {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape not in self.offsets:
            generator = torch.Generator().manual_seed(0)
            taps = 2 * self.layer.kernel_size[0] * self.layer.kernel_size[1]
            self.offsets[x.shape] = (torch.rand(x.shape[0], taps, *x.shape[2:], generator=generator) * 3 - 1.5).to(x)
        return self.layer(x, self.offsets[x.shape])


class _StandardisedConv(nn.Conv2d):
    """timm's ``StdConv2d``: the weight through ``F.batch_norm`` (per output channel), then ``F.conv2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.nn.functional.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True,
                                           momentum=0.0, eps=1e-6).reshape_as(self.weight)  # fmt: skip
        return self._conv_forward(x, w, self.bias)


def beyond_cases() -> list[Case]:
    """The layers torch.nn lacks, against the reference each answers (timm, torchvision)."""
    cases = [
        (
            "tf_same conv 64→64 3×3 s2 @32² (vs timm Conv2dSame)",
            lambda: _TimmSame(nn.Conv2d(64, 64, 3, 2)),
            lambda: cnn.Conv2d(64, 64, 3, 2, "tf_same"),
            (64, 32, 32),
        ),
        (
            "std conv 64→64 3×3 @32² (vs timm StdConv2d)",
            lambda: _StandardisedConv(64, 64, 3, padding=1),
            lambda: cnn.StdConv2d(64, 64, 3, padding=1),
            (64, 32, 32),
        ),
    ]
    try:
        from torchvision.ops import DeformConv2d
    except ImportError:
        DeformConv2d = None
    if DeformConv2d is not None:
        cases.append(
            (
                "deformable 64→64 3×3 @16² (vs torchvision)",
                lambda: _WithOffsets(DeformConv2d(64, 64, 3, padding=1)),
                lambda: _WithOffsets(cnn.DeformConv2d(64, 64, 3, padding=1)),
                (64, 16, 16),
            )
        )
    return [Case(name, "beyond", make_t, make_c, shape) for name, make_t, make_c, shape in cases]


def all_cases() -> list[Case]:
    return conv_cases() + pool_cases() + three_d_cases() + beyond_cases()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _median_time(fn: Callable[[], None], repeats: int, device: str) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _forward_backward(layer: nn.Module, x: torch.Tensor) -> None:
    x.grad = None
    layer.zero_grad(set_to_none=True)
    layer(x).sum().backward()


def _layer_and_input(case: Case, impl: str, batch: int, device: str, channels_last: bool):
    """The case's layer and a random batch for it (4-D ones channels-last where asked), seeded."""
    torch.manual_seed(0)
    layer = (case.make_torch if impl == "torch" else case.make_cnnlab)().to(device)
    x = torch.randn(batch, *case.shape, device=device)
    if channels_last and x.dim() == 4:
        layer, x = layer.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    return layer, x.requires_grad_(True)


def time_case(
    case: Case, impl: str, batch: int, repeats: int, device: str, channels_last: bool = False
) -> tuple[float, float]:
    layer, x = _layer_and_input(case, impl, batch, device, channels_last)

    def forward():
        with torch.no_grad():
            layer(x)

    return (
        _median_time(forward, repeats, device),
        _median_time(lambda: _forward_backward(layer, x), repeats, device),
    )


def peak_memory(case: Case, impl: str, batch: int, device: str, channels_last: bool = False) -> int:
    """Bytes by which one forward+backward raises peak memory above what the layer and input hold."""
    if device == "cuda":
        layer, x = _layer_and_input(case, impl, batch, device, channels_last)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _forward_backward(layer, x)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    # CPU: a fresh process per measurement, so the allocator holds nothing from earlier cases.
    result = subprocess.run(
        [sys.executable, __file__, "--memory-probe", case.name, impl, "--batch", str(batch)]
        + (["--channels-last"] if channels_last else []),
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout.strip().splitlines()[-1])


def _memory_probe(name: str, impl: str, batch: int, channels_last: bool) -> None:
    case = next(c for c in all_cases() if c.name == name)
    layer, x = _layer_and_input(case, impl, batch, "cpu", channels_last)
    print(peak_rss_increase(lambda: _forward_backward(layer, x)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", choices=["conv", "pool", "3d", "beyond", "all"], default="all")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory column")
    parser.add_argument("--channels-last", action="store_true", help="4-D inputs and layers channels-last")
    parser.add_argument("--output", help="also write the table (Markdown) and raw numbers (JSON) here")
    parser.add_argument("--memory-probe", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        _memory_probe(*args.memory_probe, args.batch, args.channels_last)
        return

    cases = [c for c in all_cases() if args.group in ("all", c.group)]
    layout = ", channels-last" if args.channels_last else ""
    header = f"{describe()}, {args.device}, batch {args.batch}{layout}, median of {args.repeats}"
    lines = [
        header,
        "",
        "| layer | fwd torch ms | fwd cnnlab ms | fwd ratio | f+b torch ms | f+b cnnlab ms | f+b ratio "
        "| peak MB torch | peak MB cnnlab | mem ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    rows = []
    for case in cases:
        t_fwd, t_fb = time_case(case, "torch", args.batch, args.repeats, args.device, args.channels_last)
        c_fwd, c_fb = time_case(case, "cnnlab", args.batch, args.repeats, args.device, args.channels_last)
        row = {
            "layer": case.name,
            "group": case.group,
            "fwd_torch": t_fwd,
            "fwd_cnnlab": c_fwd,
            "fb_torch": t_fb,
            "fb_cnnlab": c_fb,
        }
        mem = "| – | – | – |"
        if not args.no_memory:
            row["mem_torch"] = peak_memory(case, "torch", args.batch, args.device, args.channels_last)
            row["mem_cnnlab"] = peak_memory(case, "cnnlab", args.batch, args.device, args.channels_last)
            ratio = row["mem_cnnlab"] / max(row["mem_torch"], 1)
            mem = f"| {row['mem_torch'] / 2**20:.1f} | {row['mem_cnnlab'] / 2**20:.1f} | {ratio:.2f} |"
        rows.append(row)
        line = (
            f"| {case.name} | {t_fwd * 1e3:.2f} | {c_fwd * 1e3:.2f} | {c_fwd / t_fwd:.2f} "
            f"| {t_fb * 1e3:.2f} | {c_fb * 1e3:.2f} | {c_fb / t_fb:.2f} {mem}"
        )
        lines.append(line)
        print(line, flush=True)
    summary = []
    for group in sorted({r["group"] for r in rows}):
        group_rows = [r for r in rows if r["group"] == group]
        fwd = statistics.median(r["fwd_cnnlab"] / r["fwd_torch"] for r in group_rows)
        fb = statistics.median(r["fb_cnnlab"] / r["fb_torch"] for r in group_rows)
        worst = max(group_rows, key=lambda r: r["fb_cnnlab"] / r["fb_torch"])
        summary.append(
            f"{group}: median ratio forward {fwd:.2f}×, forward+backward {fb:.2f}× "
            f"(worst f+b: {worst['layer']} {worst['fb_cnnlab'] / worst['fb_torch']:.2f}×)"
        )
    lines += ["", *summary]
    print("\n" + "\n".join(summary))
    if args.output:
        with open(args.output, "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(args.output + ".json", "w") as f:
            json.dump({"header": header, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
