"""Sweep summaries list jobs in their order (2 before 10) with their failures."""

from __future__ import annotations

import json

from cnnlab.train.runs.directories import ERROR_FILE
from cnnlab.train.sweeps.summary import find_failures, find_runs, write_summary


def test_jobs_are_listed_by_number_and_failures_with_their_error(tmp_path):
    numbers = [0, 1, 2, 10, 11]
    for number in numbers:
        job = tmp_path / f"{number}_optimizer.lr=0.{number}"
        job.mkdir()
        metrics = {"val_acc": number / 100, "history": [{"epoch": 1, "val_acc": number / 100}]}
        (job / "metrics.json").write_text(json.dumps(metrics))
    failed = tmp_path / "3_optimizer.lr=many"
    failed.mkdir()
    (failed / ERROR_FILE).write_text("config key optimizer.lr: got 'many'\n")
    assert [r.path.name.split("_")[0] for r in find_runs([tmp_path])] == [str(n) for n in numbers]
    assert find_failures(tmp_path) == [("3_optimizer.lr=many", "config key optimizer.lr: got 'many'")]
    text = write_summary(tmp_path)
    assert text.index("| 2_optimizer.lr=0.2 |") < text.index("| 10_optimizer.lr=0.10 |")
    assert text.endswith("| 3_optimizer.lr=many | config key optimizer.lr: got 'many' |")


def _finished_run(directory, config: dict, swept: dict, val_acc: float) -> None:
    """A run directory as train.py leaves it: the resolved config, metrics.json with the job that started it."""
    from omegaconf import OmegaConf

    directory.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(config), directory / "config.yaml")
    job = {"overrides": [f"{k}={v}" for k, v in swept.items()], "swept": [[k, v] for k, v in swept.items()],
           "experiment": None}  # fmt: skip
    metrics = {"val_acc": val_acc, "job": job, "history": [{"epoch": 1, "val_acc": val_acc}]}
    (directory / "metrics.json").write_text(json.dumps(metrics))


def test_the_summary_says_how_many_validation_images_each_runs_figures_are_over(tmp_path):
    """metrics.json's val_images (5 batches of a shortened run against the whole test set) in one line."""
    for name, images in (("0_pool=max", 512), ("1_pool=avg", 10000)):
        _finished_run(tmp_path / name, {"seed": 0, "pool": {"kind": name[2:]}}, {"pool": name[7:]}, 0.5)
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        (tmp_path / name / "metrics.json").write_text(json.dumps({**metrics, "val_images": images}))
    assert "Validation images behind each run's figures: 512, 10,000." in write_summary(tmp_path)


