"""Sweep summaries list jobs in their order (2 before 10) with their failures."""

from __future__ import annotations

import json

from cnnlab.train.summary import ERROR_FILE, find_failures, find_runs, write_summary


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
