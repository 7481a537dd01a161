"""The figures a run logs read at card size: every count written in the confusion matrix, the
per-class accuracy as bars with their values."""

from __future__ import annotations

import torch

from cnnlab.train.engine.tensorboard import class_accuracy, class_accuracy_figure, confusion_figure


def test_confusion_matrix_writes_every_count_and_class_accuracy_is_the_diagonal_share():
    counts = torch.tensor([[3.0, 1.0], [2.0, 6.0]])  # rows: true class
    torch.testing.assert_close(class_accuracy(counts), torch.tensor([0.75, 0.75]))
    figure = confusion_figure(counts, ["cat", "dog"])
    axis = figure.axes[0]
    assert [t.get_text() for t in axis.texts] == ["3", "1", "2", "6"]
    assert [t.get_text() for t in axis.get_yticklabels()] == ["cat", "dog"]
    assert "12 test images" in axis.get_title()
    bars = class_accuracy_figure(counts, ["cat", "dog"]).axes[0]
    assert [round(p.get_width(), 3) for p in bars.patches] == [0.75, 0.75]
    assert [t.get_text() for t in bars.texts] == ["0.750", "0.750"] and "0.750" in bars.get_title()
