"""onnxruntime time of a cnnlab model exported three ways, against its ``torch.nn`` twin, in one run.

Usage:
    python benchmarks/onnx_export.py                         # torchvision resnet18, 2×3×64×64, median of 20
    python benchmarks/onnx_export.py --model mobilenet_v2 --batch 8 --size 32

Rows: ``cnnlab.onnx.export`` (the layers as ONNX's standard operators), plain ``torch.onnx.export`` of
the cnnlab model (each layer's traceable decomposition), and ``torch.onnx.export`` of the
``torch.nn`` twin; node counts, the most frequent operators, milliseconds per run and the ratio to
the twin.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time
import warnings

import onnxruntime as ort
import torch
import torchvision
from machine import describe

import cnnlab
import cnnlab.onnx


def run_ms(model_bytes: bytes, x: torch.Tensor, repeats: int) -> float:
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    for _ in range(3):
        session.run(None, feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18", help="a torchvision.models classifier")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    reference = getattr(torchvision.models, args.model)(num_classes=10).eval()
    ours = cnnlab.convert(reference, to="cnnlab")
    x = torch.randn(args.batch, 3, args.size, args.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        programs = {
            "cnnlab.onnx.export(cnnlab model)": cnnlab.onnx.export(ours, (x,)),
            "torch.onnx.export(cnnlab model)": torch.onnx.export(ours, (x,)),
            "torch.onnx.export(torch.nn twin)": torch.onnx.export(reference, (x,)),
        }
    print(f"# {describe()}, onnxruntime {ort.__version__}, {args.model} {tuple(x.shape)}, median of {args.repeats}")
    print("\n| export | nodes | most frequent | ms per run | / twin |\n|---|---:|---|---:|---:|")
    times = {
        name: run_ms(program.model_proto.SerializeToString(), x, args.repeats) for name, program in programs.items()
    }
    twin = times["torch.onnx.export(torch.nn twin)"]
    for name, program in programs.items():
        ops = collections.Counter(node.op_type for node in program.model_proto.graph.node)
        common = ", ".join(f"{op} {count}" for op, count in ops.most_common(4))
        print(f"| `{name}` | {sum(ops.values())} | {common} | {times[name]:.2f} | {times[name] / twin:.2f} |")


if __name__ == "__main__":
    main()
