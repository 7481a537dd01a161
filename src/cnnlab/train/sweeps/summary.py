"""Tables of finished runs: one row per run (what was swept, final and best val_acc, val_loss,
images/s, wall time), mean ± std over seeds, as Markdown and CSV, and their validation curves in
one figure. Used after a sweep (:class:`~cnnlab.train.sweeps.sweep.SweepSummary`) and by
``python -m cnnlab.compare``."""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ..overrides import ALWAYS_EXCLUDED, swept_overrides
from ..runs.directories import ERROR_FILE, earlier_jobs
from ..runs.record import differences
from ..runs.resume import RUNTIME_KEYS, config_leaves, under

__all__ = [
    "RunRecord",
    "configurations",
    "find_failures",
    "find_runs",
    "format_markdown",
    "plot_curves",
    "seed_means",
    "summary_table",
    "write_summary",
]

METRIC_COLUMNS = ("val_acc", "best_val_acc", "val_loss", "images_per_sec", "wall_s", "epochs")


@dataclass
class RunRecord:
    """A finished training run: its directory, what the command line that started it set, its
    ``metrics.json``, and what the run is (``config``: its resolved config's leaves, less
    :data:`~cnnlab.train.runs.resume.RUNTIME_KEYS` and ``seed``; empty for runs without a ``config.yaml``)."""

    path: Path
    swept: dict[str, Any]
    metrics: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    seed: Any = None  # (from config.yaml, else from what the command line set)

    @property
    def label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.swept.items()) or self.path.name


def _what_the_run_is(path: Path) -> tuple[dict[str, Any], Any]:
    """The leaves of ``path/config.yaml`` that say what the run is (not where or how it ran, not
    its seed), and its seed."""
    if not (path / "config.yaml").is_file():
        return {}, None
    leaves = config_leaves(OmegaConf.to_container(OmegaConf.load(path / "config.yaml")))
    seed = leaves.pop("seed", None)
    return {k: v for k, v in leaves.items() if not under(k, RUNTIME_KEYS)}, seed


