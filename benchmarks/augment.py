"""What each training augmentation costs per batch on this machine's CPU, next to what a training
step of the ``fast`` model costs (the same batch), so the share of a step is read off directly.

Usage:
    python benchmarks/augment.py                       # batch 256, median of 5
    python benchmarks/augment.py --batch 512 --repeats 9

Each option is timed as the loader runs it (``cnnlab.data.augment``): crop + flip on uint8 images,
a ``torchvision.transforms.v2`` policy per image, cutout and MixUp/CutMix on the normalised batch.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from machine import describe

from cnnlab.data.augment import apply_policy, augment_batch, cutout, mix_batch, normalize
from train import make_model, time_steps


def median_ms(work, repeats: int) -> float:
    work()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    images = torch.randint(0, 256, (args.batch, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (args.batch,))
    mean, std = torch.tensor([0.49, 0.48, 0.45]), torch.tensor([0.25, 0.24, 0.26])
    normal = normalize(images, mean, std)
    generator = torch.Generator().manual_seed(0)
    work = {
        "crop 4 + flip (uint8)": lambda: augment_batch(images, 4, True, generator),
        **{
            f"policy={p} (per image)": (lambda p=p: apply_policy(images, p, generator))
            for p in ("trivialaugment", "randaugment", "autoaugment")
        },
        "cutout 8": lambda: cutout(normal, 8, generator),
        "mixup 0.8": lambda: mix_batch(normal, labels, 10, 0.8, 0.0, generator),
        "cutmix 1.0": lambda: mix_batch(normal, labels, 10, 0.0, 1.0, generator),
    }
    model = make_model("fast", "cnnlab", "cpu", torch.contiguous_format)
    step_ms = 1000 * time_steps(model, args.batch, 3, "cpu", torch.contiguous_format, "32")
    print(f"# {describe()}, batch {args.batch}, median of {args.repeats}")
    print("| augmentation | ms per batch | share of a `fast` float32 training step |")
    print("|---|---:|---:|")
    for name, run in work.items():
        ms = median_ms(run, args.repeats)
        print(f"| {name} | {ms:.1f} | {ms / step_ms:.1%} |")
    print(f"| (a `fast` training step, float32, cnnlab layers) | {step_ms:.0f} | |")


if __name__ == "__main__":
    main()
