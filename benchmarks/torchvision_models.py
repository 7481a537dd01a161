"""Images per second of forward+backward for a torchvision model against the same model converted
to cnnlab's layers (``cnnlab.convert``), timed alternately in one process: the library user's
case, ImageNet-sized inputs.

Usage:
    python benchmarks/torchvision_models.py              # resnet18, batch 32, 224², float32 and bf16
    python benchmarks/torchvision_models.py --models resnet18 mobilenet_v2 --precisions bf16
    python benchmarks/torchvision_models.py --layers     # + each conv layer's time on every algorithm

The ratio is cnnlab's throughput over torch's (above 1: cnnlab is faster). ``--layers`` times every
distinct convolution of the model forward+backward on each algorithm that covers it and prints which
one ``auto`` picks and which was fastest (the check that ``auto`` never leaves a faster one unused;
``traceable`` and ``shift`` are left out: the form for tracers, and an opt-in that lost everywhere).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision
from machine import describe
from torch import nn

import cnnlab
from cnnlab.functional.conv.algorithms import ALGORITHMS
from cnnlab.functional.conv.base import ConvCall
from cnnlab.functional.conv.dispatch import select_algorithm


def step_seconds(model: nn.Module, x: torch.Tensor, precision: str, steps: int) -> float:
    """Seconds per forward+backward of ``model(x).sum()`` (autocast for bf16), averaged over ``steps``."""

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(x)
        out.float().sum().backward()
        model.zero_grad(set_to_none=True)

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def conv_layers(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Conv2d, torch.Size]]:
    """Every distinct (geometry, input shape) convolution of ``model`` on ``x``, with a name."""
    seen, found = set(), []
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):

            def hook(layer, args, name=name):
                key = (layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, args[0].shape)
                if key not in seen:
                    seen.add(key)
                    found.append((name, layer, args[0].shape))

            hooks.append(module.register_forward_pre_hook(hook))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return found


_NOT_TIMED = ("traceable", "shift", "triton", "triton_depthwise")  # for tracers, opt-in, CUDA


def layer_table(model: nn.Module, x: torch.Tensor, precision: str, repeats: int) -> list[str]:
    """Per distinct convolution: forward+backward ms of every algorithm that covers it, auto's pick."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    rows = ["| layer | input | auto | fastest | ms per algorithm |", "|---|---|---|---|---|"]
    for name, layer, shape in conv_layers(model, x):
        inp = torch.randn(shape, dtype=dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
        weight = layer.weight.detach().to(dtype).requires_grad_()
        call = ConvCall(inp, weight, layer.stride, layer.padding, layer.dilation, layer.groups)
        times = {}
        for algorithm, record in ALGORITHMS.items():
            if record.requires(call) is not None or algorithm in _NOT_TIMED:
                continue

            def run(algorithm=algorithm, inp=inp, weight=weight, layer=layer):
                geometry = (layer.stride, layer.padding, layer.dilation, layer.groups)
                cnnlab.functional.conv2d(inp, weight, None, *geometry, algorithm=algorithm).sum().backward()

            run()
            times[algorithm] = min(_timed(run) for _ in range(repeats)) * 1e3
        auto = select_algorithm(call)
        fastest = min(times, key=times.get)
        listed = ", ".join(f"{a} {t:.1f}" for a, t in sorted(times.items(), key=lambda item: item[1]))
        rows.append(f"| {name} | {tuple(shape)} | {auto} | {fastest} | {listed} |")
    return rows


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet18"])
    parser.add_argument("--precisions", nargs="+", choices=["32", "bf16"], default=["32", "bf16"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--formats", nargs="+", choices=["contiguous", "channels_last"], default=["channels_last"])
    parser.add_argument("--steps", type=int, default=3, help="steps per timing")
    parser.add_argument("--repeats", type=int, default=3, help="timings per backend (median reported)")
    parser.add_argument("--layers", action="store_true", help="also time each conv layer on every algorithm")
    args = parser.parse_args()

    print(f"# {describe()}, batch {args.batch}, {args.size}², forward+backward, median of {args.repeats}\n")
    print("| model | precision | memory format | torch img/s | cnnlab img/s | cnnlab / torch |")
    print("|---|---|---|---:|---:|---:|")
    for name in args.models:
        torch.manual_seed(0)
        reference = getattr(torchvision.models, name)(weights=None)
        ours = cnnlab.convert(reference, to="cnnlab", copy=True)
        for fmt in args.formats:
            memory_format = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
            x = torch.randn(args.batch, 3, args.size, args.size).contiguous(memory_format=memory_format)
            for model in (reference, ours):
                model.to(memory_format=memory_format)
            for precision in args.precisions:
                times = {"torch": [], "cnnlab": []}
                for _ in range(args.repeats):  # alternately, so that drift hits both
                    times["torch"].append(step_seconds(reference, x, precision, args.steps))
                    times["cnnlab"].append(step_seconds(ours, x, precision, args.steps))
                rate = {k: args.batch / statistics.median(v) for k, v in times.items()}
                print(
                    f"| {name} | {precision} | {fmt} | {rate['torch']:.1f} | {rate['cnnlab']:.1f} | "
                    f"{rate['cnnlab'] / rate['torch']:.2f} |",
                    flush=True,
                )
        if args.layers:
            x = torch.randn(args.batch, 3, args.size, args.size)
            for precision in args.precisions:
                print(f"\n{name}, {precision}, channels-last, forward+backward per layer:\n")
                print("\n".join(layer_table(reference, x, precision, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