def _swept(path: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """What the command line that started the run in ``path`` set, less the keys its sweep
    excluded: kept in ``metrics.json`` (a resume's own command line is ``resume=auto ...``), or, for
    runs written before it was, read from ``.hydra/``."""
    if "job" in metrics:
        return dict(metrics["job"]["swept"])
    swept: dict[str, Any] = {}
    hydra_dir = path / ".hydra"
    if (hydra_dir / "overrides.yaml").is_file():
        overrides = list(OmegaConf.load(hydra_dir / "overrides.yaml"))
        excluded = set(ALWAYS_EXCLUDED)
        if (hydra_dir / "hydra.yaml").is_file():
            hydra_cfg = OmegaConf.load(hydra_dir / "hydra.yaml")
            keys = OmegaConf.select(hydra_cfg, "hydra.job.config.override_dirname.exclude_keys", default=[])
            excluded |= set(keys or [])
        swept = dict(swept_overrides(overrides, excluded))
    return swept


def _record(path: Path) -> RunRecord | None:
    metrics = json.loads((path / "metrics.json").read_text())
    if "history" not in metrics:  # an eval-only run
        return None
    swept = _swept(path, metrics)
    config, seed = _what_the_run_is(path)
    return RunRecord(path, swept, metrics, config, seed if config else swept.get("seed"))


def _job_order(path: Path) -> tuple:
    """Sort key of run directories: a sweep's jobs by number (``2_...`` before ``10_...``), then by name."""
    number = path.name.split("_", 1)[0]
    return path.parent, int(number) if number.isdigit() else -1, path.name


def find_runs(paths: Iterable[str | Path]) -> list[RunRecord]:
    """Runs in ``paths``: each a run directory (holding ``metrics.json``) or a folder searched for
    them (in job order)."""
    records = []
    for root in map(Path, paths):
        candidates = (
            [root]
            if (root / "metrics.json").is_file()
            else sorted((p.parent for p in root.rglob("metrics.json")), key=_job_order)
        )
        records += [r for r in map(_record, candidates) if r is not None]
    return records


def find_failures(sweep_dir: Path) -> list[tuple[str, str]]:
    """``(job directory name, error)`` of the jobs of a sweep that failed, in job order."""
    failed = sorted((p.parent for p in sweep_dir.glob(f"*/{ERROR_FILE}")), key=_job_order)
    return [(p.name, (p / ERROR_FILE).read_text().strip().splitlines()[0]) for p in failed]


# decimals of each metric, the same in every row (0.1852 and 0.1930, not 0.1852 and 0.193)
DECIMALS = {"val_acc": 4, "best_val_acc": 4, "val_loss": 4, "images_per_sec": 0, "wall_s": 1}


def _format(value: Any, column: str | None = None) -> str:
    if isinstance(value, float):
        if column in DECIMALS:
            return f"{value:.{DECIMALS[column]}f}"
        return f"{value:.4g}" if abs(value) < 10 else f"{value:.0f}"
    return "" if value is None else str(value)


def summary_table(records: Sequence[RunRecord]) -> tuple[list[str], list[list[Any]]]:
    """Columns (the swept keys, then :data:`METRIC_COLUMNS`, then the directory) and one row per run."""
    keys = list(dict.fromkeys(k for r in records for k in r.swept))
    columns = [*keys, *METRIC_COLUMNS, "run"]
    rows = [
        [r.swept.get(k) for k in keys] + [r.metrics.get(m) for m in METRIC_COLUMNS] + [r.path.name] for r in records
    ]
    return columns, rows


def _telling_first(key: str) -> tuple:
    """Names and kinds first: ``model.name`` says more than ``model.layers.0.conv.out_channels``."""
    return key.rsplit(".", 1)[-1] not in ("name", "kind"), key.count("."), key


def configurations(records: Sequence[RunRecord]) -> list[list[RunRecord]]:
    """The runs grouped by configuration, in the order first found: runs whose resolved configs
    agree but for the seed and where/how they ran (runs without a ``config.yaml``: whose command
    lines agree but for the seed)."""
    groups: dict[tuple, list[RunRecord]] = {}
    for record in records:
        what = record.config or {k: v for k, v in record.swept.items() if k != "seed"}
        groups.setdefault(tuple(sorted((k, repr(v)) for k, v in what.items())), []).append(record)
    return list(groups.values())


def seed_means(records: Sequence[RunRecord]) -> tuple[list[str], list[list[Any]]] | None:
    """Mean ± std (sample) of each metric over runs of the same configuration (their resolved
    configs agree but for the seed and where/how they ran; runs without a ``config.yaml`` by what
    their command lines set), with how many ``runs`` and how many distinct ``seeds``; None when no
    configuration ran more than once. Two configurations with the same command-line label get a
    ``differs`` column with the config keys that tell them apart."""
    groups = configurations(records)
    if not any(len(g) > 1 for g in groups):
        return None
    keys = list(dict.fromkeys(k for r in records for k in r.swept if k != "seed"))
    labels = [tuple(str(group[0].swept.get(k)) for k in keys) for group in groups]
    shared = {label for label in labels if labels.count(label) > 1}
    columns = [*keys, *(["differs"] if shared else []), "runs", "seeds", *METRIC_COLUMNS[:-1]]
    rows = []
    firsts = [group[0] for group in groups]
    for label, first, group in zip(labels, firsts, groups, strict=True):
        cells: list[Any] = [first.swept.get(k) for k in keys]
        if shared:
            twins = [
                other.config for other, lab in zip(firsts, labels, strict=True) if lab == label and other is not first
            ]
            own = first.config
            differing = sorted((k for k in own if any(t.get(k) != own[k] for t in twins)), key=_telling_first)
            cells.append(", ".join(f"{k}={own[k]}" for k in differing[:3]) + (", ..." if len(differing) > 3 else ""))
        cells += [len(group), len({repr(r.seed) for r in group})]
        for metric in METRIC_COLUMNS[:-1]:
            values = [float(r.metrics[metric]) for r in group if r.metrics.get(metric) is not None]
            if not values:
                cells.append(None)
                continue
            mean = statistics.fmean(values)
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{_format(mean, metric)} ± {_format(std, metric)}")
        rows.append(cells)
    return columns, rows


def format_markdown(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_format(cell, column) for cell, column in zip(row, columns)) + " |" for row in rows]
    return "\n".join(lines)


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)


