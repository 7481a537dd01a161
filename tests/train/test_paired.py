"""Paired comparisons (``python -m cnnlab.compare ... --baseline KEY=VALUE``, or two directories):
runs matched by seed, the mean difference with a paired-t 95% interval, its p-value and the seeds a
test would need, checked against Student's t tables and arithmetic done by hand."""

from __future__ import annotations

import csv
import json
import math

import pytest
from omegaconf import OmegaConf

from cnnlab.compare import main
from cnnlab.train.sweeps.paired import compare_paired, seeds_needed, student_t_quantile, student_t_two_sided
from cnnlab.train.sweeps.summary import configurations, find_runs


@pytest.mark.parametrize(
    ("df", "t975"),
    [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423)],  # the printed tables' values
)
def test_student_t_quantiles_match_the_tables(df, t975):
    assert student_t_quantile(0.975, df) == pytest.approx(t975, abs=1e-4)
    assert student_t_two_sided(t975, df) == pytest.approx(0.95, abs=1e-5)


def test_student_t_matches_scipy_over_a_grid():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 5, 8, 13, 40):
        for t in (0.0, 0.3, 1.0, 2.5, 7.0):
            assert student_t_two_sided(t, df) == pytest.approx(1 - 2 * stats.t.sf(t, df), abs=1e-12)
        assert student_t_quantile(0.8, df) == pytest.approx(stats.t.ppf(0.8, df), abs=1e-9)


def test_seeds_needed_is_the_least_n_with_80_percent_power():
    """An effect of one standard deviation needs 10 seeds (the usual table for a paired t-test at
    5%, 80% power); and the answer is the least n that passes its own rule."""
    assert seeds_needed(1.0, 1.0) == 10
    n = seeds_needed(0.01, 0.02)

    def passes(k: int) -> bool:
        return math.sqrt(k) * 0.5 >= student_t_quantile(0.975, k - 1) + student_t_quantile(0.8, k - 1)

    assert passes(n) and not passes(n - 1)
    assert seeds_needed(0.0, 1.0) is None


def _run(directory, conv: str, seed: int, val_acc: float, classes: dict | None = None, pool: str | None = None):
    directory.mkdir(parents=True)
    config = {"seed": seed, "conv": {"kind": conv}, "pool": {"kind": pool or "max"}, "optimizer": {"lr": 0.1}}
    OmegaConf.save(OmegaConf.create(config), directory / "config.yaml")
    swept = {"conv": conv, **({"pool": pool} if pool else {}), "seed": seed}
    job = {"overrides": [f"{k}={v}" for k, v in swept.items()], "swept": [[k, v] for k, v in swept.items()],
           "experiment": None}  # fmt: skip
    metrics = {"val_acc": val_acc, "val_loss": 1 - val_acc, "job": job, "history": [{"epoch": 1, "val_acc": val_acc}]}
    if classes:
        metrics["val_class_acc"] = classes
    (directory / "metrics.json").write_text(json.dumps(metrics))


BASELINE = {0: 0.50, 1: 0.52, 2: 0.49, 3: 0.51}  # conv=torch; seed 3 has no partner
OTHER = {0: 0.53, 1: 0.54, 2: 0.52, 4: 0.60}  # conv=standard; seed 4 has no partner


def _sweep(root):
    for seed, acc in BASELINE.items():
        _run(root / f"{seed}_conv=torch,seed={seed}", "torch", seed, acc, {"cat": acc, "dog": 0.5})
    for seed, acc in OTHER.items():
        _run(root / f"{seed + 10}_conv=standard,seed={seed}", "standard", seed, acc, {"cat": acc + 0.1, "dog": 0.5})


