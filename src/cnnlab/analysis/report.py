"""All measurements of :mod:`cnnlab.analysis` for one model, as tables and as numbers."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .equivariance import EquivarianceError, conv_equivariance
from .invariance import classification_consistency, feature_change
from .receptive_field import ReceptiveField, empirical_receptive_field, receptive_fields, unproductive_layers
from .sparsity import LayerCost, layer_costs

__all__ = ["ModelReport", "accepted_input_sizes", "analyze", "format_report", "report_metrics"]

SIZES = ((32, 32), (40, 40), (57, 43))


def _why_not(error: str) -> str:
    """A shape error in words: ``mat1 and mat2 shapes cannot be multiplied (1x6400 and 4096x10)``
    is a linear layer fixed to another input size."""
    found = re.search(r"mat1 and mat2 shapes cannot be multiplied \(\d+x(\d+) and (\d+)x\d+\)", error)
    if found:
        return (f"its linear layer takes {found[2]} features, this size gives {found[1]} (a flatten → linear head "
                "fixes the input size; a global pool before it would not)")  # fmt: skip
    return error.splitlines()[0][:120]


def accepted_input_sizes(
    model: nn.Module, channels: int = 3, sizes: Sequence[tuple[int, int]] = SIZES
) -> dict[str, str]:
    """For each ``H×W``: ``"ok → shape"`` if the model runs on it, else ``"not accepted: why"``
    (for a flatten → linear head, the features it takes and those this size gives)."""
    result = {}
    was_training = model.training
    model.eval()
    try:
        for height, width in sizes:
            try:
                with torch.no_grad():
                    out = model(torch.zeros(1, channels, height, width))
                result[f"{height}x{width}"] = f"ok → {tuple(out.shape[1:])}"
            except (RuntimeError, ValueError) as error:
                result[f"{height}x{width}"] = f"not accepted: {_why_not(str(error))}"
    finally:
        model.train(was_training)
    return result


@dataclass
class ModelReport:
    receptive_fields: list[ReceptiveField]
    empirical_size: int | None
    erf: Tensor | None
    costs: list[LayerCost]
    equivariance: list[EquivarianceError]
    consistency: float | None
    feature_change: float | None
    input_sizes: dict[str, str] = field(default_factory=dict)
    image_size: int = 32


def analyze(
    model: nn.Module,
    input_shape: Sequence[int] = (3, 32, 32),
    images: Tensor | None = None,
    classifier: bool = True,
) -> ModelReport:
    """Measure everything for ``model``; ``images`` (normalised, ``(N, C, H, W)``) drive the
    invariance measures (random images when None)."""
    image_size = int(input_shape[-1])
    empirical, erf = (None, None)
    if any(p.requires_grad for p in model.parameters()):
        empirical, erf = empirical_receptive_field(model, input_shape)
    if images is None:
        images = torch.randn(64, *input_shape, generator=torch.Generator().manual_seed(0))
    return ModelReport(
        receptive_fields=receptive_fields(model, image_size),
        empirical_size=empirical,
        erf=erf,
        costs=layer_costs(model, input_shape),
        equivariance=conv_equivariance(model, input_shape),
        consistency=classification_consistency(model, images) if classifier else None,
        feature_change=feature_change(model, images) if classifier else None,
        input_sizes=accepted_input_sizes(model, int(input_shape[0])),
        image_size=image_size,
    )


def report_metrics(report: ModelReport) -> dict[str, float]:
    """The report's numbers, flat, for ``metrics.json`` and the HParams tab."""
    metrics: dict[str, float] = {}
    if report.receptive_fields:
        metrics["analysis/receptive_field"] = max(row.size for row in report.receptive_fields)
        unproductive = unproductive_layers(report.receptive_fields, report.image_size)
        metrics["analysis/unproductive_layers"] = float(len(unproductive))
    if report.empirical_size is not None:
        metrics["analysis/empirical_receptive_field"] = float(report.empirical_size)
    parameters = sum(c.parameters for c in report.costs)
    dense = sum(c.dense_parameters for c in report.costs)
    metrics["analysis/parameters"] = float(parameters)
    metrics["analysis/dense_parameter_ratio"] = dense / max(parameters, 1)
    metrics["analysis/macs"] = float(sum(c.macs for c in report.costs))
    for shift in sorted({e.shift for e in report.equivariance}):
        errors = [e.error for e in report.equivariance if e.shift == shift and not math.isnan(e.error)]
        if errors:
            metrics[f"analysis/equivariance_error_shift{shift}"] = sum(errors) / len(errors)
    if report.consistency is not None:
        metrics["analysis/consistency"] = report.consistency
        metrics["analysis/feature_change_1px"] = report.feature_change
    return metrics


