"""How long a run takes and how fast it went (issue 45): the estimate's warning where a long run's
convolutions run an algorithm that ``auto`` would not pick (naming them and ``auto``'s choice; short
runs and ``auto`` models get none), and images/s after the warm-up."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import cnnlab.nn as cnn
from cnnlab.functional.conv.base import ConvCall
from cnnlab.functional.conv.dispatch import select_algorithm
from cnnlab.train.engine.loop import RunLength, _count, auto_would_pick
from cnnlab.train.engine.state import Progress
from cnnlab.train.engine.steps import StepOutput


def test_auto_would_pick_names_autos_choice_only_where_it_differs():
    x = torch.randn(2, 8, 16, 16)
    chosen = cnn.Conv2d(8, 16, 3, padding=1, algorithm="fft")
    auto = select_algorithm(ConvCall(x, chosen.weight, (1, 1), (1, 1), (1, 1), 1))
    assert auto != "fft" and auto_would_pick(chosen, x) == auto
    assert auto_would_pick(cnn.Conv2d(8, 16, 3, padding=1), x) is None  # auto itself
    assert auto_would_pick(cnn.Conv2d(8, 16, 3, padding=1, algorithm=auto), x) is None  # what auto runs
    assert auto_would_pick(nn.Conv2d(8, 16, 3, padding=1), x) is None  # torch's layer


def _run(model: nn.Module, total_steps: int) -> SimpleNamespace:
    return SimpleNamespace(
        model=model, main=True, total_steps=total_steps, options=SimpleNamespace(compile=False),
        progress=SimpleNamespace(epoch=0, step=0),
    )  # fmt: skip


@pytest.mark.parametrize(("algorithm", "total_steps", "warned"), [("fft", 2000, True), ("fft", 20, False),
                                                                   ("auto", 2000, False)])  # fmt: skip
def test_a_long_run_on_an_algorithm_auto_would_not_pick_is_warned(caplog, algorithm, total_steps, warned):
    model = nn.Sequential(cnn.Conv2d(3, 8, 3, padding=1, algorithm=algorithm), nn.ReLU())
    run = _run(model, total_steps)
    length = RunLength(run)
    with caplog.at_level(logging.INFO, logger="cnnlab"):
        for _ in range(1 + RunLength.MEASURED):
            model(torch.randn(2, 3, 8, 8))
            run.progress.step += 1
            length.step_done(run, 1.0)  # one second a step: 2000 steps are about 33 minutes
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if warned:
        auto = auto_would_pick(cnn.Conv2d(3, 8, 3, padding=1, algorithm="fft"), torch.randn(2, 3, 8, 8))
        assert len(warnings) == 1 and f"0 fft (auto: {auto})" in warnings[0] and "33 min" in warnings[0]
    else:
        assert warnings == []
    assert not model[0]._forward_pre_hooks  # the hooks are gone after the first step


@pytest.mark.parametrize("resumed_at_step", [None, 5])
def test_images_per_second_leave_out_each_processs_first_step(resumed_at_step):
    """Steps of 8 images: the first of this process takes 10 s (the warm-up), the others 1 s each:
    8 images/s, where all steps together would give 3.2."""
    progress = Progress(step=resumed_at_step or 0)
    run = SimpleNamespace(progress=progress, task="classification", world_size=1, resumed_at_step=resumed_at_step)
    for seconds in (10.0, 1.0, 1.0, 1.0):
        step = StepOutput(loss=torch.tensor(1.0), output=torch.zeros(8, 10), labels=torch.zeros(8, dtype=torch.long),
                          finite=True)  # fmt: skip
        _count(run, step, seconds)
    assert progress.images_per_sec == pytest.approx(8.0)
    assert progress.train_images / progress.train_seconds == pytest.approx(32 / 13)  # wall_s keeps every step
    assert Progress(train_images=8, train_seconds=4.0, warmup_images=8, warmup_seconds=4.0).images_per_sec == 2.0
