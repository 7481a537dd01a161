"""The CIFAR-10 reader (restricted unpickler, data root resolution, real data when present), the
synthetic dataset and batched augmentation."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data import DatasetNotFoundError, TensorImageLoader, augment_batch, load_cifar10, make_synthetic
from cnnlab.data.cifar10 import resolve_root, restricted_load

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
REAL = Path(os.environ.get("CNNLAB_DATA", SHARED))


class _Exploit:
    """Unpickling this would call os.system: the classic malicious pickle."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/cnnlab_pwned",))


def test_restricted_unpickler_refuses_code_execution(tmp_path):
    payload = pickle.dumps({b"data": _Exploit(), b"labels": [0]})
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load posix\.system"):
        restricted_load(payload)
    assert not Path("/tmp/cnnlab_pwned").exists()


def test_restricted_unpickler_reads_a_cifar_batch(tmp_path):
    images = np.random.randint(0, 256, (4, 3072), dtype=np.uint8)
    payload = pickle.dumps({b"batch_label": b"x", b"labels": [1, 2, 3, 4], b"data": images, b"filenames": [b"a"] * 4})
    batch = restricted_load(payload)
    assert np.array_equal(batch[b"data"], images) and batch[b"labels"] == [1, 2, 3, 4]


def test_root_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    assert resolve_root(tmp_path / "explicit") == (tmp_path / "explicit").resolve()
    assert resolve_root(None) == (tmp_path / "env").resolve()
    monkeypatch.delenv("CNNLAB_DATA")
    assert resolve_root(None) == Path("data").resolve()


def test_missing_dataset_message_says_where_and_how(tmp_path):
    with pytest.raises(
        DatasetNotFoundError, match=r"looked for .*cifar-10-batches-py.*CNNLAB_DATA.*data.download=true"
    ):
        load_cifar10(tmp_path)


@pytest.mark.skipif(not (REAL / "cifar-10-batches-py").is_dir(), reason="real CIFAR-10 not present")
def test_real_cifar10_loads():
    data = load_cifar10(REAL)
    assert data["train_images"].shape == (50000, 3, 32, 32) and data["test_images"].shape == (10000, 3, 32, 32)
    assert data["train_images"].dtype == torch.uint8
    assert torch.bincount(data["train_labels"]).tolist() == [5000] * 10
    assert torch.bincount(data["test_labels"]).tolist() == [1000] * 10
    mean = data["train_images"].float().mean((0, 2, 3)) / 255
    torch.testing.assert_close(mean, torch.tensor([0.4914, 0.4822, 0.4465]), atol=1e-3, rtol=0)


def test_synthetic_is_deterministic_and_balanced():
    a, b = make_synthetic(500, 100, seed=3), make_synthetic(500, 100, seed=3)
    assert torch.equal(a["train_images"], b["train_images"]) and a["train_images"].dtype == torch.uint8
    assert torch.bincount(a["train_labels"], minlength=10).min() > 20


def test_augmentation_crops_and_flips_per_image():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).view(2, 3, 8, 8)
    out = augment_batch(images, pad=0, flip=True, generator=torch.Generator().manual_seed(1))
    for original, augmented in zip(images, out):
        assert torch.equal(augmented, original) or torch.equal(augmented, original.flip(-1))
    shifted = augment_batch(images, pad=2, flip=False, generator=torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape and shifted.dtype == torch.uint8


def test_loader_order_depends_only_on_seed_and_epoch():
    images, labels = torch.zeros(10, 3, 4, 4, dtype=torch.uint8), torch.arange(10)
    loader = TensorImageLoader(images, labels, 4, torch.zeros(3), torch.ones(3), shuffle=True, seed=5)
    assert torch.equal(loader.order(2), loader.order(2)) and not torch.equal(loader.order(1), loader.order(2))
    assert len(loader) == 3
    first = [y for _, y in loader.iterate(1)]
    resumed = [y for _, y in loader.iterate(1, start_batch=1)]
    assert all(torch.equal(a, b) for a, b in zip(first[1:], resumed))


def test_loader_rejects_uneven_global_batches():
    images, labels = torch.zeros(10, 3, 4, 4, dtype=torch.uint8), torch.arange(10)
    with pytest.raises(ValueError, match=r"data\.batch_size=100 must be divisible by the number of processes \(3\)"):
        TensorImageLoader(images, labels, 100, torch.zeros(3), torch.ones(3), rank=0, world_size=3)


def test_loader_shards_batches_and_datasets_across_ranks():
    images, labels = torch.zeros(12, 3, 4, 4, dtype=torch.uint8), torch.arange(12)
    kwargs = {"mean": torch.zeros(3), "std": torch.ones(3), "shuffle": True, "seed": 1}
    whole = [y for _, y in TensorImageLoader(images, labels, 4, **kwargs).iterate(0)]
    shards = [
        [y for _, y in TensorImageLoader(images, labels, 4, **kwargs, rank=r, world_size=2).iterate(0)]
        for r in range(2)
    ]
    assert all(torch.equal(torch.cat([a, b]), w) for a, b, w in zip(*shards, whole))
    evaluation = [
        TensorImageLoader(images, labels, 5, torch.zeros(3), torch.ones(3), rank=r, world_size=2, split="dataset")
        for r in range(2)
    ]
    seen = torch.cat([y for loader in evaluation for _, y in loader])
    assert sorted(seen.tolist()) == list(range(12))