def format_report(report: ModelReport) -> str:
    """Plain-text tables: receptive fields, parameters/MACs vs dense, equivariance, invariance, sizes."""
    width = max([34] + [len(row.path) for row in (*report.receptive_fields, *report.costs)])  # the layer column
    lines = [
        "Receptive field (analytic, per spatial layer)",
        f"{'layer':<{width}} {'type':<22} {'size':>6} {'jump':>6} {'start':>7}",
    ]
    unproductive = set(unproductive_layers(report.receptive_fields, report.image_size))
    for row in report.receptive_fields:
        mark = ("  unproductive" if row.path in unproductive else "") + (f"  ({row.note})" if row.note else "")
        lines.append(f"{row.path:<{width}} {row.layer:<22} {row.size:>6g} {row.jump:>6g} {row.start:>7g}{mark}")
    if unproductive:
        lines.append(
            f"unproductive at {report.image_size}×{report.image_size}: {len(unproductive)} layer(s) whose input "
            "already sees the whole image (its receptive field spans it), so they add no context (Richter et al. 2021)"
        )
    if report.empirical_size is not None:
        lines.append(f"empirical receptive field of the last spatial layer: {report.empirical_size} px")
    lines += [
        "",
        "Sparse interactions and parameter sharing (vs a dense layer, same input and output volumes)",
        f"{'layer':<{width}} {'params':>10} {'MACs':>13} {'dense params':>15} {'ratio':>10}",
    ]
    for c in report.costs:
        lines.append(
            f"{c.path:<{width}} {c.parameters:>10,} {c.macs:>13,} {c.dense_parameters:>15,} {c.parameter_ratio:>10.3g}"
        )
    total, dense = sum(c.parameters for c in report.costs), sum(c.dense_parameters for c in report.costs)
    lines.append(
        f"{'total':<{width}} {total:>10,} {sum(c.macs for c in report.costs):>13,} {dense:>15,} "
        f"{dense / max(total, 1):>10.3g}"
    )
    lines += [
        "",
        "Equivariance error ‖f(shift x) − shift f(x)‖/‖f(x)‖ (zero padding: interior only)",
        f"{'layer':<{width}} {'padding':<9} {'stride':>6} " + " ".join(f"{'shift ' + str(s):>9}" for s in (1, 2, 3, 4)),
    ]
    by_layer: dict[str, list[EquivarianceError]] = {}
    for e in report.equivariance:
        by_layer.setdefault(e.path, []).append(e)
    for path, errors in by_layer.items():
        lines.append(
            f"{path:<{width}} {errors[0].padding_mode:<9} {errors[0].stride:>6} "
            + " ".join(f"{'—':>9}" if math.isnan(e.error) else f"{e.error:>9.2e}" for e in errors)
        )
    if any(math.isnan(e.error) for e in report.equivariance):
        lines.append(
            "—: the feature map is too narrow to measure: no output column is far enough from the border "
            "(shift + kernel reach) to see neither the padding nor the columns the shift wraps around"
        )
    if report.consistency is not None:
        lines += [
            "",
            f"classification consistency under random shifts: {report.consistency:.3f}",
            f"mean pooled-feature change under a 1-pixel shift: {report.feature_change:.3f}",
        ]
    lines += ["", "Other input sizes (the model was built for one; does it run on others?):"]
    lines += [f"  {size}: {result}" for size, result in report.input_sizes.items()]
    return "\n".join(lines)