def test_a_paired_comparison_by_hand(tmp_path):
    """Seeds 0, 1, 2 match: differences 0.03, 0.02, 0.03 → mean 0.02667, s = 0.005774, t = 8 with 2
    degrees of freedom: interval ± 4.3027·s/√3, p = 1 − 8/√66 (the closed form for 2 df)."""
    _sweep(tmp_path)
    torch_runs, standard_runs = configurations(find_runs([tmp_path]))
    result = compare_paired(torch_runs, standard_runs, ("conv=torch", "conv=standard"))
    assert result.matched == [0, 1, 2] and result.only_baseline == [3] and result.only_other == [4]
    rows = {r.metric: r for r in result.rows}
    acc = rows["val_acc"]
    s = math.sqrt(((0.03 - 0.08 / 3) ** 2 * 2 + (0.02 - 0.08 / 3) ** 2) / 2)
    assert acc.mean == pytest.approx(0.08 / 3) and acc.seeds == 3
    assert acc.low == pytest.approx(0.08 / 3 - 4.302653 * s / math.sqrt(3), abs=1e-6)
    assert acc.high == pytest.approx(0.08 / 3 + 4.302653 * s / math.sqrt(3), abs=1e-6)
    assert acc.p == pytest.approx(1 - 8 / math.sqrt(66), rel=1e-6)
    assert rows["val_loss"].mean == pytest.approx(-0.08 / 3)
    assert rows["val_class_acc.cat"].mean == pytest.approx(0.08 / 3 + 0.1)
    assert rows["val_class_acc.dog"].mean == 0 and rows["val_class_acc.dog"].seeds_needed is None


def test_compare_with_a_baseline_writes_markdown_csv_and_tensorboard_text(tmp_path, capsys):
    _sweep(tmp_path)
    assert main([str(tmp_path), "--baseline", "conv=torch"]) == 0
    out = capsys.readouterr().out
    assert "Paired comparison: conv=standard against the baseline conv=torch, matched by seed (3: 0, 1, 2)" in out
    assert "Not compared (no partner seed): 3 only in conv=torch; 4 only in conv=standard." in out
    assert "| val_acc | 0.5033 | 0.5300 | +0.0267 | [+0.0123, +0.0410] | 0.0153 | 3 |" in out
    with (tmp_path / "paired.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["baseline_config"] == "conv=torch" and rows[0]["metric"] == "val_acc" and rows[0]["p"] == "0.0153"
    assert (tmp_path / "paired.md").read_text().startswith("Paired comparison: conv=standard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "compare"), size_guidance={"tensors": 0})
    events.Reload()
    text = events.Tensors("compare/paired/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "95% CI" in text and "only in conv=torch" in text


def test_two_directories_are_compared_second_against_first(tmp_path, capsys):
    for seed, acc in BASELINE.items():
        _run(tmp_path / "a" / f"seed{seed}", "torch", seed, acc)
    for seed, acc in OTHER.items():
        _run(tmp_path / "b" / f"seed{seed}", "standard", seed, acc)
    out_png = tmp_path / "report" / "curves.png"
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out_png)]) == 0
    assert "+0.0267 | [+0.0123, +0.0410]" in capsys.readouterr().out
    assert (tmp_path / "report" / "paired.md").is_file()


def test_a_baseline_that_matches_nothing_is_one_error_line(tmp_path, capsys):
    _sweep(tmp_path)
    assert main([str(tmp_path), "--baseline", "conv=fft"]) == 2
    err = capsys.readouterr().err
    assert err == "Error: --baseline conv=fft: no run set conv=fft (the runs set conv to standard, torch)\n"


def test_in_a_grid_each_configuration_meets_the_baseline_that_agrees_on_the_other_keys(tmp_path, capsys):
    """``conv=standard,torch pool=max,avg`` with ``--baseline conv=torch``: standard against torch at
    pool=max and at pool=avg, never across pools."""
    import itertools

    for (conv, pool), seed in itertools.product(itertools.product(("standard", "torch"), ("max", "avg")), (0, 1)):
        acc = 0.5 + 0.1 * (pool == "avg") + 0.01 * (conv == "standard") + 0.001 * seed * (conv == "standard")
        _run(tmp_path / f"{conv}_{pool}_{seed}", conv, seed, acc, pool=pool)
    assert main([str(tmp_path), "--baseline", "conv=torch"]) == 0
    out = capsys.readouterr().out
    for pool in ("max", "avg"):
        assert f"Paired comparison: conv=standard,pool={pool} against the baseline conv=torch,pool={pool}" in out
    assert out.count("\n| val_acc | ") == 2 and out.count("+0.0105 | [") == 2  # 0.010 and 0.011: never 0.1 apart
