"""Is B better than A? Paired comparisons of two configurations over the same seeds.

Runs of a configuration are matched to the baseline's by seed (same seed: same initial weights,
same data order, so seed-to-seed noise cancels in the difference). For each final metric, over
the n matched seeds with differences ``d_i = B_i − A_i``:

- the mean difference ``d̄`` and its 95% confidence interval ``d̄ ± t_{0.975, n−1} · s/√n``
  (``s`` the differences' sample standard deviation): a **paired t** interval;
- the two-sided p-value of ``t = d̄ / (s/√n)`` under Student's t with n − 1 degrees of freedom;
- the seeds a paired t-test would need to tell this ``d̄`` from zero at the 5% level with 80%
  power, were ``s`` the true spread: the least n with ``√n · |d̄| / s ≥ t_{0.975, n−1} + t_{0.8, n−1}``.

Seeds that ran on one side only are named, not dropped silently. Student's t distribution is
computed here in closed form for whole degrees of freedom (Abramowitz & Stegun 26.7.3–4), so the
comparison needs neither scipy nor a network."""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .summary import DECIMALS, RunRecord, configurations, format_markdown

__all__ = [
    "PairedComparison",
    "compare_paired",
    "format_paired",
    "student_t_quantile",
    "student_t_two_sided",
    "write_paired",
]

METRICS = ("val_acc", "best_val_acc", "val_loss", "images_per_sec", "wall_s")
CONFIDENCE, POWER = 0.95, 0.8