def test_runs_are_grouped_by_their_resolved_configs_and_seeds_counted_once():
    """Three repeats of one config with the same seed are 3 runs of 1 seed; a run of another model
    with the same (empty) command-line label is its own row, told apart by what differs; where the
    runs ran (paths, logger, data.root) does not split a group."""
    import tempfile
    from pathlib import Path

    from cnnlab.train.sweeps.summary import seed_means

    fast = {"seed": 0, "model": {"name": "fast", "layers": [{"conv": {"out_channels": 24}}]}, "optimizer": {"lr": 0.1}}
    simple = {**fast, "model": {"name": "simple", "layers": [{"conv": {"out_channels": 32}}]}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i, acc in enumerate((0.50, 0.52, 0.54)):
            _finished_run(root / f"fast_{i}", {**fast, "paths": {"output_dir": f"/runs/fast_{i}"}}, {}, acc)
        _finished_run(root / "simple", simple, {}, 0.40)
        _finished_run(root / "fast_seed1", {**fast, "seed": 1}, {}, 0.56)
        columns, rows = seed_means(find_runs([root]))
    assert columns[:3] == ["differs", "runs", "seeds"]
    by_model = {row[0]: row for row in rows}
    assert set(by_model) == {"model.name=fast, model.layers.0.conv.out_channels=24",
                             "model.name=simple, model.layers.0.conv.out_channels=32"}  # fmt: skip
    fast_row, simple_row = by_model["model.name=fast, model.layers.0.conv.out_channels=24"], by_model[
        "model.name=simple, model.layers.0.conv.out_channels=32"]  # fmt: skip
    assert fast_row[1:3] == [4, 2]  # 4 runs, seeds 0 and 1
    assert simple_row[1:4] == [1, 1, "0.4000 ± 0.0000"]  # every accuracy to 4 decimals
    assert fast_row[3].startswith(f"{sum((0.50, 0.52, 0.54, 0.56)) / 4:.4f} ± ")


def test_tensorboards_config_text_names_the_whole_command_line():
    """The config text starts with every override (a sweep's fixed ones and the experiment too),
    then what the sweep varied, then the slots; a single run's overrides are said once."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from cnnlab.train.engine.report import config_text
    from cnnlab.train.overrides import JobInfo

    cfg = OmegaConf.create({"model": {"name": "fast"}, "conv": {"kind": "standard"}, "pool": {"kind": "max"}})
    job = JobInfo(["experiment=cpu94", "trainer.max_epochs=2", "seed=1"], [("seed", 1)], "cpu94")
    head = config_text(SimpleNamespace(cfg=cfg, job=job)).splitlines()[:4]
    assert head == [
        "# command line: experiment=cpu94 trainer.max_epochs=2 seed=1",
        "# experiment=cpu94: configs/experiment/cpu94.yaml, then the rest",
        "# varied in this sweep: seed=1",
        "# model=fast conv=standard pool=max",
    ]
    single = config_text(SimpleNamespace(cfg=cfg, job=JobInfo(["pool=max"], [("pool", "max")], None)))
    assert single.splitlines()[:2] == ["# command line: pool=max", "# model=fast conv=standard pool=max"]


def test_compare_prints_one_precision_says_one_seed_and_draws_beside_the_sweep(tmp_path, capsys):
    """One-seed runs: every accuracy to 4 decimals (0.1852, 0.1930: not 0.193), a line saying each
    row is one seed, and the curves' PNG in the compared sweep (not over the last comparison's)."""
    from cnnlab.compare import main

    for pool, acc in (("max", 0.1852), ("avg", 0.193)):
        _finished_run(tmp_path / f"pool={pool}", {"seed": 0, "pool": {"kind": pool}}, {"pool": pool}, acc)
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| 0.1852 |" in out and "| 0.1930 |" in out and "| 0.193 |" not in out
    assert "Each row is one run of one seed" in out
    assert (tmp_path / "compare.png").stat().st_size > 1000


def test_the_short_run_warning_only_where_evaluation_is_far_off():
    """A 3-step BatchNorm run warns about its running statistics only when its val_loss is over
    twice its train_loss, and says both figures; the note that it is shortened always stands."""
    from types import SimpleNamespace

    from torch import nn

    from cnnlab.train.engine.report import shortened_run_notes

    options = SimpleNamespace(limit_train_batches=3, overfit_batches=0, max_steps=-1)
    run = SimpleNamespace(options=options, progress=SimpleNamespace(step=3), model=nn.BatchNorm2d(4))
    far = shortened_run_notes(run, {"val_loss": 312.4, "train_loss": 2.31})
    close = shortened_run_notes(run, {"val_loss": 2.29, "train_loss": 2.31})
    assert far[0].startswith("A shortened run (trainer.limit_train_batches=3): 3 steps") and close == far[:1]
    assert far[1].startswith("val_loss 312.4 against train_loss 2.31: BatchNorm's running statistics (momentum 0.1)")
    assert "still hold 73% of their initial mean 0 / variance 1 after 3 steps; 29 steps bring it under 5%" in far[1]


def test_every_run_records_what_ran_and_a_comparison_says_where_runs_differ(tmp_path, capsys):
    """The record: the checkout's commit (and its uncommitted changes as a patch beside it), the
    versions, the CPU and its instruction sets, the kernels, the seed, the command. compare warns
    when the runs compared did not run the same way (not for seeds or commands: a sweep varies them)."""
    import subprocess

    import torch

    from cnnlab.compare import main
    from cnnlab.functional import native
    from cnnlab.train.runs.record import CHECKOUT, PATCH_FILE, differences, run_record

    record = run_record(3, tmp_path)
    if (CHECKOUT / ".git").exists():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=CHECKOUT, capture_output=True, text=True).stdout
        assert record["git_commit"] == head.strip()
        assert (tmp_path / PATCH_FILE).exists() == record["uncommitted_changes"]
    assert record["torch"] == str(torch.__version__) and record["seed"] == 3 and record["threads"] >= 1
    assert record["instruction_sets"] == list(native.instruction_sets()) and record["compiled_kernels"]
    other = {**record, "torch": "2.13.0", "seed": 4, "command": "train.py seed=4"}
    assert differences([record, other, None]) == {"torch": [record["torch"], "2.13.0"]}

    for name, rec, acc in (("a", record, 0.5), ("b", other, 0.52)):
        _finished_run(tmp_path / name, {"seed": rec["seed"]}, {"seed": rec["seed"]}, acc)
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        (tmp_path / name / "metrics.json").write_text(json.dumps({**metrics, "record": rec}))
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert f"Warning: these runs did not all run the same way (torch: {record['torch']}, 2.13.0)" in out