def format_summary(records: Sequence[RunRecord]) -> str:
    """The per-run table, and the mean ± std table when seeds were swept, as Markdown."""
    text = format_markdown(*summary_table(records))
    means = seed_means(records)
    if means:
        text += "\n\nMean ± std over seeds:\n\n" + format_markdown(*means)
    else:
        text += ("\n\nEach row is one run of one seed: a difference smaller than the seed-to-seed spread is noise "
                 "(sweep seed=0,1,2 for a mean ± std per configuration).")  # fmt: skip
    counts = {r.metrics.get("val_images") for r in records} - {None}
    if counts:  # (runs from before val_images was recorded say nothing)
        shown = ", ".join(f"{n:,}" for n in sorted(counts))
        text += f"\n\nValidation images behind each run's figures: {shown}."
    differ = differences([r.metrics.get("record") for r in records])
    if differ:
        listed = "; ".join(f"{key}: {', '.join(map(str, values))}" for key, values in differ.items())
        text += f"\n\nWarning: these runs did not all run the same way ({listed}); their run_record.json say how."
    return text


def _run_again(earlier: dict[str, str], finished: list[str]) -> str:
    """Which jobs a sweep run again in its directory kept, continued, ran again or ran new."""
    kinds = {
        "kept (had finished)": [n for n, state in earlier.items() if state == "finished"],
        "continued (had stopped)": [n for n, state in earlier.items() if state == "stopped"],
        "run again (had failed)": [n for n, state in earlier.items() if state == "failed"],
        "new": [n for n in finished if n not in earlier],
    }
    lines = [f"- {kind}: {', '.join(names)}" for kind, names in kinds.items() if names]
    return "This sweep directory was run again; its jobs:\n\n" + "\n".join(lines)


def write_summary(sweep_dir: Path) -> str:
    """``summary.csv`` (and ``summary_seeds.csv`` when seeds were swept) and ``summary.md`` in
    ``sweep_dir``, which also lists the jobs that failed and why; returns the Markdown ("" when
    no job finished or failed)."""
    records, failures = find_runs([sweep_dir]), find_failures(sweep_dir)
    text = ""
    if records:
        _write_csv(sweep_dir / "summary.csv", *summary_table(records))
        means = seed_means(records)
        if means:
            _write_csv(sweep_dir / "summary_seeds.csv", *means)
        text = format_summary(records)
    if failures:
        table = format_markdown(["job", "error"], [[name, error.replace("|", "\\|")] for name, error in failures])
        text += f"{chr(10) * 2 if text else ''}Failed jobs ({len(failures)}):\n\n{table}"
    earlier = earlier_jobs(sweep_dir)
    if earlier and text:
        text += "\n\n" + _run_again(earlier, [r.path.name for r in records])
    if text:
        (sweep_dir / "summary.md").write_text(text + "\n")
    return text


def plot_curves(records: Sequence[RunRecord], out: Path) -> Path:
    """Validation accuracy (or loss, for runs without accuracy) per epoch of every run, one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = "val_acc" if all(r.metrics.get("val_acc") is not None for r in records) else "val_loss"
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for record in records:
        history = record.metrics["history"]
        values = [h.get(metric, math.nan) for h in history]
        axis.plot([h["epoch"] for h in history], values, marker="o", markersize=3, label=record.label)
    axis.set_ylim(bottom=0, top=1.0 if metric == "val_acc" else None)  # the whole scale: small gaps look small
    axis.set_xlabel("epoch")
    axis.set_ylabel(metric)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out
