"""Images per second of a full training step (forward, loss, backward, SGD step) for config-built
models on cnnlab layers against the same model on ``torch.nn`` layers (``conv=torch pool=torch_max``),
timed alternately in the same run.

Usage:
    python benchmarks/train.py                            # fast + resnet, both memory formats
    python benchmarks/train.py --models fast --formats channels_last --steps 10 --repeats 5
    python benchmarks/train.py --precision bf16 --device cuda
    python benchmarks/train.py --compile --models fast --formats channels_last   # + torch.compile'd steps
    python benchmarks/train.py --models fast --formats channels_last --profile 12  # + each backend's top ops
    python benchmarks/train.py --memory                   # + peak memory of a step (fresh process each)

The ratio is cnnlab's throughput over torch's (above 1 means cnnlab is faster). With ``--compile``
each backend is also timed as ``torch.compile(model)`` (inductor; compiled once during warm-up),
and the table adds cnnlab compiled over torch compiled and each backend's compiled over eager.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from machine import describe
from rss import peak_rss_increase
from torch import nn

from cnnlab.models import build_model

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
BACKENDS = {"torch": ("torch", "torch_max"), "cnnlab": ("standard", "max")}  # timed in this order
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def make_model(name: str, backend: str, device: str, memory_format: torch.memory_format) -> nn.Module:
    conv, pool = BACKENDS[backend]
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={name}", f"conv={conv}", f"pool={pool}"])
    torch.manual_seed(0)
    model, _ = build_model(cfg.model, cfg.conv, cfg.pool)
    return model.to(device=device, memory_format=memory_format)


def time_steps(model: nn.Module, batch: int, steps: int, device: str, memory_format, precision: str) -> float:
    """Seconds per training step, averaged over ``steps`` steps."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    images = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=memory_format)
    labels = torch.randint(0, 10, (batch,), device=device)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32

    def step():
        with torch.autocast(device, dtype=dtype, enabled=precision == "bf16"):
            loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def step_memory(name: str, backend: str, args, format_name: str) -> int:
    """Bytes by which two training steps (batch, activations, gradients, optimizer state, scratch
    space) raise peak RSS above the built model's, measured in a fresh process (CPU)."""
    command = [sys.executable, __file__, "--memory-probe", name, backend, format_name, "--batch", str(args.batch)]
    command += ["--precision", args.precision]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return int(result.stdout.strip().splitlines()[-1])


def _memory_probe(name: str, backend: str, format_name: str, args) -> None:
    memory_format = FORMATS[format_name]
    model = make_model(name, backend, "cpu", memory_format)
    print(peak_rss_increase(lambda: time_steps(model, args.batch, 2, "cpu", memory_format, args.precision)))


def profile_steps(model: nn.Module, title: str, args, memory_format) -> None:
    """Print the ops that took most of the time of ``args.steps`` training steps (self time, all threads)."""
    with torch.profiler.profile() as profiler:
        time_steps(model, args.batch, args.steps, args.device, memory_format, args.precision)
    table = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile)
    print(f"\n{title}, {args.steps} steps:\n{table}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["fast", "resnet"])
    parser.add_argument("--formats", nargs="+", choices=sorted(FORMATS), default=["contiguous", "channels_last"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="steps per timing")
    parser.add_argument("--repeats", type=int, default=3, help="timings per backend (median reported)")
    parser.add_argument("--precision", choices=["32", "bf16"], default="32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    parser.add_argument("--output", help="also write the Markdown table here")
    parser.add_argument(
        "--profile", type=int, metavar="ROWS", default=0, help="also print torch.profiler's top ROWS ops per variant"
    )
    parser.add_argument("--memory", action="store_true", help="also measure a step's peak memory (CPU, eager)")
    parser.add_argument("--memory-probe", nargs=3, help=argparse.SUPPRESS)  # internal: one measurement
    args = parser.parse_args()
    if args.memory_probe:
        _memory_probe(*args.memory_probe, args)
        return

    print(f"# {describe()}, device {args.device}, batch {args.batch}, precision {args.precision}\n")
    variants = [(b, False) for b in BACKENDS] + ([(b, True) for b in BACKENDS] if args.compile else [])
    label = lambda backend, compiled: f"{backend} compiled" if compiled else backend  # noqa: E731
    header = ["model", "memory format", *(f"{label(*v)} img/s" for v in variants), "cnnlab / torch"]
    if args.compile:
        header += ["compiled: cnnlab / torch", "torch compiled / eager", "cnnlab compiled / eager"]
    if args.memory:
        header += ["peak MB torch", "peak MB cnnlab", "memory cnnlab / torch"]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    print("\n".join(lines), flush=True)
    for name in args.models:
        for format_name in args.formats:
            memory_format = FORMATS[format_name]
            models = {}
            for backend, compiled in variants:
                model = make_model(name, backend, args.device, memory_format)
                models[(backend, compiled)] = torch.compile(model) if compiled else model
            seconds: dict[tuple, list[float]] = {v: [] for v in variants}
            for model in models.values():  # warm-up (compilation, oneDNN primitive creation, allocator)
                time_steps(model, args.batch, 2, args.device, memory_format, args.precision)
            for _ in range(args.repeats):  # alternate, so drift in the machine hits all alike
                for v, model in models.items():
                    seconds[v].append(
                        time_steps(model, args.batch, args.steps, args.device, memory_format, args.precision)
                    )
            if args.profile:
                for v, model in models.items():
                    profile_steps(model, f"{name} {format_name} {label(*v)}", args, memory_format)
            rate = {v: args.batch / statistics.median(s) for v, s in seconds.items()}
            cells = [f"{rate[v]:.0f}" for v in variants] + [f"{rate[('cnnlab', False)] / rate[('torch', False)]:.2f}"]
            if args.compile:
                cells += [
                    f"{rate[('cnnlab', True)] / rate[('torch', True)]:.2f}",
                    f"{rate[('torch', True)] / rate[('torch', False)]:.2f}",
                    f"{rate[('cnnlab', True)] / rate[('cnnlab', False)]:.2f}",
                ]
            if args.memory:
                peak = {backend: step_memory(name, backend, args, format_name) for backend in BACKENDS}
                cells += [
                    f"{peak['torch'] / 1e6:.0f}",
                    f"{peak['cnnlab'] / 1e6:.0f}",
                    f"{peak['cnnlab'] / peak['torch']:.2f}",
                ]
            line = f"| {name} | {format_name} | " + " | ".join(cells) + " |"
            lines.append(line)
            print(line, flush=True)
    if args.output:
        Path(args.output).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
