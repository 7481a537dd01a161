"""Training on some of CIFAR-10's classes (``data.classes``): the data filtered and relabelled, the
model's head sized by ``data.num_classes``, the confusion matrix named by class; the wrong knob
(``data.num_classes=5`` alone) refused at start."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from cnnlab.data import CIFAR10_CLASSES, class_indices, select_classes
from tests.e2e.test_train import FAST, train


def test_select_classes_keeps_their_images_and_numbers_them_in_the_order_given():
    labels = torch.arange(10).repeat(3)
    images = labels.view(-1, 1, 1, 1).to(torch.uint8).expand(-1, 3, 2, 2)  # each image holds its label
    data = {"train_images": images, "train_labels": labels, "test_images": images[:10], "test_labels": labels[:10]}
    indices = class_indices(["dog", 3], CIFAR10_CLASSES)
    assert indices == [5, 3]
    subset = select_classes(data, indices)
    assert subset["train_labels"].tolist() == [1, 0] * 3 and subset["test_labels"].tolist() == [1, 0]
    # the images kept are those of classes 3 and 5, in the dataset's order
    assert subset["train_images"][:, 0, 0, 0].tolist() == [3, 5] * 3
    for bad, message in (
        (["cat", "cat"], "given twice"),
        (["kitten"], "not one of the classes"),
        ([10], "not one of the classes"),
    ):
        with pytest.raises(ValueError, match=message):
            class_indices(bad, CIFAR10_CLASSES)


def _fake_cifar(root, per_batch: int = 40) -> None:
    """A CIFAR-10 folder in torchvision's layout with ``per_batch`` images per file, labels cycling 0..9."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    generator = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [i % 10 for i in range(per_batch)]
        data = generator.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        (folder / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels}))


@pytest.mark.slow
def test_a_run_on_some_classes_has_a_head_and_a_confusion_matrix_of_their_size(tmp_path):
    _fake_cifar(tmp_path / "data")
    common = [*FAST, "data=cifar10", f"data.root={tmp_path / 'data'}", "model=simple", "logger.analysis=false",
              "trainer.max_epochs=1", "data.batch_size=8", "data.eval_batch_size=8"]  # fmt: skip
    refused = train(*common, "data.classes=[cat,dog,3]", f"hydra.run.dir={tmp_path / 'twice'}", check=False)
    assert refused.returncode == 2 and "Error: config key data.classes: 3 is given twice" in refused.stderr
    late = train(*common, "data.num_classes=5", f"hydra.run.dir={tmp_path / 'five'}", check=False)
    assert late.returncode == 2 and "config key data.num_classes: got 5, expected 10 for CIFAR-10" in late.stderr
    assert "data.classes=[cat,dog,...]" in late.stderr and not (tmp_path / "five").exists()

    run_dir = tmp_path / "run"
    result = train(*common, "data.classes=[cat,dog,ship]", f"hydra.run.dir={run_dir}")
    assert "epoch 1/1" in result.stdout
    saved = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert saved["model"]["7.weight"].shape[0] == 3  # the linear head: one output per class
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert list(metrics["val_class_acc"]) == ["cat", "dog", "ship"] and metrics["val_acc"] is not None