def student_t_two_sided(t: float, df: int) -> float:
    """P(|T| ≤ |t|) for Student's t with ``df`` (whole, ≥ 1) degrees of freedom: with
    θ = atan(|t|/√df), odd df: (2/π)(θ + sinθ·cosθ·Σ_{k<(df−1)/2} a_k cos^{2k}θ), a_0 = 1,
    a_k = a_{k−1}·2k/(2k+1); even df: sinθ·Σ_{k<df/2} b_k cos^{2k}θ, b_0 = 1, b_k = b_{k−1}·(2k−1)/(2k)."""
    if df < 1:
        raise ValueError(f"df must be a whole number ≥ 1, got {df}")
    theta = math.atan(abs(t) / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2:
        total, term = 0.0, 1.0
        for k in range((df - 1) // 2):
            if k:
                term *= 2 * k / (2 * k + 1) * cos2
            total += term
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
    total, term = 0.0, 1.0
    for k in range(df // 2):
        if k:
            term *= (2 * k - 1) / (2 * k) * cos2
        total += term
    return math.sin(theta) * total


def student_t_quantile(p: float, df: int) -> float:
    """The t with P(T ≤ t) = ``p`` (0.5 < p < 1), by bisection on :func:`student_t_two_sided`."""
    central = 2 * p - 1
    low, high = 0.0, 1.0
    while student_t_two_sided(high, df) < central:
        high *= 2
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if student_t_two_sided(middle, df) < central else (low, middle)
    return (low + high) / 2


def seeds_needed(mean: float, std: float, most: int = 10_000) -> int | None:
    """The least number of seeds whose paired t-test finds a difference ``mean`` with spread ``std``
    at the 5% level with 80% power; None where ``mean`` is 0 or more than ``most`` would be needed.
    (The rule's margin grows with n: doubling, then bisection.)"""
    if mean == 0:
        return None
    if std == 0:
        return 2

    def enough(n: int) -> bool:
        needed = student_t_quantile(1 - (1 - CONFIDENCE) / 2, n - 1) + student_t_quantile(POWER, n - 1)
        return math.sqrt(n) * abs(mean) / std >= needed

    low, high = 1, 2  # enough(high) is what is looked for; n = 1 has no test
    while not enough(high):
        if high >= most:
            return None
        low, high = high, min(2 * high, most)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


@dataclass
class MetricDifference:
    metric: str
    baseline: float
    other: float
    mean: float  # other − baseline, averaged over matched seeds
    low: float | None  # the 95% interval (None with one matched seed)
    high: float | None
    p: float | None
    seeds: int
    seeds_needed: int | None


@dataclass
class PairedComparison:
    baseline: str
    other: str
    matched: list[Any]  # the seeds both ran
    only_baseline: list[Any]
    only_other: list[Any]
    rows: list[MetricDifference]


def _by_seed(runs: Sequence[RunRecord]) -> dict[str, RunRecord]:
    """One run per seed (the last one found where a seed ran twice)."""
    return {repr(r.seed): r for r in runs}


def _value(record: RunRecord, metric: str) -> float | None:
    if metric.startswith("val_class_acc."):
        value = record.metrics.get("val_class_acc", {}).get(metric.split(".", 1)[1])
    else:
        value = record.metrics.get(metric)
    return None if value is None else float(value)


def _difference(metric: str, pairs: list[tuple[RunRecord, RunRecord]]) -> MetricDifference | None:
    values = [(_value(a, metric), _value(b, metric)) for a, b in pairs]
    values = [(a, b) for a, b in values if a is not None and b is not None]
    if not values:
        return None
    differences = [b - a for a, b in values]
    n, mean = len(differences), statistics.fmean(differences)
    low = high = p = needed = None
    if n > 1:
        std = statistics.stdev(differences)
        half = student_t_quantile(1 - (1 - CONFIDENCE) / 2, n - 1) * std / math.sqrt(n)
        low, high = mean - half, mean + half
        p = 1.0 - student_t_two_sided(mean / (std / math.sqrt(n)), n - 1) if std > 0 else float(mean == 0)
        needed = seeds_needed(mean, std)
    return MetricDifference(
        metric, statistics.fmean(a for a, _ in values), statistics.fmean(b for _, b in values), mean, low, high, p,
        n, needed,
    )  # fmt: skip


def compare_paired(
    baseline: Sequence[RunRecord], other: Sequence[RunRecord], names: tuple[str, str]
) -> PairedComparison:
    """``other`` against ``baseline`` (each the runs of one configuration), matched by seed."""
    a, b = _by_seed(baseline), _by_seed(other)
    matched = [seed for seed in a if seed in b]
    pairs = [(a[seed], b[seed]) for seed in matched]
    classes = list(dict.fromkeys(c for r in [*baseline, *other] for c in r.metrics.get("val_class_acc", {})))
    rows = [_difference(m, pairs) for m in (*METRICS, *(f"val_class_acc.{c}" for c in classes))]
    return PairedComparison(
        names[0], names[1], [a[s].seed for s in matched], [a[s].seed for s in a if s not in b],
        [b[s].seed for s in b if s not in a], [r for r in rows if r is not None],
    )  # fmt: skip


def _decimals(metric: str) -> int:
    return DECIMALS.get(metric, 4)


COLUMNS = (
    "metric",
    "baseline mean",
    "other mean",
    "difference",
    "95% CI (paired t)",
    "p",
    "seeds",
    "seeds for 80% power",
)


def _cells(row: MetricDifference) -> list[str]:
    d = _decimals(row.metric)
    interval = "" if row.low is None else f"[{row.low:+.{d}f}, {row.high:+.{d}f}]"
    p = "" if row.p is None else f"{row.p:.3g}"
    needed = "" if row.seeds < 2 or row.mean == 0 else str(row.seeds_needed or ">10000")
    return [row.metric, f"{row.baseline:.{d}f}", f"{row.other:.{d}f}", f"{row.mean:+.{d}f}", interval, p,
            str(row.seeds), needed]  # fmt: skip


def format_paired(comparison: PairedComparison) -> str:
    """Markdown: what was compared, the matched and unmatched seeds, one row per metric."""
    c = comparison
    lines = [f"Paired comparison: {c.other} against the baseline {c.baseline}, matched by seed "
             f"({len(c.matched)}: {', '.join(map(str, c.matched)) or 'none'})."]  # fmt: skip
    if c.only_baseline or c.only_other:
        unmatched = [f"{', '.join(map(str, seeds))} only in {name}"
                     for seeds, name in ((c.only_baseline, c.baseline), (c.only_other, c.other)) if seeds]  # fmt: skip
        lines.append(f"Not compared (no partner seed): {'; '.join(unmatched)}.")
    if len(c.matched) < 2:
        lines.append("One matched seed: no interval or p-value (sweep seed=0,1,2 on both sides for them).")
    lines.append("")
    lines.append(format_markdown(COLUMNS, [_cells(r) for r in c.rows]))
    lines.append(
        "\ndifference = other − baseline, mean over matched seeds; 95% CI and p from a paired t-test "
        "(Student's t, n − 1 degrees of freedom); seeds for 80% power: how many matched seeds a paired "
        "t-test at the 5% level needs to find this difference 4 times in 5, were its spread the one seen."
    )
    return "\n".join(lines)


def write_paired(comparisons: Sequence[PairedComparison], out_dir: Path) -> list[Path]:
    """``paired.md`` and ``paired.csv`` in ``out_dir``, and the Markdown as text in TensorBoard
    (``out_dir/compare``: a run named ``compare`` beside the sweep's jobs); returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = "\n\n".join(format_paired(c) for c in comparisons)
    (out_dir / "paired.md").write_text(text + "\n")
    with (out_dir / "paired.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["baseline_config", "other_config", *COLUMNS])
        for c in comparisons:
            writer.writerows([c.baseline, c.other, *_cells(r)] for r in c.rows)
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(out_dir / "compare")) as writer:
        writer.add_text("compare/paired", text)
    return [out_dir / "paired.md", out_dir / "paired.csv", out_dir / "compare"]


def pairs_against(records: Sequence[RunRecord], baseline: str) -> list[tuple[list[RunRecord], list[RunRecord]]]:
    """(baseline runs, other runs) for each configuration whose command line set ``KEY`` to another
    value than ``baseline``'s ``KEY=VALUE``, against the baseline configuration that agrees with it
    on every other swept key (a 2×2 sweep ``conv=standard,torch pool=max,avg`` with ``--baseline
    conv=torch``: standard against torch at max, and at avg). Raises ValueError where no run set
    ``KEY=VALUE`` or ``baseline`` is not of that form."""
    key, sep, value = baseline.partition("=")
    if not sep:
        raise ValueError(f"--baseline {baseline!r}: give it as KEY=VALUE, e.g. --baseline conv=torch")
    groups = configurations(records)
    chosen = [g for g in groups if str(g[0].swept.get(key)) == value]
    if not chosen:
        seen = sorted({str(r.swept[key]) for r in records if key in r.swept})
        raise ValueError(
            f"--baseline {baseline}: no run set {key}={value}"
            + (f" (the runs set {key} to {', '.join(seen)})" if seen else f" (no run set {key} on its command line)")
        )

    def rest(group: list[RunRecord]) -> dict[str, Any]:
        return {k: v for k, v in group[0].swept.items() if k not in (key, "seed")}

    pairs = []
    for group in groups:
        if any(group is c for c in chosen) or key not in group[0].swept:
            continue
        partners = [c for c in chosen if rest(c) == rest(group)]
        if len(partners) == 1:
            pairs.append((partners[0], group))
    return pairs


def name_of(runs: Sequence[RunRecord]) -> str:
    """A configuration's label: what its command lines set, less the seed."""
    swept = {k: v for k, v in runs[0].swept.items() if k != "seed"}
    return ",".join(f"{k}={v}" for k, v in swept.items()) or runs[0].path.parent.name
